"""`--json` of the read verbs: versioned schemas, like `mailfix diagnose --json` (bot/core/diagnosis.py).

Keys are never renamed or removed within a version; new keys may be added. Times are ISO 8601 UTC,
people are Slack user IDs (what mailfix.toml names them by).

`mailfix status --json` and `mailfix list --json` ("mailfix.incidents/1"):

    {"schema": "mailfix.incidents/1",
     "incidents": [{
        "id": int, "server": str, "state": str,        e.g. "awaiting_approval", "monitoring", "resolved"
        "account": str | null, "sasl_login": str | null,
        "opened_by": str, "opened_at": time, "contained_at": time | null, "closed_at": time | null,
        "failure": str | null,
        "suspect": null | {"queued_from": int, "queued_to": int, "queued_by_login": int},
        "approvals": [{"what": "cleanup" | "reboot", "subject": str | null,
                       "decision": "approved" | "rejected" | "expired" | null (pending),
                       "decided_by": str | null, "requested_at": time, "expires_at": time, "decided_at": time | null}],
        "steps": [{"step": str, "status": "started" | "done" | "failed" | "skipped", "attempt": int,
                   "started_at": time, "finished_at": time | null, "summary": {...}}],
        "queue_trend": [int, ...],                      queue size at the last 20 monitoring checks
        "next": [str, ...]                              the commands that apply now
     }, ...]}                                          newest first; `status` without an id: the open ones

`mailfix dnsbl --json` ("mailfix.dnsbl/1"):

    {"schema": "mailfix.dnsbl/1", "server": str, "ip": str, "listed": int (zones listing the ip),
     "zones": [{"zone": str, "listed": true | false | null (unknown), "answer": str, "reason": str,
                "removal_url": str, "error": str}]}

`mailfix watch --json` (JSON Lines: one object per line, as alerts happen; "mailfix.alert/1"):

    {"schema": "mailfix.alert/1", "event": "raised" | "changed", "id": int, "server": str,
     "kind": "flood" | "unreachable", "account": str ("" for unreachable), "opened_at": time,
     "closed_at": time | null, "details": {...}, "text": str}   text: the line `mailfix watch` prints
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bot.core import diagnosis as diagnosis_codec
from bot.core.watch import alert_text
from bot.i18n import speaking
from bot.mail.dnsbl import Listing
from bot.terminal.status import next_steps
from storage.models import FloodAlert, Incident

INCIDENTS, DNSBL, ALERT = "mailfix.incidents/1", "mailfix.dnsbl/1", "mailfix.alert/1"


def incidents_json(incidents: Iterable[Incident]) -> dict[str, Any]:
    """Return incidents (loaded with their steps, approvals and checks) in the "mailfix.incidents/1" schema."""
    return {"schema": INCIDENTS, "incidents": [_incident(i) for i in incidents]}


def _incident(incident: Incident) -> dict[str, Any]:
    diagnosis = diagnosis_codec.of(incident)
    suspect = diagnosis.suspect if diagnosis else None
    return {
        "id": incident.id,
        "server": incident.server,
        "state": incident.state,
        "account": incident.suspect_address,
        "sasl_login": incident.suspect_login,
        "opened_by": incident.opened_by,
        "opened_at": _iso(incident.opened_at),
        "contained_at": _iso(incident.contained_at),
        "closed_at": _iso(incident.closed_at),
        "failure": incident.failure,
        "suspect": None
        if suspect is None
        else {
            "queued_from": suspect.queued_from,
            "queued_to": suspect.queued_to,
            "queued_by_login": suspect.queued_by_login,
        },
        "approvals": [
            {
                "what": a.what,
                "subject": a.subject,
                "decision": a.decision,
                "decided_by": a.decided_by,
                "requested_at": _iso(a.requested_at),
                "expires_at": _iso(a.expires_at),
                "decided_at": _iso(a.decided_at),
            }
            for a in incident.approvals
        ],
        "steps": [
            {
                "step": run.step,
                "status": run.status,
                "attempt": run.attempt,
                "started_at": _iso(run.started_at),
                "finished_at": _iso(run.finished_at),
                "summary": run.summary,
            }
            for run in incident.steps
        ],
        "queue_trend": [c.queue_size for c in incident.checks if c.queue_size >= 0][-20:],
        "next": next_steps(incident),
    }


def dnsbl_json(server: str, ip: str, listings: Sequence[Listing]) -> dict[str, Any]:
    """Return one server's blocklist verdicts in the "mailfix.dnsbl/1" schema."""
    return {
        "schema": DNSBL,
        "server": server,
        "ip": ip,
        "listed": sum(1 for x in listings if x.listed),
        "zones": [
            {
                "zone": x.zone,
                "listed": x.listed,
                "answer": x.answer,
                "reason": x.reason,
                "removal_url": x.removal_url,
                "error": x.error,
            }
            for x in listings
        ],
    }


def alert_json(alert: FloodAlert, event: str) -> dict[str, Any]:
    """Return one alert event of the flood watch in the "mailfix.alert/1" schema (its text in English)."""
    with speaking("en"):  # JSON stays English whatever the team speaks
        text = alert_text(alert)
    return {
        "schema": ALERT,
        "event": event,
        "id": alert.id,
        "server": alert.server,
        "kind": alert.kind,
        "account": alert.account,
        "opened_at": _iso(alert.opened_at),
        "closed_at": _iso(alert.closed_at),
        "details": alert.details,
        "text": text,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
