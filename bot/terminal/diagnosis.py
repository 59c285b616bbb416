"""`mailfix diagnose`: a diagnosis as a plain-text report with aligned tables."""

from __future__ import annotations

from collections.abc import Iterable

from bot.core.mailserver import Diagnosis, Ranked
from bot.i18n import N_, _

# The ranking tables, by title (translated where shown).
TABLES = (N_("SASL login"), N_("Sender"), N_("Recipient"))


def suspect_line(d: Diagnosis) -> str:
    """Return the report's line naming the suspect ("" when there is none): the line a terminal paints red."""
    if d.suspect is None:
        return ""
    account = d.suspect.account
    return _("Suspect: {address} (login {login})").format(address=account.address, login=account.login)


def render_diagnosis(d: Diagnosis, *, warnings: Iterable[str] = ()) -> str:
    """Return `d` as a plain-text report with aligned tables, for a terminal."""
    s = d.snapshot
    queues = "  ".join(f"{name} {count}" for name, count in s.by_queue.items())
    size, oldest = _size(s.total_bytes), _age(s.oldest_age_seconds)
    if s.malformed_lines:
        details = _("{size}, oldest {age}, {count} unreadable lines").format(
            size=size, age=oldest, count=s.malformed_lines
        )
    else:
        details = _("{size}, oldest {age}").format(size=size, age=oldest)
    lines = [_("Queue: {total} messages ({queues})").format(total=s.total, queues=queues), "       " + details, ""]
    for title, rows in zip(TABLES, (s.top_sasl_logins, s.top_senders, s.top_recipients), strict=True):
        lines += _table(_(title), rows) + [""]
    if s.ranking_error:
        note = _(
            "(sender and recipient counts above may be low by up to {error}: too many distinct\n"
            " addresses to count each exactly; the suspect's counts below are exact)"
        )
        lines += [*note.format(error=s.ranking_error).splitlines(), ""]
    if d.suspect is None:
        lines.append(_("Suspect: none (nothing reaches the flood threshold)"))
    else:
        sus = d.suspect
        lines.append(suspect_line(d))
        counts = _(
            "authenticated as the login: {by_login}\nsent from the address:      {sent_from}\n"
            "sent to the address:        {sent_to}"
        ).format(by_login=sus.queued_by_login, sent_from=sus.queued_from, sent_to=sus.queued_to)
        lines += ["  " + line for line in counts.splitlines()]
        lines += ["  " + _("subject: {subject}").format(subject=subject) for subject in sus.sample_subjects]
    if d.runner_up is not None:
        lines.append(_("Runner-up: {name} ({count})").format(name=d.runner_up.name, count=d.runner_up.count))
    lines += [_("Warning: {warning}").format(warning=w) for w in (*d.warnings, *warnings)]
    return "\n".join(lines)


def _table(title: str, rows: tuple[Ranked, ...]) -> list[str]:
    if not rows:
        return [_("{title}: none").format(title=title)]
    header = _("count")
    width, count_width = max(len(title), *(len(r.name) for r in rows)), max(7, len(header))
    out = [f"{title:<{width}}  {header:>{count_width}}", f"{'-' * width}  {'-' * count_width}"]
    return out + [f"{r.name:<{width}}  {r.count:>{count_width}}" for r in rows]


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
