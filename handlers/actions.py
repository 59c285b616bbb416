"""The buttons and the select of the incident message, the DM's "I have saved my new password", and the
flood alert's "Start incident"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from bot.core import requests
from bot.core.requests import Request
from bot.core.runbook import Runbook
from bot.core.table import Event
from bot.i18n import _, ngettext
from handlers import blocks, password_blocks
from handlers.ids import ActionId
from handlers.replies import tell, user_of

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from handlers.worker import Worker


def request_of(body: dict, event: Event) -> Request:
    """Return what the click asks: the value of the button, or of the option chosen in a select."""
    action = body["actions"][0]
    option = action.get("selected_option")
    value = (
        (option.get("value") if isinstance(option, dict) else None)
        if "selected_option" in action
        else action.get("value")
    )
    return requests.decode(value, event)  # anything but a value mailfix wrote is a BadRequest


def _act(event: Event) -> Any:
    """Return the listener of a button that fires `event` through the runbook's one door."""

    def handle_incident_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
        ack()
        worker.run(body, _act_now, runbook, body, event)

    handle_incident_action.__name__ = f"handle_{event}_action"
    return handle_incident_action


def _act_now(runbook: Runbook, body: dict, event: Event) -> None:
    runbook.act(request_of(body, event), actor=user_of(body))


def handle_start_incident_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, _start_from_alert, runbook, body, worker.client)


def _start_from_alert(runbook: Runbook, body: dict, client: WebClient) -> None:
    # The clicker hears back like after `/mailfix start`; the watch's next poll takes the button away.
    server = body["actions"][0].get("value")
    if not isinstance(server, str):  # the alert's button carries the server's name: nothing else starts one
        raise requests.BadRequest(_("this button's value is not one mailfix wrote"))
    incident = runbook.start(server=server, actor=user_of(body))
    tell(body, client, blocks.started_message(incident, runbook.config.channel))


def handle_restore_inbox_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, _restore_inbox, runbook, body, worker.client)


def _restore_inbox(runbook: Runbook, body: dict, client: WebClient) -> None:
    incident_id = request_of(body, Event.ABORT).incident_id  # the event is not used: a restore is no transition
    restored = runbook.restore_inbox(incident_id, actor=user_of(body))
    what = ngettext("{count} message restored to the INBOX", "{count} messages restored to the INBOX", restored)
    what = what.format(count=restored)
    tell(body, client, blocks.done_message(runbook.get(incident_id), what))


def handle_confirm_password_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, _confirm_password, runbook, body, worker.client)


def _confirm_password(runbook: Runbook, body: dict, client: WebClient) -> None:
    # The runbook erases the password and rewrites the DM; an operator's ephemeral note has no
    # message to rewrite, so it is replaced through its response_url.
    request = request_of(body, Event.ABORT)  # the event is not used: a confirmation is no transition
    erased = runbook.confirm_password(request.incident_id, actor=user_of(body), account=request.account)
    if (body.get("container") or {}).get("is_ephemeral"):
        tell(body, client, password_blocks.password_erased_note(), replace=True)
    elif not erased:
        tell(body, client, blocks.error_message(_("The new password was already erased from mailfix.")))


# The buttons of the incident message, each firing one event of the state table.
EVENT_OF: dict[ActionId, Event] = {
    ActionId.APPROVE_CLEANUP: Event.APPROVE,
    ActionId.NOT_THIS_ACCOUNT: Event.REJECT,
    ActionId.PICK_ACCOUNT: Event.PICK,
    ActionId.APPROVE_REBOOT: Event.APPROVE_REBOOT,
    ActionId.RENEW_APPROVAL: Event.RENEW,
    ActionId.RETRY_STEP: Event.RETRY,
    ActionId.RESOLVE_NOW: Event.RESOLVE_NOW,
    ActionId.ABORT: Event.ABORT,
    ActionId.CONTAIN_ACCOUNT: Event.CONTAIN,
}
HANDLERS: dict[ActionId, Any] = {
    **{action_id: _act(event) for action_id, event in EVENT_OF.items()},
    ActionId.CONFIRM_PASSWORD: handle_confirm_password_action,
    ActionId.START_INCIDENT: handle_start_incident_action,
    ActionId.RESTORE_INBOX: handle_restore_inbox_action,
}


def register(app: App) -> None:
    for action_id, handler in HANDLERS.items():
        app.action(str(action_id))(handler)
