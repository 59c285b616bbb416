"""The incident report: a timeline of every step and decision, as Markdown or stable JSON.

JSON schema (version 1): {"version": 1, "incident": {id, server, state, account, sasl_login,
opened_by, opened_at, contained_at, closed_at, seconds_to_containment, seconds_to_resolution,
failure, inbox_archive}, "counts": {held, released, deleted}, "escalations": [event...], "blocklists": text or null,
"timeline": [{"at", "who", "what", "details"}...]}. Times are ISO 8601 UTC. Never any password.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.core.labels import state_label
from bot.core.steps import archive_of
from bot.core.table import ESCALATIONS
from bot.i18n import _
from storage.models import AuditEvent, Incident


def report_json(incident: Incident, audit: Sequence[AuditEvent]) -> dict[str, Any]:
    """Return the report as JSON-ready data."""
    timeline: list[tuple[datetime, dict[str, Any]]] = []
    for event in audit:
        timeline.append(
            (
                event.at,
                {"at": _iso(event.at), "who": event.actor, "what": event.action, "details": event.details},
            )
        )
    counts = {"held": 0, "released": 0, "deleted": 0}
    for run in incident.steps:
        for key in counts:
            counts[key] += int(run.summary.get(key, 0) or 0)
        summary = {k: v for k, v in run.summary.items() if v not in (None, "")}
        timeline.append(
            (
                run.started_at,
                {
                    "at": _iso(run.started_at),
                    "who": run.actor,
                    "what": f"step {run.step}: {run.status}",
                    "details": summary,
                },
            )
        )
    timeline.sort(key=lambda item: item[0])
    return {
        "version": 1,
        "incident": {
            "id": incident.id,
            "server": incident.server,
            "state": incident.state,
            "account": incident.suspect_address,
            "sasl_login": incident.suspect_login,
            "opened_by": incident.opened_by,
            "opened_at": _iso(incident.opened_at),
            "contained_at": _iso(incident.contained_at),
            "closed_at": _iso(incident.closed_at),
            "seconds_to_containment": _seconds(incident.opened_at, incident.contained_at),
            "seconds_to_resolution": _seconds(incident.opened_at, incident.closed_at),
            "failure": incident.failure,
            "inbox_archive": (archive_of(incident) or (None,))[0],
        },
        "counts": counts,
        "escalations": [e.action for e in audit if e.action in ESCALATIONS],
        "blocklists": next(
            (c.details["blocklists"] for c in reversed(incident.checks) if (c.details or {}).get("blocklists")), None
        ),
        "timeline": [entry for _, entry in timeline],
    }


def report_markdown(incident: Incident, audit: Sequence[AuditEvent]) -> str:
    """Return the report as a post-incident note in Markdown (in the current language; the timeline's
    "what" and the escalations are the audit trail's own values, as in the JSON)."""
    data = report_json(incident, audit)
    head, counts = data["incident"], data["counts"]
    title = _("Incident #{id} on {server}: {state}").format(
        id=head["id"], server=head["server"], state=state_label(head["state"])
    )
    account = _("Account: {account} (SASL login {login})").format(
        account=head["account"] or _("none identified"), login=head["sasl_login"] or "-"
    )
    held = _("Messages held {held}, released {released}, deleted {deleted}").format(**counts)
    lines = [
        f"# {title}",
        "",
        f"- {account}",
        "- " + _("Opened by {who} at {at}").format(who=head["opened_by"], at=head["opened_at"]),
        "- " + _("Time to containment: {duration}").format(duration=_duration(head["seconds_to_containment"])),
        "- " + _("Time to resolution: {duration}").format(duration=_duration(head["seconds_to_resolution"])),
        f"- {held}",
        "- " + _("Escalations: {escalations}").format(escalations=", ".join(data["escalations"]) or _("none")),
    ]
    if head["inbox_archive"]:
        archived = _("INBOX archived before it was emptied: {archive} (`{command}`)").format(
            archive=head["inbox_archive"], command=f"mailfix restore-inbox {head['id']}"
        )
        lines.append(f"- {archived}")
    if head["failure"]:
        lines.append("- " + _("Failure: {failure}").format(failure=head["failure"]))
    if data["blocklists"]:
        lines += ["", "## " + _("Blocklists"), "", data["blocklists"]]
    columns = _("| when (UTC) | who | what | details |")
    lines += ["", "## " + _("Timeline"), "", columns, "|---|---|---|---|"]
    for entry in data["timeline"]:
        details = ", ".join(f"{k}={v}" for k, v in entry["details"].items() if not isinstance(v, dict | list))
        lines.append(f"| {entry['at'][11:19]} | {entry['who']} | {entry['what']} | {details} |")
    return "\n".join(lines) + "\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 1) if end else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return _("{minutes} min {seconds} s").format(minutes=int(seconds // 60), seconds=int(seconds % 60))
