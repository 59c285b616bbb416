"""A diagnosis as data: the one serializer, used for `mailfix diagnose --json`, for the incident's stored
diagnosis, and (read back as typed values) by every renderer.

`to_json` returns this stable schema (keys never renamed; new keys may be added):

    {
      "schema": "mailfix.diagnosis/1",
      "queue": {
        "total": int,                      messages in every queue
        "by_queue": {"active": int, "deferred": int, "hold": int, "incoming": int, "maildrop": int},
        "oldest_age_seconds": int,
        "total_bytes": int,
        "malformed_lines": int,            postqueue -j lines that could not be parsed
        "top_senders":    [{"name": str, "count": int}, ...],   most first (MAILER-DAEMON = null sender)
        "top_recipients": [{"name": str, "count": int}, ...],
        "top_sasl_logins": [{"name": str, "count": int}, ...],  from the Postfix log
        "ranking_error": int               top sender/recipient counts may be low by up to this (0: exact;
                                           bounded summaries, see bot.mail.ranking.TopCounter)
      },
      "suspect": null | {
        "address": str, "login": str,
        "queued_from": int,                envelope sender is the address
        "queued_to": int,                  the address is a recipient (bounces)
        "queued_by_login": int,            authenticated as the login
        "queued_total": int | null,        distinct messages from it, to it or by its login: what its cleanup
                                           deletes (the three above overlap); null when not counted (a
                                           foreign address, or a diagnosis stored before this key)
        "sample_subjects": [str, ...],
        "evidence": "sasl_login" | "sender_address"   what named it (see bot.mail.suspects)
      },
      "runner_up": null | {"name": str, "count": int},
      "warnings": [str, ...],              e.g. the Postfix log was not found
      "protected": [str, ...]              accounts mailfix never names, offers or touches there
    }
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.core.mailserver import Account, Diagnosis, QueueSnapshot, Ranked, Suspect
from bot.i18n import _
from storage.models import Incident

SCHEMA = "mailfix.diagnosis/1"


def _ranked(items: Iterable[Ranked]) -> list[dict[str, Any]]:
    return [{"name": r.name, "count": r.count} for r in items]


def to_json(d: Diagnosis) -> dict[str, Any]:
    """Return `d` as a JSON-ready dict following the schema in this module's docstring."""
    s = d.snapshot
    suspect = None
    if d.suspect is not None:
        suspect = {
            "address": d.suspect.account.address,
            "login": d.suspect.account.login,
            "queued_from": d.suspect.queued_from,
            "queued_to": d.suspect.queued_to,
            "queued_by_login": d.suspect.queued_by_login,
            "sample_subjects": list(d.suspect.sample_subjects),
            "evidence": d.suspect.evidence,
            "queued_total": d.suspect.queued_total,
        }
    return {
        "schema": SCHEMA,
        "queue": {
            "total": s.total,
            "by_queue": dict(s.by_queue),
            "oldest_age_seconds": s.oldest_age_seconds,
            "total_bytes": s.total_bytes,
            "malformed_lines": s.malformed_lines,
            "top_senders": _ranked(s.top_senders),
            "top_recipients": _ranked(s.top_recipients),
            "top_sasl_logins": _ranked(s.top_sasl_logins),
            "ranking_error": s.ranking_error,
        },
        "suspect": suspect,
        "runner_up": None if d.runner_up is None else {"name": d.runner_up.name, "count": d.runner_up.count},
        "warnings": list(d.warnings),
        "protected": list(d.protected),
    }


def from_json(data: Mapping[str, Any]) -> Diagnosis:
    """Return the Diagnosis that `to_json` wrote."""
    queue, suspect, runner_up = data["queue"], data.get("suspect"), data.get("runner_up")
    snapshot = QueueSnapshot(
        total=int(queue["total"]),
        by_queue={str(k): int(v) for k, v in queue.get("by_queue", {}).items()},
        top_senders=_ranking(queue.get("top_senders", ())),
        top_recipients=_ranking(queue.get("top_recipients", ())),
        top_sasl_logins=_ranking(queue.get("top_sasl_logins", ())),
        oldest_age_seconds=int(queue.get("oldest_age_seconds", 0)),
        total_bytes=int(queue.get("total_bytes", 0)),
        malformed_lines=int(queue.get("malformed_lines", 0)),
        ranking_error=int(queue.get("ranking_error", 0)),
    )
    return Diagnosis(
        snapshot=snapshot,
        suspect=None
        if suspect is None
        else Suspect(
            account=Account(suspect["address"], suspect["login"]),
            queued_from=int(suspect["queued_from"]),
            queued_to=int(suspect["queued_to"]),
            queued_by_login=int(suspect["queued_by_login"]),
            sample_subjects=tuple(str(s) for s in suspect.get("sample_subjects", ())),
            evidence=str(suspect.get("evidence", "")),
            queued_total=None if suspect.get("queued_total") is None else int(suspect["queued_total"]),
        ),
        runner_up=None if runner_up is None else Ranked(str(runner_up["name"]), int(runner_up["count"])),
        warnings=tuple(str(w) for w in data.get("warnings", ())),
        protected=tuple(str(a) for a in data.get("protected", ())),
    )


def of(incident: Incident) -> Diagnosis | None:
    """Return the incident's latest diagnosis as typed values (None before the first one)."""
    return from_json(incident.diagnosis) if incident.diagnosis else None


def cleanup_total(incident: Incident) -> int | None:
    """Return how many distinct queued messages the cleanup of the incident's suspect deletes, as diagnosed.

    None when unknown: no diagnosis of this account (a person picked it), or one stored before the count."""
    diagnosis = of(incident)
    suspect = diagnosis.suspect if diagnosis else None
    if suspect is None or suspect.account.address != incident.suspect_address:
        return None
    return suspect.queued_total


def deletes(incident: Incident) -> str:
    """Return ", which deletes N queued messages" for the cleanup of the incident's suspect ("" when not counted)."""
    total = cleanup_total(incident)
    return "" if total is None else _(", which deletes {count} queued messages").format(count=f"{total:,}")


def _ranking(items: Iterable[Mapping[str, Any]]) -> tuple[Ranked, ...]:
    return tuple(Ranked(str(item["name"]), int(item["count"])) for item in items)
