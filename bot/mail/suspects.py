"""Naming the suspect from a queue's aggregates: the local account with the most queued mail."""

from __future__ import annotations

from bot.core.mailserver import Account, Ranked, validate_account
from bot.errors import InvalidAccount
from bot.mail.queue import QueueAggregator, account_aliases


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
