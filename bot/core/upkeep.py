"""What the scheduler does for open incidents between people's actions: a monitoring check and its
verdict at the deadline, resuming unfinished steps, approval reminders and expiry, and withdrawing
passwords left undelivered.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.core import monitoring, retrying
from bot.core.binding import flood_account
from bot.core.effects import pending_approval
from bot.core.notifier import stamp
from bot.core.runbook import SYSTEM, Runbook
from bot.core.steps import StepName, StepStatus
from bot.core.table import APPROVAL_FOR, MONITOR_ROUNDS, STAGES, WORKING, Event, State
from bot.errors import AlreadyDone, InvalidTransition, MailfixError
from bot.i18n import N_, _
from storage.models import Approval, Incident

log = logging.getLogger(__name__)
# What the thread says when an approval request (by what it asks: APPROVAL_FOR's values) expires unanswered,
# and what it names a request without a subject: marked here, translated where shown.
EXPIRED = {
    "cleanup": N_(":hourglass: The cleanup approval expired unanswered: an operator can ask again (renew)."),
    "reboot": N_(":hourglass: The reboot approval expired unanswered: an operator can ask again (renew)."),
}
UNNAMED = {"cleanup": N_("the cleanup"), "reboot": N_("the reboot")}


def _expired(what: str) -> str:
    if what in EXPIRED:
        return _(EXPIRED[what])
    return _(":hourglass: The {what} approval expired unanswered: an operator can ask again (renew).").format(what=what)


def _unnamed(what: str) -> str:
    return _(UNNAMED[what]) if what in UNNAMED else _("the {what}").format(what=what)


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
        said = [monitoring.verdict_of(c.normal, c.details.get("reasons") or ()) for c in incident.checks]
        if not said or said[-1] != monitoring.verdict_of(normal, reasons):  # the message shows every check
            rb.log_step(incident, monitoring.describe(normal, reasons, values["queue_size"]))
        if new_flood is not None and not any(
            (c.details.get("new_flood") or {}).get("name") == new_flood.name for c in incident.checks
        ):
            # A command is suggested only for a name that is a valid account: the name is queue data.
            contain = flood_account(rb.get(incident_id))
            if contain:
                text = _(
                    ":rotating_light: New flood from another account: {name} has {count} queued messages. "
                    "Contain it too (`{command}`)."
                ).format(command=f"mailfix contain {incident.id} {contain}", name=new_flood.name, count=new_flood.count)
            else:
                text = _(":rotating_light: New flood from another account: {name} has {count} queued messages.").format(
                    name=new_flood.name, count=new_flood.count
                )
            rb.log_step(incident, text)
        incident = rb.get(incident_id)
        rb.tell(incident)
        if incident.monitor_deadline is not None and rb.now() >= incident.monitor_deadline:
            event = Event.NORMAL if normal else MONITOR_ROUNDS[incident.monitor_round].escalates_with
            reason, config = "; ".join(reasons), rb.config
            running, size = bool(values["postfix_running"]), values["queue_size"]
            helps = monitoring.restart_helps(postfix_running=running, queue_size=size, flood=new_flood, config=config)
            if new_flood is not None and not (normal or helps):
                # Another account's flood: a restart or reboot would not stop it. Watch again, offer to contain it.
                event = Event.OTHER_FLOOD
                reason = _("not normal only because {name} floods").format(name=new_flood.name)
                rb.log_step(
                    incident,
                    # Each round asks the directors again: it is theirs to contain, and nothing else ends it.
                    _(
                        "{directors} :no_entry_sign: No Postfix restart: mail is not normal only because {name} floods "
                        "({count} queued), which a restart or a reboot would not stop. Contain it too; "
                        "mailfix keeps watching."
                    ).format(directors=rb.directors_mention(), name=new_flood.name, count=new_flood.count),
                )
            if event == Event.NOT_NORMAL_AFTER_REBOOT:
                reason = _(
                    "needs a human: mail is still not normal after a Postfix restart and a reboot ({reasons})"
                ).format(reasons=reason)
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
                    self._next_check_by_deadline(incident)
                elif incident.state == State.FAILED:
                    incident = self._auto_retry(incident)
                if incident.state in APPROVAL_FOR:
                    self._remind_or_expire(incident)
            except MailfixError as exc:
                log.warning("incident #%s: %s", incident.id, exc)
            done.append(incident)
        self._withdraw_old_passwords()
        try:  # what Slack missed (a failed update, a reply not posted) is re-applied here
            rb.notifier.catch_up()
        except Exception:
            log.exception("could not catch up with what people were not told yet")
        return done

    def _auto_retry(self, incident: Incident) -> Incident:
        """Retry a step that failed for a passing fault once its pause is over; the transition commits at
        the incident's version, so of two schedulers only one retries."""
        rb = self.runbook
        incident = rb.get(incident.id)  # read before the audit trail: the decision stands only at this version
        due = retrying.due_at(rb.repo.audit_events(incident_id=incident.id))
        if due is None or rb.now() < due:
            return incident
        try:
            return rb.fire(incident.id, Event.AUTO_RETRY, actor=SYSTEM, at_version=incident.version)
        except (AlreadyDone, InvalidTransition):  # a person (or another scheduler) retried or aborted first
            return rb.get(incident.id)

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
                rb.log_step(incident, _expired(pending.what))
        elif self._halfway(pending, now) and rb.repo.mark_reminded(approval_id=pending.id, now=now):
            rb.log_step(
                incident,
                _(
                    ":bell: {directors} Reminder: incident #{id} waits for a director to decide on {subject} "
                    "(expires {expires})."
                ).format(
                    directors=directors,
                    id=incident.id,
                    subject=pending.subject or _unnamed(pending.what),
                    expires=stamp(pending.expires_at),
                ),
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
        """Claim the incident's due check in the database, on its clock: of several schedulers (replicas),
        one runs each check, and the next is not due for an interval."""
        hold = timedelta(seconds=self.runbook.config.check_interval_seconds)
        return self.runbook.repo.claim_check(incident_id=incident.id, hold=hold)

    def _next_check_by_deadline(self, incident: Incident) -> None:
        """After a check, bring the next one forward to the monitoring deadline when that comes first, so the
        verdict is not late (done after the check, so that no other replica's check runs beside it)."""
        rb, deadline = self.runbook, incident.monitor_deadline
        if incident.state == State.MONITORING and deadline is not None and rb.now() < deadline:
            rb.repo.hasten_check(incident_id=incident.id, within=deadline - rb.now())
