"""What the terminal shows of an incident: one line, or the full status with what can be done next."""

from __future__ import annotations

from collections.abc import Mapping

from bot.core import diagnosis as diagnosis_codec
from bot.core import monitoring
from bot.core.table import Event, person_events
from storage.models import Incident

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
        lines.append(
            f"  queued from it {suspect.queued_from}, to it {suspect.queued_to}, by its login {suspect.queued_by_login}"
        )
    for approval in incident.approvals:
        decision = approval.decision or f"pending (expires {approval.expires_at:%H:%M})"
        lines.append(f"  {approval.what} approval: {decision} {approval.decided_by or ''}".rstrip())
    for run in incident.steps:
        lines.append(f"  step {run.step:<18} {run.status:<8} {_summary(run.summary)}")
    checks = [c.queue_size for c in incident.checks if c.queue_size >= 0]
    if checks:
        lines.append(f"  queue trend {monitoring.sparkline(checks[-20:])} last {checks[-1]}")
    if incident.failure:
        lines.append(f"  failure: {incident.failure}")
    commands = next_steps(incident)
    if commands:
        lines.append("  next: " + " · ".join(f"`{c}`" for c in commands))
    if incident.state == "monitoring":
        lines.append("  `mailfix run` follows the monitoring to its end")
    return "\n".join(lines)


def _summary(summary: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict | list) and v is not None)
