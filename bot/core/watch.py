"""The flood watch: polls every configured server's queue and tells the channel once per flood.

Each poll runs the read-only diagnosis on every server with no open incident. An account whose
queued mail crosses `flood_threshold` raises one alert (with a "Start incident" button in Slack);
the alert stays open, and silent, while the flood lasts, and is updated when it ends. A server that
cannot be reached raises one alert, updated when it answers again. Alerts live in the database
(`storage.models.FloodAlert`), so a restarted watcher does not alert twice; a unique index keeps two
watchers (replicas) from raising the same one, and a claim in the database from telling it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.config import Config
from bot.core.mailserver import NOT_ACCOUNTS, Diagnosis, MailServer
from bot.core.notifier import MessageRef
from bot.core.pool import ServerPool
from bot.core.runbook import utcnow
from bot.core.scheduler import Periodic
from bot.errors import ExecutorError
from bot.i18n import _
from storage.models import FloodAlert, Incident
from storage.repository import DuplicateAlert, Repository

log = logging.getLogger(__name__)
FLOOD, UNREACHABLE = "flood", "unreachable"
# A flood ends when its count falls below this share of the threshold, not at the threshold itself:
# a count wavering around the threshold would otherwise end and raise the alert again every poll.
END_BELOW = 0.5
# How long a watcher may take to tell an alert before another may (a watcher that died while telling).
TELLING_LEASE = timedelta(minutes=2)


class AlertNotifier(Protocol):
    def alert_raised(self, alert: FloodAlert) -> MessageRef | None:
        """Tell people about a new alert; return where its message lives, if it has one."""
        ...

    def alert_changed(self, alert: FloodAlert) -> None:
        """Rewrite the alert's message (ended, reachable again, incident opened)."""
        ...


@dataclass(frozen=True)
class Flood:
    """An account (or sender) whose queued mail crosses the flood threshold, with the figures."""

    account: str
    login: str | None
    count: int
    queued_from: int
    queued_by_login: int
    queued_to: int
    queue_total: int
    by_queue: dict[str, int]

    def details(self, threshold: int) -> dict[str, Any]:
        return {
            "login": self.login,
            "count": self.count,
            "queued_from": self.queued_from,
            "queued_by_login": self.queued_by_login,
            "queued_to": self.queued_to,
            "queue_total": self.queue_total,
            "by_queue": dict(self.by_queue),
            "threshold": threshold,
        }


def find_flood(diagnosis: Diagnosis, threshold: int) -> Flood | None:
    """Return the flood in `diagnosis`: its suspect, else a sender or login over the threshold; else None."""
    snapshot = diagnosis.snapshot
    suspect = diagnosis.suspect
    if suspect is not None:
        return Flood(
            account=suspect.account.address,
            login=suspect.account.login,
            count=max(suspect.queued_from, suspect.queued_by_login),
            queued_from=suspect.queued_from,
            queued_by_login=suspect.queued_by_login,
            queued_to=suspect.queued_to,
            queue_total=snapshot.total,
            by_queue=dict(snapshot.by_queue),
        )
    # No local account to name (a forged or foreign sender): still a flood the channel should see.
    for is_login, ranking in ((True, snapshot.top_sasl_logins), (False, snapshot.top_senders)):
        for ranked in ranking:
            if ranked.count >= threshold and ranked.name.lower() not in NOT_ACCOUNTS:
                return Flood(
                    account=ranked.name.lower(),
                    login=ranked.name if is_login else None,
                    count=ranked.count,
                    queued_from=0 if is_login else ranked.count,
                    queued_by_login=ranked.count if is_login else 0,
                    queued_to=0,
                    queue_total=snapshot.total,
                    by_queue=dict(snapshot.by_queue),
                )
    return None


def current_count(alert: FloodAlert, diagnosis: Diagnosis) -> int:
    """Return how much queued mail the alert's account has now (0 once it left the top lists)."""
    names = {alert.account, str(alert.details.get("login") or "").lower()} - {""}
    snapshot = diagnosis.snapshot
    found = [r.count for r in (*snapshot.top_sasl_logins, *snapshot.top_senders) if r.name.lower() in names]
    suspect = diagnosis.suspect
    if suspect is not None and suspect.account.address in names:
        found += [suspect.queued_from, suspect.queued_by_login]
    return max(found, default=0)


class Watcher:
    """Polls the configured servers and keeps one alert per ongoing flood or unreachable server."""

    def __init__(
        self,
        config: Config,
        repository: Repository,
        servers: ServerPool | Callable[[str], MailServer],
        notifier: AlertNotifier,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.repo = repository
        self.servers = ServerPool.of(servers)
        self.notifier = notifier
        self.now = clock

    def close(self) -> None:
        """Close the watch's server connections (when it owns them, as `mailfix watch` does)."""
        self.servers.close()

    def poll_once(self) -> list[FloodAlert]:
        """Poll every server once; return the alerts raised by this poll."""
        self._tell_untold()
        raised: list[FloodAlert] = []
        for server in self.config.servers:
            try:
                raised += self._poll(server.name)
            except Exception:  # one server's surprise must not stop the watch of the others
                log.exception("flood watch: polling %s failed", server.name)
        return raised

    def _poll(self, name: str) -> list[FloodAlert]:
        incident = self.repo.open_on(server=name)
        if incident is not None:
            # The runbook owns the server now (its own checks, maybe a reboot): nothing to alert.
            self._note_incident(name, incident)
            return []
        try:
            with self.servers.lock(name):
                diagnosis = self.servers.get(name).diagnose(flood_threshold=self.config.flood_threshold)
        except ExecutorError as exc:
            self.servers.forget(name)
            alert = self._raise(name, UNREACHABLE, "", {"error": str(exc)})
            return [alert] if alert is not None else []
        for alert in self.repo.open_alerts(server=name):
            if alert.kind == UNREACHABLE:
                self._close(alert, {"reachable_at": self.now().isoformat()})
        return self._floods(name, diagnosis)

    def _floods(self, name: str, diagnosis: Diagnosis) -> list[FloodAlert]:
        threshold = self.config.flood_threshold
        flood = find_flood(diagnosis, threshold)
        lasting = set()
        for open_alert in self.repo.open_alerts(server=name):
            if open_alert.kind != FLOOD:
                continue
            count = current_count(open_alert, diagnosis)
            if flood is not None and flood.account == open_alert.account:
                count = max(count, flood.count)
            if count < threshold * END_BELOW:
                self._close(open_alert, {"ended_count": count})
            else:
                lasting.add(open_alert.account)
        if flood is None or flood.account in lasting:
            return []
        alert = self._raise(name, FLOOD, flood.account, flood.details(threshold))
        return [alert] if alert is not None else []

    # -- alerts ----------------------------------------------------------------------------

    def _raise(self, server: str, kind: str, account: str, details: dict[str, Any]) -> FloodAlert | None:
        try:
            alert = self.repo.open_alert(server=server, kind=kind, account=account, now=self.now(), details=details)
        except DuplicateAlert:
            return None  # open already: told once, not again while it lasts
        self._tell_raised(alert)
        return alert

    def _close(self, alert: FloodAlert, extra: dict[str, Any]) -> None:
        closed = self.repo.close_alert(alert_id=alert.id, now=self.now(), details={**alert.details, **extra})
        if closed is not None and closed.notified_at is not None:
            self._tell_changed(closed)

    def _note_incident(self, server: str, incident: Incident) -> None:
        """Mark the server's open flood alerts as handled by `incident` (once), so the button goes away."""
        for alert in self.repo.open_alerts(server=server):
            if alert.kind != FLOOD or alert.details.get("incident_id") == incident.id:
                continue
            details = {**alert.details, "incident_id": incident.id, "incident_opened_by": incident.opened_by}
            updated = self.repo.update_alert(alert_id=alert.id, details=details)
            if updated is not None and updated.notified_at is not None:
                self._tell_changed(updated)

    def _tell_untold(self) -> None:
        # An alert raised while Slack was unreachable is told at the next poll instead of never.
        for alert in self.repo.open_alerts():
            if alert.notified_at is None:
                self._tell_raised(alert)

    def _tell_raised(self, alert: FloodAlert) -> None:
        # Claimed first, in the database: of two watchers (replicas) seeing the alert untold, one tells it.
        if not self.repo.claim_telling(alert_id=alert.id, lease=TELLING_LEASE):
            log.info("flood watch: alert #%s is told already, or being told by another watcher", alert.id)
            return
        try:
            ref = self.notifier.alert_raised(alert)
        except Exception:
            log.exception("flood watch: could not tell alert #%s; trying again at the next poll", alert.id)
            self.repo.update_alert(alert_id=alert.id, telling_until=None)  # let the next poll (anywhere) tell it
            return
        fields: dict[str, Any] = {"notified_at": self.now(), "telling_until": None}
        if ref is not None:
            fields |= {"slack_channel": ref.channel, "slack_ts": ref.ts}
        self.repo.update_alert(alert_id=alert.id, **fields)

    def _tell_changed(self, alert: FloodAlert) -> None:
        try:
            self.notifier.alert_changed(alert)
        except Exception:
            log.exception("flood watch: could not update alert #%s", alert.id)


def alert_text(alert: FloodAlert) -> str:
    """Return a one-line plain-text summary of the alert (terminal, Slack's fallback text)."""
    d, server = alert.details, alert.server
    if alert.kind == UNREACHABLE:
        if alert.closed_at is not None:
            since = f"{alert.opened_at:%H:%M} UTC"
            return _("{server} is reachable again (unreachable since {since})").format(server=server, since=since)
        error = d["error"] if "error" in d else _("unknown error")
        return _("{server} cannot be reached: {error}").format(server=server, error=error)
    who = alert.account
    if d.get("login") and d.get("login") != alert.account:
        who = _("{account} (login {login})").format(account=alert.account, login=d["login"])
    if alert.closed_at is not None:
        if d.get("incident_id"):
            how = _("handled by incident #{id}").format(id=d["incident_id"])
        else:
            how = _("ended on its own")
        return _("Flood from {who} on {server} is over ({how})").format(who=who, server=server, how=how)
    if d.get("incident_id"):
        return _("Flood from {who} on {server}: incident #{id} is open").format(
            who=who, server=server, id=d["incident_id"]
        )
    return _("Flood on {server}: {who} has {count} queued messages (queue {total}, threshold {threshold})").format(
        server=server,
        who=who,
        count=d.get("count", "?"),
        total=d.get("queue_total", "?"),
        threshold=d.get("threshold", "?"),
    )


def start_watch(
    config: Config, repository: Repository, servers: ServerPool, notifier: AlertNotifier
) -> Periodic | None:
    """Start the flood watch in the background when `watch_interval_seconds` > 0; None when it is off."""
    if config.watch_interval_seconds <= 0:
        return None
    watcher = Watcher(config, repository, servers, notifier)
    return Periodic("flood watch", watcher.poll_once, config.watch_interval_seconds).start()
