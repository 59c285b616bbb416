"""Naming the suspect from a queue's aggregates, and showing a Diagnosis as JSON or as a table.

`diagnosis_to_json` returns this stable schema (keys never renamed; new keys may be added):

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
        "top_sasl_logins": [{"name": str, "count": int}, ...]   from the Postfix log
      },
      "suspect": null | {
        "address": str, "login": str,
        "queued_from": int,                envelope sender is the address
        "queued_to": int,                  the address is a recipient (bounces)
        "queued_by_login": int,            authenticated as the login
        "sample_subjects": [str, ...]
      },
      "runner_up": null | {"name": str, "count": int},
      "warnings": [str, ...]               e.g. the Postfix log was not found
    }
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.core.mailserver import Account, Diagnosis, Ranked, validate_account
from bot.errors import InvalidAccount
from bot.mail.queue import QueueAggregator, account_aliases

SCHEMA = "mailfix.diagnosis/1"


def find_suspect(
    aggregator: QueueAggregator,
    mail_domain: str,
    *,
    flood_threshold: int,
    exclude: frozenset[str] = frozenset(),
) -> tuple[Account | None, Ranked | None]:
    """Return the local account with the most queued mail if it reaches the threshold, and the runner-up.

    Candidates are SASL logins (which a spammer cannot forge) and senders in `mail_domain`
    (a forged foreign sender is nobody's account); with no suspect, the runner-up is the top candidate.
    """
    excluded = {alias for name in exclude for alias in account_aliases(name, mail_domain)}
    suffix = f"@{mail_domain.lower()}"
    candidates: list[tuple[int, int, str, Account]] = []
    for login, count in aggregator.logins.items():
        account = _account(login if "@" in login else f"{login}{suffix}", login)
        if account is not None:
            candidates.append((count, 0, login, account))
    for sender, count in aggregator.senders.items():
        if sender.endswith(suffix):
            account = _account(sender, sender[: -len(suffix)])
            if account is not None:
                candidates.append((count, 1, sender, account))
    # Most mail first; on a tie the SASL login comes before a sender.
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    seen: set[str] = set()
    ranking: list[tuple[Account, Ranked]] = []
    for count, _, name, account in candidates:
        if account.address in seen or not excluded.isdisjoint({account.address, account.login, name}):
            continue
        seen.add(account.address)
        ranking.append((account, Ranked(name, count)))
    if ranking and ranking[0][1].count >= flood_threshold:
        return ranking[0][0], ranking[1][1] if len(ranking) > 1 else None
    return None, ranking[0][1] if ranking else None


def _account(address: str, login: str) -> Account | None:
    try:
        validate_account(address)
        return Account(address=address, login=login)
    except InvalidAccount:
        return None


def _ranked(items: Iterable[Ranked]) -> list[dict[str, Any]]:
    return [{"name": r.name, "count": r.count} for r in items]


def diagnosis_to_json(d: Diagnosis) -> dict[str, Any]:
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
        },
        "suspect": suspect,
        "runner_up": None if d.runner_up is None else {"name": d.runner_up.name, "count": d.runner_up.count},
        "warnings": list(d.warnings),
    }


def render_diagnosis(d: Diagnosis, *, warnings: Iterable[str] = ()) -> str:
    """Return `d` as a plain-text report with aligned tables, for a terminal."""
    s = d.snapshot
    queues = "  ".join(f"{name} {count}" for name, count in s.by_queue.items())
    lines = [
        f"Queue: {s.total} messages ({queues})",
        f"       {_size(s.total_bytes)}, oldest {_age(s.oldest_age_seconds)}"
        + (f", {s.malformed_lines} unreadable lines" if s.malformed_lines else ""),
        "",
    ]
    for title, rows in (
        ("SASL login", s.top_sasl_logins),
        ("Sender", s.top_senders),
        ("Recipient", s.top_recipients),
    ):
        lines += _table(title, rows) + [""]
    if d.suspect is None:
        lines.append("Suspect: none (nothing reaches the flood threshold)")
    else:
        sus = d.suspect
        lines += [
            f"Suspect: {sus.account.address} (login {sus.account.login})",
            f"  authenticated as the login: {sus.queued_by_login}",
            f"  sent from the address:      {sus.queued_from}",
            f"  sent to the address:        {sus.queued_to}",
        ]
        lines += [f"  subject: {subject}" for subject in sus.sample_subjects]
    if d.runner_up is not None:
        lines.append(f"Runner-up: {d.runner_up.name} ({d.runner_up.count})")
    lines += [f"Warning: {w}" for w in (*d.warnings, *warnings)]
    return "\n".join(lines)


def _table(title: str, rows: tuple[Ranked, ...]) -> list[str]:
    if not rows:
        return [f"{title}: none"]
    width = max(len(title), *(len(r.name) for r in rows))
    out = [f"{title:<{width}}  {'count':>7}", f"{'-' * width}  {'-' * 7}"]
    return out + [f"{r.name:<{width}}  {r.count:>7}" for r in rows]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n} {unit}"
        n //= 1024
    return f"{n} GB"


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds // 3600}h"
