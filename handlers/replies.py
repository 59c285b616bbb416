"""Ephemeral replies to the person who typed a command or clicked a button, and the one error reporter."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.core.labels import approval_kind
from bot.errors import (
    AlreadyDone,
    ApprovalExpired,
    IncidentNotFound,
    InvalidTransition,
    MailfixError,
    NotAuthorized,
    ServerBusy,
    UnknownServer,
)
from bot.i18n import _
from handlers import blocks
from handlers.ids import COMMAND

log = logging.getLogger(__name__)
DECISIONS = {"approve", "approve_reboot", "reject", "pick"}  # NotAuthorized on these needs no hint


def user_of(body: Mapping[str, Any]) -> str:
    """Return the Slack user who typed the command or clicked."""
    return str(body.get("user_id") or body["user"]["id"])


def channel_of(body: Mapping[str, Any]) -> str | None:
    channel = body.get("channel_id") or (body.get("channel") or {}).get("id")
    return str(channel) if channel else None


def tell(body: Mapping[str, Any], client: WebClient, message: blocks.Message, *, replace: bool = False) -> None:
    """Show `message` to the requester only: through the response_url, else chat.postEphemeral."""
    url = body.get("response_url")
    if url:
        # The response_url works in any channel, even one the bot was never invited to.
        WebhookClient(url).send(response_type="ephemeral", replace_original=replace, **message.as_kwargs())
        return
    channel = channel_of(body)
    if channel:
        client.chat_postEphemeral(channel=channel, user=user_of(body), **message.as_kwargs())


def hint_for(error: MailfixError) -> str:
    """Return what to type instead, for the errors where that helps."""
    if isinstance(error, UnknownServer) and error.known:
        text = _("Type `{command} start {server}` (configured: {servers}).")
        return text.format(command=COMMAND, server=error.known[0], servers=", ".join(error.known))
    if isinstance(error, ServerBusy) and error.incident_id:
        text = _("Type `{command} status {id}` to follow it, or `{command} abort {id}`.")
        return text.format(command=COMMAND, id=error.incident_id)
    if isinstance(error, IncidentNotFound):
        return _("Type `{command} list` to see the incidents.").format(command=COMMAND)
    if isinstance(error, ApprovalExpired):
        text = _("Type `{command} renew <id>`, or click “{button}” on the incident message.")
        return text.format(command=COMMAND, button=_("Ask the directors again"))  # the button's own label
    if isinstance(error, InvalidTransition):
        return _("Type `{command} status <id>` to see where the incident stands.").format(command=COMMAND)
    if isinstance(error, NotAuthorized) and error.action == "read incidents":
        return _("Ask an operator or a director to add you to `readers` in mailfix.toml.")
    if isinstance(error, NotAuthorized) and error.action not in DECISIONS:
        return _("Ask an operator or a director.")
    return ""


def describe(error: MailfixError) -> str:
    """Return the error as Slack shows it: people as mentions and times in each reader's own time zone."""
    if isinstance(error, AlreadyDone):
        # `what` is a past tense the core marked with N_ (bot.core.binding.PAST_TENSE): translated here.
        what, who = _(error.what), blocks.person(error.by) if error.by else _("someone else")
        if error.at:
            return _("already {what} by {who} {when}").format(what=what, who=who, when=blocks.when(error.at))
        return _("already {what} by {who}").format(what=what, who=who)
    if isinstance(error, ApprovalExpired):
        text = _("the {what} approval expired {when}; ask for it again with `renew`")
        return text.format(what=approval_kind(error.what), when=blocks.when(error.expired_at))
    return blocks.escape(str(error))


def report_error(error: BaseException, body: Mapping[str, Any], client: WebClient) -> None:
    """Tell the requester what went wrong: a MailfixError as it is, anything else by an id in the log."""
    if isinstance(error, MailfixError):
        message = blocks.error_message(describe(error), hint_for(error))
    else:
        error_id = uuid.uuid4().hex[:8]
        # Only the type and traceback: the request body can hold a password (the DM's confirm click).
        log.error("unexpected error %s handling a Slack request", error_id, exc_info=error)
        text = _("Something went wrong (error {id}); the bot's log has the details.").format(id=error_id)
        message = blocks.error_message(text)
    try:
        tell(body, client, message)
    except Exception:
        log.exception("could not tell the requester about an error")
