"""What the terminal shows of an incident: one line, or the full status with what can be done next."""

from __future__ import annotations

from collections.abc import Mapping

from bot.core import diagnosis as diagnosis_codec
from bot.core import monitoring
from bot.core.labels import approval_kind, decision_text
from bot.core.table import Event, person_events
from bot.i18n import N_, _
from storage.models import Incident, StepRun

# The command a person types for each event the table lets people fire ({n}: the incident id).
COMMAND_FOR: Mapping[Event, str] = {
    Event.DIAGNOSE: "mailfix start",
    Event.APPROVE: "mailfix approve {n} --account {account}",
    Event.REJECT: "mailfix reject {n} --account {account}",
    Event.PICK: "mailfix reject {n} --account {account} --pick ACCOUNT",
    Event.RENEW: "mailfix renew {n} {renewed}",
    Event.CONTAIN: "mailfix contain {n} ACCOUNT",
    Event.RESOLVE_NOW: "mailfix resolve {n}",
    Event.APPROVE_REBOOT: "mailfix approve {n} --reboot",
    Event.RETRY: "mailfix retry {n}",
    Event.ABORT: "mailfix abort {n}",
}
# How an approval was decided, as a whole line (its stored `decision`).
DECIDED: Mapping[str, str] = {
    "approved": N_("{what} approval: approved {by}"),
    "rejected": N_("{what} approval: rejected {by}"),
    "expired": N_("{what} approval: expired {by}"),
}
# A step run's stored status, as people read it.
STEP_STATUSES: Mapping[str, str] = {
    "started": N_("started"),
    "done": N_("done"),
    "failed": N_("failed"),
    "skipped": N_("skipped"),
}


def next_steps(incident: Incident) -> list[str]:
    """Return the commands people may run now, read from the state table."""
    account = incident.suspect_address or "ADDRESS"
    renewed = "--reboot" if incident.state == "awaiting_reboot_approval" else f"--account {account}"
    return [
        COMMAND_FOR[e].format(n=incident.id, account=account, renewed=renewed) for e in person_events(incident.state)
    ]


def one_line(incident: Incident) -> str:
    account, opened = incident.suspect_address or "-", f"{incident.opened_at:%Y-%m-%d %H:%M}"
    return f"#{incident.id:<4} {incident.server:<12} {incident.state:<26} {account:<30} {opened}"


def describe(incident: Incident) -> str:
    """Return a multi-line status of an incident for the terminal."""
    lines = [one_line(incident)]
    diagnosis = diagnosis_codec.of(incident)
    suspect = diagnosis.suspect if diagnosis else None
    if suspect is not None:
        queued = _("queued from it {sent_from}, to it {sent_to}, by its login {by_login}").format(
            sent_from=suspect.queued_from, sent_to=suspect.queued_to, by_login=suspect.queued_by_login
        )
        lines.append("  " + queued)
    for approval in incident.approvals:
        what, by = approval_kind(approval.what), approval.decided_by or ""
        if not approval.decision:
            text = _("{what} approval: pending (expires {time}) {by}").format(
                what=what, time=f"{approval.expires_at:%H:%M}", by=by
            )
        elif approval.decision in DECIDED:
            text = _(DECIDED[approval.decision]).format(what=what, by=by)
        else:
            decision = decision_text(approval.decision)
            text = _("{what} approval: {decision} {by}").format(what=what, decision=decision, by=by)
        lines.append(f"  {text}".rstrip())
    for run in incident.steps:
        lines.append("  " + _("step {step} {status} {summary}").format(**_step_fields(run)))
    checks = [c.queue_size for c in incident.checks if c.queue_size >= 0]
    if checks:
        trend = _("queue trend {sparkline} last {size}").format(
            sparkline=monitoring.sparkline(checks[-20:]), size=checks[-1]
        )
        lines.append("  " + trend)
    if incident.failure:
        lines.append("  " + _("failure: {failure}").format(failure=incident.failure))
    commands = next_steps(incident)
    if commands:
        lines.append("  " + _("next: {commands}").format(commands=" · ".join(f"`{c}`" for c in commands)))
    if incident.state == "monitoring":
        lines.append("  " + _("`mailfix run` follows the monitoring to its end"))
    return "\n".join(lines)


def _step_fields(run: StepRun) -> dict[str, str]:
    """Return a step run's columns, padded as the status lines align them (the step's name is never translated)."""
    label = STEP_STATUSES.get(run.status)
    status = _(label) if label else run.status
    return {"step": f"{run.step:<18}", "status": f"{status:<8}", "summary": _summary(run.summary)}


def _summary(summary: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict | list) and v is not None)
