"""What the scheduler does for open incidents between people's actions: a monitoring check and its
verdict at the deadline, resuming unfinished steps, approval reminders and expiry, and withdrawing
passwords left undelivered.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.core import monitoring
from bot.core.binding import flood_account
from bot.core.effects import pending_approval
from bot.core.runbook import SYSTEM, Runbook
from bot.core.steps import StepName, StepStatus
from bot.core.table import APPROVAL_FOR, MONITOR_ROUNDS, STAGES, WORKING, Event, State
from bot.errors import AlreadyDone, InvalidTransition, MailfixError
from storage.models import Approval, Incident

log = logging.getLogger(__name__)


class Upkeep:
    """The scheduler's duties, run on a runbook."""

    def __init__(self, runbook: Runbook) -> None:
        self.runbook = runbook

    def tick(self, incident_id: int) -> Incident:
        """Run one monitoring check; at the deadline resolve the incident or escalate it."""
        rb = self.runbook
        incident = rb.get(incident_id)
        if incident.state != State.MONITORING:
            return incident
        try:
            with rb.servers.lock(incident.server):
                health = rb.server(incident.server).health(flood_threshold=rb.config.flood_threshold)
            normal, reasons = monitoring.assess(health, incident.checks, incident.monitor_round, rb.config)
            values = {"postfix_running": health.postfix_running, "queue_size": health.queue_size}
            new_flood = monitoring.new_flood(health, incident, rb.config.flood_threshold)
        except MailfixError as exc:
            normal, reasons, new_flood = False, [str(exc)], None
            values = {"postfix_running": False, "queue_size": -1}
        details: dict[str, Any] = {"reasons": reasons}
        if new_flood is not None:
            details["new_flood"] = {"name": new_flood.name, "count": new_flood.count}
        if not any(c.monitor_round == incident.monitor_round for c in incident.checks):
            # A listed IP keeps mail "not normal" whatever is done on the server: check once per round.
            blocklists = rb.blocklists(incident.server)
            if blocklists is not None:
                details["blocklists"] = blocklists
                rb.log_step(incident, blocklists)
        rb.repo.add_check(
            incident_id=incident.id,
            at=rb.now(),
            monitor_round=incident.monitor_round,
            normal=normal,
            details=details,
            **values,
        )
        rb.log_step(incident, monitoring.describe(normal, reasons, values["queue_size"]))
        if new_flood is not None and not any(
            (c.details.get("new_flood") or {}).get("name") == new_flood.name for c in incident.checks
        ):
            # A command is suggested only for a name that is a valid account: the name is queue data.
            contain = flood_account(rb.get(incident_id))
            hint = f" Contain it too (`mailfix contain {incident.id} {contain}`)." if contain else ""
            rb.log_step(
                incident,
                f":rotating_light: New flood from another account: {new_flood.name} has {new_flood.count} "
                f"queued messages.{hint}",
            )
        incident = rb.get(incident_id)
        rb.tell(incident)
        if incident.monitor_deadline is not None and rb.now() >= incident.monitor_deadline:
            event = Event.NORMAL if normal else MONITOR_ROUNDS[incident.monitor_round].escalates_with
            reason = "; ".join(reasons)
            if event == Event.NOT_NORMAL_AFTER_REBOOT:
                reason = f"needs a human: mail is still not normal after a Postfix restart and a reboot ({reason})"
                rb.log_step(incident, f":sos: {rb.directors_mention()} {reason}")
            try:
                return rb.fire(incident.id, event, actor=SYSTEM, reason=reason)
            except (AlreadyDone, InvalidTransition):
                return rb.get(incident_id)
        return incident

    def run_due(self) -> list[Incident]:
        """Resume unfinished steps and run due monitoring checks of every open incident (the scheduler's tick)."""
        rb = self.runbook
        done = []
        for incident in rb.repo.list_incidents(open_only=True, limit=1000):
            if rb.is_active(incident.id):
                continue
            try:
                if incident.state in WORKING or (incident.state in STAGES and rb.steps_pending(rb.get(incident.id))):
                    incident = rb.run_steps(incident.id)
                elif incident.state == State.MONITORING and self._check_due(incident):
                    with rb.working(incident.id):
                        incident = self.tick(incident.id)
                if incident.state in APPROVAL_FOR:
                    self._remind_or_expire(incident)
            except MailfixError as exc:
                log.warning("incident #%s: %s", incident.id, exc)
            done.append(incident)
        self._withdraw_old_passwords()
        return done

    def _remind_or_expire(self, incident: Incident) -> None:
        """Remind the directors once, halfway to the deadline; at the deadline, expire the request."""
        rb = self.runbook
        pending = pending_approval(rb.get(incident.id))
        if pending is None:
            return
        now, directors = rb.now(), rb.directors_mention()
        if now >= pending.expires_at:
            if rb.repo.expire_approval(approval_id=pending.id, now=now):
                rb.tell(rb.get(incident.id))
                rb.log_step(
                    incident,
                    f":hourglass: The {pending.what} approval expired unanswered: an operator can ask again (renew).",
                )
        elif self._halfway(pending, now) and rb.repo.mark_reminded(approval_id=pending.id, now=now):
            rb.log_step(
                incident,
                f":bell: Reminder {directors}: the {pending.what} of incident "
                f"#{incident.id} waits for a director (expires {pending.expires_at:%H:%M} UTC).",
            )

    @staticmethod
    def _halfway(approval: Approval, now: datetime) -> bool:
        return now >= approval.requested_at + (approval.expires_at - approval.requested_at) / 2

    def _withdraw_old_passwords(self) -> None:
        rb = self.runbook
        keep = timedelta(minutes=rb.config.password_message_minutes)
        for incident in rb.repo.with_pending_password():
            sent = [
                r.finished_at for r in incident.steps if r.step == StepName.NOTIFY_USER and r.status == StepStatus.DONE
            ]
            if sent and sent[-1] is not None and rb.now() - sent[-1] >= keep:
                rb.withdraw_password(incident, SYSTEM, "password_withdrawn")

    def has_work(self, incident: Incident) -> bool:
        """True while the incident has steps to run or is being monitored (not only waiting for people)."""
        return (
            incident.state in WORKING
            or incident.state == State.MONITORING
            or (incident.state in STAGES and self.runbook.steps_pending(self.runbook.get(incident.id)))
        )

    def _check_due(self, incident: Incident) -> bool:
        rb = self.runbook
        full = rb.get(incident.id)
        if not full.checks:
            return True
        interval = timedelta(seconds=rb.config.check_interval_seconds)
        deadline_passed = full.monitor_deadline is not None and rb.now() >= full.monitor_deadline
        return deadline_passed or rb.now() - full.checks[-1].at >= interval
