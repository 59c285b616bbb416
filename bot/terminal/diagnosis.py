"""`mailfix diagnose`: a diagnosis as a plain-text report with aligned tables."""

from __future__ import annotations

from collections.abc import Iterable

from bot.core.mailserver import Diagnosis, Ranked


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
    if s.ranking_error:
        lines += [
            f"(sender and recipient counts above may be low by up to {s.ranking_error}: too many distinct",
            " addresses to count each exactly; the suspect's counts below are exact)",
            "",
        ]
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
