"""Naming the suspect from a queue's aggregates: whose stolen login floods the queue.

The evidence, strongest first:
1. a SASL login (Postfix's own smtpd record of who authenticated; no sender, header or subject can
   forge it): the login behind the most queued mail, if it reaches the flood threshold;
2. only when no login does: an envelope sender of mail the log ties to no login at all, and only
   if it is a local account of `mail_domain` that exists on the server (a forged foreign or
   made-up sender is nobody's account).
Protected accounts (root, postmaster, the SSH user...) and accounts already rejected are never named.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.core.mailserver import Account, Ranked, validate_account
from bot.errors import InvalidAccount
from bot.mail.queue import QueueAggregator, account_aliases

LOGIN, SENDER = "sasl_login", "sender_address"  # which evidence named the suspect


@dataclass(frozen=True)
class Verdict:
    account: Account | None  # the suspect, None when nothing reaches the threshold
    runner_up: Ranked | None  # the next candidate (the top one when there is no suspect)
    evidence: str = ""  # LOGIN or SENDER


def find_suspect(
    aggregator: QueueAggregator,
    mail_domain: str,
    *,
    flood_threshold: int,
    exclude: frozenset[str] = frozenset(),
    exists: Callable[[str], bool] = lambda login: True,
) -> Verdict:
    """Return the suspect named by the strongest evidence, with the runner-up (see the module docstring)."""
    excluded = {alias for name in exclude for alias in account_aliases(name, mail_domain)}
    suffix = f"@{mail_domain.lower()}"
    logins = _ranking(
        (
            (_account(login if "@" in login else f"{login}{suffix}", login), login, n)
            for login, n in _top(aggregator.logins)
        ),
        excluded,
    )
    senders = _ranking(
        (
            (_account(sender, sender[: -len(suffix)]), sender, n)
            for sender, n in _top(aggregator.unattributed_senders)
            if sender.endswith(suffix)
        ),
        excluded,
    )
    if logins and logins[0][1].count >= flood_threshold:
        runner = logins[1][1] if len(logins) > 1 else (senders[0][1] if senders else None)
        return Verdict(logins[0][0], runner, LOGIN)
    for account, ranked in senders:
        if ranked.count < flood_threshold:
            break
        if exists(account.login):
            others = [r for a, r in logins + senders if a != account]
            return Verdict(account, max(others, key=lambda r: r.count, default=None), SENDER)
    candidates = [r for _, r in logins + senders]
    return Verdict(None, max(candidates, key=lambda r: r.count, default=None))


def _top(counter: dict[str, int]) -> list[tuple[str, int]]:
    return heapq.nsmallest(50, counter.items(), key=lambda item: (-item[1], item[0]))


def _ranking(entries: Iterable[tuple[Account | None, str, int]], excluded: set[str]) -> list[tuple[Account, Ranked]]:
    """Return the valid, not excluded accounts, most mail first, each once."""
    seen: set[str] = set()
    ranking = []
    for account, name, count in entries:
        if (
            account is None
            or account.address in seen
            or not excluded.isdisjoint({account.address, account.login, name})
        ):
            continue
        seen.add(account.address)
        ranking.append((account, Ranked(name, count)))
    return ranking


def _account(address: str, login: str) -> Account | None:
    try:
        validate_account(address)
        return Account(address=address, login=login)
    except InvalidAccount:
        return None
