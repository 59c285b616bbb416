"""The runbook's notifier for Slack: the incident message, its thread, the new password's DM, and the
flood watch's alerts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import Config
from bot.core.mailserver import Account, Password
from bot.core.notifier import Delivery, MessageRef
from bot.errors import MailfixError
from handlers import alert_blocks, blocks, incident_blocks, password_blocks
from storage.models import FloodAlert, Incident

log = logging.getLogger(__name__)
NOT_IN_SLACK = "user not in Slack: tell them by phone"


class SlackDeliveryFailed(MailfixError):
    """Slack refused a message the runbook needs delivered (the step fails and can be retried)."""

    def __init__(self, what: str, error: str) -> None:
        super().__init__(f"could not {what}: Slack said {error}")


class SlackNotifier:
    """Posts each incident once in the incident channel and updates it in place; DMs the affected user."""

    def __init__(self, client: WebClient, config: Config, clock: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.config = config
        self.now = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._incident_locks: dict[int, threading.Lock] = {}
        self._versions: dict[int, int] = {}  # newest version rendered per incident, so no stale update wins
        self._posted: dict[int, MessageRef] = {}  # posted by this process, in case a stale object has no ts yet

    def incident_changed(self, incident: Incident) -> MessageRef | None:
        """Post the incident message the first time; afterwards update it (never with an older version)."""
        message = incident_blocks.incident_message(incident, now=self.now())
        with self._incident_lock(incident.id):
            if incident.version < self._versions.get(incident.id, 0):
                return None
            self._versions[incident.id] = incident.version
            ref = (
                MessageRef(incident.slack_channel or self.config.channel, incident.slack_ts)
                if incident.slack_ts
                else None
            )
            ref = ref or self._posted.get(incident.id)
            if ref is None:
                response = self.client.chat_postMessage(channel=self.config.channel, **message.as_kwargs())
                self._posted[incident.id] = MessageRef(response["channel"], response["ts"])
                return self._posted[incident.id]
            self.client.chat_update(channel=ref.channel, ts=ref.ts, **message.as_kwargs())
            return None if incident.slack_ts else ref

    def step_logged(self, incident: Incident, text: str) -> None:
        """Reply in the incident's thread (or in the channel before the message exists)."""
        ref = self._posted.get(incident.id)
        channel = incident.slack_channel or (ref.channel if ref else self.config.channel)
        thread = incident.slack_ts or (ref.ts if ref else None)
        self.client.chat_postMessage(channel=channel, thread_ts=thread, text=self._safe(text))

    def _safe(self, text: str) -> str:
        """Escape the step text (it quotes queue data a spammer controls) but keep our director mentions."""
        safe = blocks.escape(text)
        for director in self.config.directors:
            safe = safe.replace(f"&lt;@{director}&gt;", f"<@{director}>")
        return safe

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        """DM the user found by their address; without one, show the password to the opener only."""
        try:
            user = self.client.users_lookupByEmail(email=account.address)["user"]["id"]
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                raise SlackDeliveryFailed(f"look up {account.address}", str(exc.response.get("error"))) from None
            return self._deliver_to_operator(incident, account, password)
        except SlackClientError as exc:
            raise SlackDeliveryFailed(f"look up {account.address}", type(exc).__name__) from None
        message = password_blocks.password_dm(
            incident_id=incident.id,
            address=account.address,
            user_id=user,
            password=password.reveal(),
            keep_minutes=self.config.password_message_minutes,
        )
        try:
            channel = self.client.conversations_open(users=user)["channel"]["id"]
            response = self.client.chat_postMessage(channel=channel, **message.as_kwargs())
        except SlackApiError as exc:
            # str(exc) would quote Slack's answer, which can echo the message: keep only the error code.
            raise SlackDeliveryFailed(f"DM {account.address}", str(exc.response.get("error"))) from None
        except SlackClientError as exc:
            raise SlackDeliveryFailed(f"DM {account.address}", type(exc).__name__) from None
        note = f"DM sent to <@{user}>; the password leaves Slack when they confirm"
        ref = MessageRef(response["channel"], response["ts"])
        return Delivery(via="dm", confirmed=False, note=note, ref=ref, to=user)

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
        except SlackApiError as exc:
            raise SlackDeliveryFailed(
                f"tell <@{incident.opened_by}> the password", str(exc.response.get("error"))
            ) from None
        except SlackClientError as exc:
            raise SlackDeliveryFailed(f"tell <@{incident.opened_by}> the password", type(exc).__name__) from None
        return Delivery(via="operator", confirmed=False, note=NOT_IN_SLACK, to=incident.opened_by)

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        """Rewrite the DM at `ref` without the password (an ephemeral note has no ref: nothing to do)."""
        if ref is None or incident.suspect_address is None:
            return
        message = password_blocks.password_dm_withdrawn(address=incident.suspect_address)
        self.client.chat_update(channel=ref.channel, ts=ref.ts, **message.as_kwargs())

    def alert_raised(self, alert: FloodAlert) -> MessageRef:
        """Post a flood watch alert in the incident channel; return where it lives."""
        message = alert_blocks.alert_message(alert)
        response = self.client.chat_postMessage(channel=self.config.channel, **message.as_kwargs())
        return MessageRef(response["channel"], response["ts"])

    def alert_changed(self, alert: FloodAlert) -> None:
        """Rewrite the alert's message in place (flood over, reachable again, incident opened)."""
        if alert.slack_ts is None:
            return
        message = alert_blocks.alert_message(alert)
        self.client.chat_update(
            channel=alert.slack_channel or self.config.channel, ts=alert.slack_ts, **message.as_kwargs()
        )

    def _incident_lock(self, incident_id: int) -> threading.Lock:
        with self._lock:
            return self._incident_locks.setdefault(incident_id, threading.Lock())
