"""The runbook's notifier for Slack: the incident message, its thread, the new password's DM, and the
flood watch's alerts.

What Slack must show is kept in the database (storage.outbox) until Slack shows it: the incident message
converges on the incident's newest version, written by one process at a time; thread replies are posted
once each, in order. Whatever Slack misses (429, 5xx, a timeout) is re-applied by `catch_up`, which the
scheduler runs. Every post carries message metadata naming what it is, so a post whose outcome is unknown
(an answer lost, a crash right after) is looked for in Slack before it is posted again.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import i18n
from bot.config import Config
from bot.core.mailserver import Account, Password
from bot.core.notifier import Delivery, MessageRef
from bot.core.progress import Progress, Throttle
from bot.errors import DeliveryDelayed, MailfixError
from bot.i18n import N_, _
from handlers import alert_blocks, blocks, incident_blocks, password_blocks
from storage.models import FloodAlert, Incident
from storage.outbox import Outbox

log = logging.getLogger(__name__)
NOT_IN_SLACK = N_("user not in Slack: tell them by phone")
# Longer than one Slack call with all its retries (handlers.retries: at most 31 s).
# Longer than the worst hold: a look-up (LOOKUP_PAGES calls) then a post, each at most ~31 s (handlers.retries).
LEASE = timedelta(minutes=3)
RETRY_PAUSE = timedelta(seconds=10)  # after a failed post, before anyone looks for it and tries again
INCIDENT_EVENT, REPLY_EVENT, PASSWORD_EVENT = "mailfix_incident", "mailfix_reply", "mailfix_password"
ALERT_EVENT = "mailfix_alert"
# Slack's answers that mean "try again later"; any other error answer would be the same next time.
TRANSIENT = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# What a failed Web API call raises: Slack's answer, or the connection's error once the retries are spent.
FAILURES = (SlackClientError, OSError, http.client.HTTPException)
LOOKUP_PAGES = 3  # pages of 200 messages searched for a post whose outcome is unknown
# chat.update allows about one call a second per channel, shared by every incident and update there.
PROGRESS_SECONDS = 3.0


class SlackDeliveryFailed(MailfixError):
    """Slack refused a message the runbook needs delivered (the step fails and can be retried)."""

    def __init__(self, what: str, error: str) -> None:
        # `what` is a whole phrase, translated where it is said: "look up {address}", "DM {address}".
        super().__init__(_("could not {what}: Slack said {error}").format(what=what, error=error))


class SlackDeliveryDelayed(SlackDeliveryFailed, DeliveryDelayed):
    """Slack was rate limited, down or silent: the scheduler retries the step by itself."""


def delivery_failed(what: str, exc: Exception) -> SlackDeliveryFailed:
    """Return the step's error for a failed Slack call: passing (retried by the scheduler) unless Slack refused it."""
    if isinstance(exc, SlackApiError) and not _transient(exc):
        return SlackDeliveryFailed(what, _reason(exc))
    return SlackDeliveryDelayed(what, _reason(exc))


class SlackNotifier:
    """Posts each incident once in the incident channel and updates it in place; DMs the affected user."""

    def __init__(
        self, client: WebClient, config: Config, outbox: Outbox, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.client = client
        self.config = config
        self.outbox = outbox
        self.now = clock or (lambda: datetime.now(UTC))
        self.process = f"{socket.gethostname()[:30]}:{os.getpid()}"
        self._progress: dict[int, Throttle] = {}  # incident id -> the pace of its running step's progress
        self._progress_lock = threading.Lock()

    # -- the incident message ------------------------------------------------------------------

    def incident_changed(self, incident: Incident) -> MessageRef | None:
        """Bring the incident's message to its newest version (posting it the first time); return its ref when
        this call posted it. A failure leaves the message behind for `catch_up`."""
        # Rendered even at a version already shown: a monitoring check adds to the message without a new version.
        posted, _answered = self._converge(incident.id, again=True)
        return posted

    def _converge(self, incident_id: int, *, again: bool = False) -> tuple[MessageRef | None, bool]:
        """Show the newest rendering while we can hold the message (`again`: even at a version already shown);
        return what we posted and whether Slack answered."""
        posted, owner = None, self._claimant()
        while (record := self.outbox.claim_message(incident_id=incident_id, owner=owner, lease=LEASE)) is not None:
            try:
                incident = self.outbox.incident(incident_id)
                if incident is None or (record.shown_version >= incident.version and not again):
                    return posted, True
                again = False
                posted = self._show(incident, record.post_attempts > 0) or posted
            except FAILURES as exc:
                log.warning("incident #%s: its Slack message stays behind for now (%s)", incident_id, _reason(exc))
                return posted, False
            finally:
                self.outbox.release_message(incident_id=incident_id, owner=owner)
            # Released, then checked again: a change told while we held the message is shown too.
        return posted, True

    def _show(self, incident: Incident, tried_before: bool) -> MessageRef | None:
        message = incident_blocks.incident_message(incident, now=self.now()).as_kwargs()
        metadata = _metadata(INCIDENT_EVENT, incident_id=incident.id)
        found = None
        if incident.slack_ts is None:
            channel = self.config.channel
            ts = None
            if tried_before:  # an earlier attempt may have posted it: look before posting again
                ts = self._find(channel, INCIDENT_EVENT, incident_id=incident.id, oldest=incident.opened_at)
            if ts is None:
                self.outbox.note_post_attempt(incident_id=incident.id)  # before: a crash after posting is found
                response = self.client.chat_postMessage(channel=channel, metadata=metadata, **message)
                ref = MessageRef(response["channel"], response["ts"])
                self.outbox.message_shown(
                    incident_id=incident.id, version=incident.version, channel=ref.channel, ts=ref.ts
                )
                return ref
            # An earlier attempt did post it: record where (the thread can start), then update it to the newest.
            found = MessageRef(channel, ts)
            self.outbox.message_shown(incident_id=incident.id, version=0, channel=channel, ts=ts)
        ref = found or MessageRef(incident.slack_channel or self.config.channel, str(incident.slack_ts))
        self.client.chat_update(channel=ref.channel, ts=ref.ts, metadata=metadata, **message)
        self.outbox.message_shown(incident_id=incident.id, version=incident.version)
        return found

    # -- a long step's progress ----------------------------------------------------------------

    def step_progress(self, incident: Incident, progress: Progress | None) -> None:
        """Show a long step's progress as a line of the incident message, at most every PROGRESS_SECONDS per
        incident; None (the step ended) shows the message without it. A failure only loses that update."""
        with self._progress_lock:
            throttle = self._progress.get(incident.id)
            if progress is None:
                self._progress.pop(incident.id, None)
            elif throttle is None:
                throttle = self._progress[incident.id] = Throttle(
                    lambda shown: self._show_progress(incident.id, shown), interval=PROGRESS_SECONDS
                )
        if progress is not None:
            assert throttle is not None
            throttle.update(progress)
        elif throttle is not None and throttle.shown is not None:
            self._converge(incident.id, again=True)  # the step's outcome replaces the progress line

    def _show_progress(self, incident_id: int, progress: Progress) -> None:
        owner = self._claimant()
        # Held like any update of the message, so an older rendering never overwrites a newer one; when
        # another update holds it, this one is skipped (the next comes a few seconds later).
        if self.outbox.claim_message(incident_id=incident_id, owner=owner, lease=LEASE) is None:
            return
        try:
            incident = self.outbox.incident(incident_id)
            if incident is None or incident.slack_ts is None:
                return
            message = incident_blocks.incident_message(incident, now=self.now(), progress=progress).as_kwargs()
            channel = incident.slack_channel or self.config.channel
            metadata = _metadata(INCIDENT_EVENT, incident_id=incident_id)
            self.client.chat_update(channel=channel, ts=incident.slack_ts, metadata=metadata, **message)
        except FAILURES as exc:
            log.warning("incident #%s: progress not shown (%s)", incident_id, _reason(exc))
        finally:
            self.outbox.release_message(incident_id=incident_id, owner=owner)
        self._converge(incident_id)  # a change told while we held the message is shown now, not at catch-up

    # -- the thread ----------------------------------------------------------------------------

    def step_logged(self, incident: Incident, text: str) -> None:
        """Keep the reply for the incident's thread, then post what is pending, in order."""
        self.outbox.add_reply(incident_id=incident.id, text=self._safe(text), now=self.now())
        self._post_replies(incident.id)

    def _post_replies(self, incident_id: int) -> bool:
        """Post the incident's pending replies while we can hold them; False when Slack did not answer."""
        incident = self.outbox.incident(incident_id)
        if incident is None or incident.slack_ts is None:
            return True  # no thread yet: `catch_up` posts the message first, then these
        channel, thread = incident.slack_channel or self.config.channel, incident.slack_ts
        owner = self._claimant()
        while (reply := self.outbox.claim_next_reply(incident_id=incident_id, owner=owner, lease=LEASE)) is not None:
            try:
                ts = None
                if reply.attempts > 1:  # an earlier attempt may have reached Slack: look before posting
                    ts = self._find(channel, REPLY_EVENT, reply_id=reply.id, thread=thread, oldest=reply.created_at)
                if ts is None:
                    metadata = _metadata(REPLY_EVENT, reply_id=reply.id)
                    ts = self.client.chat_postMessage(
                        channel=channel, thread_ts=thread, text=reply.text, metadata=metadata
                    )["ts"]
                self.outbox.reply_posted(reply_id=reply.id, ts=str(ts), now=self.now())
            except SlackApiError as exc:
                if _transient(exc):
                    return self._reply_failed(incident_id, reply.id, owner, exc)
                log.error("incident #%s: Slack refused a thread reply for good (%s)", incident_id, _reason(exc))
                self.outbox.reply_refused(reply_id=reply.id, error=_reason(exc), now=self.now())
            except FAILURES as exc:
                return self._reply_failed(incident_id, reply.id, owner, exc)
        return True

    def _reply_failed(self, incident_id: int, reply_id: int, owner: str, exc: Exception) -> bool:
        self.outbox.release_reply(reply_id=reply_id, owner=owner, pause=RETRY_PAUSE)
        log.warning("incident #%s: a thread reply waits for Slack (%s)", incident_id, _reason(exc))
        return False

    def _claimant(self) -> str:
        """A name for one claim: unique per call, so two threads of this process never share a hold."""
        return f"{self.process}:{uuid.uuid4().hex[:12]}"

    def _safe(self, text: str) -> str:
        """Escape the step text (it quotes queue data a spammer controls) but keep our director mentions."""
        return blocks.thread_text(text, self.config.directors)

    def catch_up(self) -> None:
        """Re-apply what Slack missed: every message behind its incident, then the pending replies; stop at the
        first Slack failure (the next round tries again)."""
        for incident_id in self.outbox.behind():
            if not self._converge(incident_id)[1]:
                return
        for incident_id in self.outbox.with_pending_replies():
            if not self._post_replies(incident_id):
                return

    def _find(
        self, channel: str, event: str, *, oldest: datetime, thread: str | None = None, **payload: Any
    ) -> str | None:
        """Return the ts of our message tagged `event` with `payload` in the channel (or thread), if Slack has it."""
        since = f"{oldest.timestamp() - 60:.6f}"  # hosts' clocks may differ a little from Slack's
        cursor = None
        for _page in range(LOOKUP_PAGES):
            args: dict[str, Any] = {"channel": channel, "oldest": since, "limit": 200, "include_all_metadata": True}
            if cursor:
                args["cursor"] = cursor
            page = (
                self.client.conversations_replies(ts=thread, **args)
                if thread
                else self.client.conversations_history(**args)
            )
            for message in page.get("messages") or []:
                meta = message.get("metadata") or {}
                got = meta.get("event_payload") or {}
                if meta.get("event_type") == event and all(str(got.get(k)) == str(v) for k, v in payload.items()):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    # -- the password --------------------------------------------------------------------------

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        """DM the user found by their address (once, even when the step runs again after a crash); without one,
        show the password to the opener only."""
        look_up = _("look up {address}").format(address=account.address)
        try:
            user = self.client.users_lookupByEmail(email=account.address)["user"]["id"]
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                raise delivery_failed(look_up, exc) from None
            return self._deliver_to_operator(incident, account, password)
        except FAILURES as exc:
            raise delivery_failed(look_up, exc) from None
        with i18n.speaking(locale_of(self.client, user)):  # the user's own language, the team's otherwise
            message = password_blocks.password_dm(
                incident_id=incident.id,
                address=account.address,
                user_id=user,
                password=password.reveal(),
                keep_minutes=self.config.password_message_minutes,
            )
        # One DM per cleanup: a re-run of the step (same incident, same phase) finds the one already sent.
        cleanup = f"{incident.id}:{incident.phase}"
        try:
            channel = self.client.conversations_open(users=user)["channel"]["id"]
            ts = self._find(channel, PASSWORD_EVENT, cleanup=cleanup, oldest=incident.opened_at)
            if ts is None:
                metadata = _metadata(PASSWORD_EVENT, cleanup=cleanup)
                ts = self.client.chat_postMessage(channel=channel, metadata=metadata, **message.as_kwargs())["ts"]
        except FAILURES as exc:
            # str(exc) would quote Slack's answer, which can echo the message: keep only the error code.
            raise delivery_failed(_("DM {address}").format(address=account.address), exc) from None
        # No mention: it would ping the user from the incident channel, which is for IT only.
        note = _("DM sent to them in Slack; the password leaves Slack when they confirm")
        return Delivery(via="dm", confirmed=False, note=note, ref=MessageRef(channel, str(ts)), to=user)

    def _deliver_to_operator(self, incident: Incident, account: Account, password: Password) -> Delivery:
        # Ephemeral: only the opener sees it, and Slack keeps it in nobody's history. The encrypted
        # password stays in mailfix until they confirm (or it times out), so it is not lost if missed.
        message = password_blocks.password_for_operator(
            incident_id=incident.id, address=account.address, password=password.reveal()
        )
        try:
            self.client.chat_postEphemeral(
                channel=incident.slack_channel or self.config.channel, user=incident.opened_by, **message.as_kwargs()
            )
        except FAILURES as exc:
            tell = _("tell {user} the password").format(user=f"<@{incident.opened_by}>")
            raise delivery_failed(tell, exc) from None
        return Delivery(via="operator", confirmed=False, note=_(NOT_IN_SLACK), to=incident.opened_by)

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        """Rewrite the DM at `ref` without the password (an ephemeral note has no ref: nothing to do)."""
        if ref is None or incident.suspect_address is None:
            return
        try:
            user = self.client.users_lookupByEmail(email=incident.suspect_address)["user"]["id"]
        except FAILURES:
            user = None  # said in the team's language then
        with i18n.speaking(locale_of(self.client, user) if user else None):
            message = password_blocks.password_dm_withdrawn(address=incident.suspect_address)
        self.client.chat_update(channel=ref.channel, ts=ref.ts, **message.as_kwargs())

    # -- the flood watch -----------------------------------------------------------------------

    def alert_raised(self, alert: FloodAlert) -> MessageRef:
        """Post a flood watch alert in the incident channel; return where it lives."""
        # Telling an alert is retried at the next poll (by any replica) when Slack did not answer: an
        # earlier post whose answer was lost is found by its metadata instead of being posted again.
        channel = self.config.channel
        ts = self._find(channel, ALERT_EVENT, alert_id=alert.id, oldest=alert.opened_at)
        if ts is not None:
            return MessageRef(channel, ts)
        message = alert_blocks.alert_message(alert)
        metadata = _metadata(ALERT_EVENT, alert_id=alert.id)
        response = self.client.chat_postMessage(channel=channel, metadata=metadata, **message.as_kwargs())
        return MessageRef(response["channel"], response["ts"])

    def alert_changed(self, alert: FloodAlert) -> None:
        """Rewrite the alert's message in place (flood over, reachable again, incident opened)."""
        if alert.slack_ts is None:
            return
        message = alert_blocks.alert_message(alert)
        self.client.chat_update(
            channel=alert.slack_channel or self.config.channel, ts=alert.slack_ts, **message.as_kwargs()
        )


def locale_of(client: WebClient, user: str) -> str | None:
    """The user's Slack locale (`es-LA`, `en-US`), or None when Slack does not say: what they read is then in
    the team's language, never a reason to hold back what they must be told."""
    try:
        found = client.users_info(user=user, include_locale=True)["user"].get("locale")
    except FAILURES as exc:
        log.info("no locale for %s (%s): the team's language", user, _reason(exc))
        return None
    return found if isinstance(found, str) else None


def _metadata(event: str, **payload: Any) -> dict[str, Any]:
    return {"event_type": event, "event_payload": payload}


def _transient(exc: SlackApiError) -> bool:
    """True when Slack may accept the same call later (rate limited, down); False when it refused it for good."""
    return exc.response.status_code != 200 or exc.response.get("error") in TRANSIENT


def _reason(exc: Exception) -> str:
    """Slack's error code, or the exception's type: never Slack's whole answer (it can echo the message)."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return type(exc).__name__
