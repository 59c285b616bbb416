"""Exact selection of queue IDs from a `postqueue -j` listing: which messages an action touches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from bot.core.mailserver import Selection
from bot.mail.queue import (
    _HEAD_RE,
    NULL_SENDER,
    Message,
    QueueAggregator,
    account_aliases,
    parse_line,
    recipients_of,
    sender_of,
)


class SelectionMatcher:
    """Decides exactly (never by substring) whether a queued message belongs to a Selection."""

    def __init__(self, selection: Selection, *, mail_domain: str, login_of: Mapping[str, str]) -> None:
        self.senders = account_aliases(selection.sender, mail_domain) if selection.sender else None
        self.recipients = account_aliases(selection.recipient, mail_domain) if selection.recipient else None
        self.login_ids: frozenset[str] | None = None
        if selection.sasl_login:
            logins = account_aliases(selection.sasl_login, mail_domain)
            self.login_ids = frozenset(qid for qid, login in login_of.items() if login.lower() in logins)
        # Bytes each candidate line must contain (case-folded), so most lines skip the JSON parse.
        # The null sender is "" in the JSON, so it cannot be pre-filtered by name.
        needles = [*(self.senders or ()), *(self.recipients or ())]
        usable = needles and NULL_SENDER not in needles
        self._needles = tuple(f'"{n}"'.encode() for n in needles) if usable else ()

    def matches(self, message: Message) -> bool:
        """Return True when every field of the selection matches `message`."""
        if self.login_ids is not None and message["queue_id"] not in self.login_ids:
            return False
        if self.senders is not None and sender_of(message) not in self.senders:
            return False
        return self.recipients is None or not self.recipients.isdisjoint(recipients_of(message))

    def select_line(self, line: bytes) -> tuple[str, str] | None:
        """Return (queue_name, queue_id) when the `postqueue -j` line matches, else None."""
        head = _HEAD_RE.match(line)
        if head is not None and self.login_ids is not None and head[2].decode() not in self.login_ids:
            return None
        if self._needles:
            folded = line.lower()
            if not any(needle in folded for needle in self._needles):
                return None
        message = parse_line(line)
        if message is None or not self.matches(message):
            return None
        return str(message.get("queue_name", "")), message["queue_id"]


def select_ids(
    lines: Iterable[bytes],
    matcher: SelectionMatcher,
    *,
    queues: frozenset[str] | None = None,
    skip_queues: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """Yield the queue IDs of the matching messages in `queues` (default all) minus `skip_queues`."""
    for line in lines:
        found = matcher.select_line(line)
        if found is None:
            continue
        queue_name, queue_id = found
        if (queues is None or queue_name in queues) and queue_name not in skip_queues:
            yield queue_id


def cleanup_total(aggregator: QueueAggregator, *, address: str, login: str, mail_domain: str) -> int | None:
    """Return how many distinct listed messages are from `address`, to it or sent as `login`: what the cleanup's
    three deletions (Selection sender, recipient, sasl_login) delete together, each message once.

    None when `address` is not of the mail domain: the aggregator keeps the IDs of local mail only.
    """
    if not aggregator.is_local(address.lower()):
        return None
    found: set[str] = set()
    for ids_by_name, name in (
        (aggregator.open_ids_by_sender, address),
        (aggregator.held_ids_by_sender, address),
        (aggregator.ids_by_recipient, address),
        (aggregator.open_ids_by_login, login),
        (aggregator.held_ids_by_login, login),
    ):
        for alias in account_aliases(name, mail_domain):
            found.update(ids_by_name.get(alias, ()))
    return len(found)
