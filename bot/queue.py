"""Streaming parse of `postqueue -j`: aggregates for a snapshot, and exact selection of queue IDs.

`postqueue -j` prints one JSON object per message and line, e.g.
`{"queue_name": "deferred", "queue_id": "4XyZ...", "arrival_time": 1700000000, "message_size": 512,
"sender": "victim@lab.test", "recipients": [{"address": "a@b.example", "delay_reason": "..."}]}`.
Members we do not know are ignored; a line that is not such an object is counted as malformed.
Nothing here keeps the messages: memory grows only with the distinct senders, recipients and logins.
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from bot.mailserver import QueueSnapshot, Ranked, Selection

_loads: Callable[[bytes | str], Any]
try:  # orjson parses a queue line several times faster than json
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - the standard library is enough, only slower
    _loads = json.loads

NULL_SENDER = "MAILER-DAEMON"
TOP_N = 10
SAMPLES_PER_NAME = 3
QUEUE_NAMES = ("active", "deferred", "hold", "incoming", "maildrop")
# Postfix prints queue_name and queue_id first; reading them without a full parse lets a
# selection by SASL login skip the JSON of every message that is not the login's.
_HEAD_RE = re.compile(rb'^\{\s*"queue_name"\s*:\s*"([a-z]+)"\s*,\s*"queue_id"\s*:\s*"([0-9A-Za-z]+)"')

Message = dict[str, Any]


def parse_line(line: bytes | str) -> Message | None:
    """Return the message described by one `postqueue -j` line, or None if the line is malformed."""
    try:
        message = _loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if not isinstance(message.get("queue_id"), str) or not isinstance(message.get("recipients", []), list):
        return None
    return message


def sender_of(message: Message) -> str:
    """Return the envelope sender lower-cased, the null sender as MAILER-DAEMON."""
    sender = message.get("sender")
    if not isinstance(sender, str) or not sender or sender == NULL_SENDER:
        return NULL_SENDER
    return sender.lower()


def recipients_of(message: Message) -> set[str]:
    """Return the distinct recipient addresses of `message`, lower-cased."""
    found = set()
    for recipient in message.get("recipients") or ():
        if isinstance(recipient, dict) and isinstance(recipient.get("address"), str):
            found.add(recipient["address"].lower())
    return found


def _recipients_of_all(messages: list[Message]) -> list[str]:
    """Return every message's distinct recipients, lower-cased, in one list (fast path: one recipient)."""
    found: list[str] = []
    for message in messages:
        recipients = message.get("recipients")
        if type(recipients) is list and len(recipients) == 1:
            address = recipients[0].get("address") if type(recipients[0]) is dict else None
            if type(address) is str:
                found.append(address.lower())
        elif recipients:
            found.extend(recipients_of(message))
    return found


def account_aliases(name: str, mail_domain: str) -> frozenset[str]:
    """Return the spellings that denote the same local account: `user` and `user@mail_domain`."""
    name = name.lower()
    domain = mail_domain.lower()
    if name == NULL_SENDER.lower():
        return frozenset({NULL_SENDER})
    if "@" not in name:
        return frozenset({name, f"{name}@{domain}"})
    local, _, at = name.partition("@")
    return frozenset({name, local}) if at == domain else frozenset({name})


class QueueAggregator:
    """Totals, rankings and a few sample IDs of a queue, fed one `postqueue -j` line at a time."""

    def __init__(
        self,
        *,
        login_of: Mapping[str, str] | None = None,
        mail_domain: str = "",
        now: float | None = None,
        top: int = TOP_N,
    ) -> None:
        # login_of may arrive after the listing has started (set_logins): until then only the
        # queue IDs of the lines already parsed wait, not the messages.
        self.login_of = login_of
        self._pending_ids: list[str] = []
        self.mail_suffix = f"@{mail_domain.lower()}" if mail_domain else None
        self.now = time.time() if now is None else now
        self.top = top
        self.total = 0
        self.total_bytes = 0
        self.malformed = 0
        self.oldest_arrival: float | None = None
        self.by_queue: Counter[str] = Counter()
        self.senders: Counter[str] = Counter()
        self.recipients: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()
        # First queue IDs seen per login and per local sender: postcat reads their subjects later.
        self.samples: dict[str, list[str]] = {}

    def set_logins(self, login_of: Mapping[str, str]) -> None:
        """Provide queue ID -> SASL login, attributing the lines aggregated so far."""
        self.login_of = login_of
        pending, self._pending_ids = self._pending_ids, []
        self._attribute(pending)

    def add_lines(self, lines: Iterable[bytes]) -> None:
        """Aggregate every line of `lines`."""
        batch: list[bytes] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= 4096:
                self.add_batch(batch)
                batch = []
        self.add_batch(batch)

    def add_batch(self, lines: list[bytes]) -> None:
        """Aggregate a list of lines; blank lines are skipped, malformed ones counted."""
        # Whole-batch list comprehensions and Counter.update keep the per-message cost low:
        # this loop runs once per queued message, 100,000 times in a flood.
        messages = []
        for line in lines:
            try:
                message = _loads(line)
            except ValueError:
                self.malformed += bool(line.strip())
                continue
            if type(message) is dict and type(message.get("queue_id")) is str:
                messages.append(message)
            else:
                self.malformed += 1
        if not messages:
            return
        self.total += len(messages)
        self.by_queue.update([str(m.get("queue_name", "unknown")) for m in messages])
        self.total_bytes += sum(s for m in messages if type(s := m.get("message_size")) is int)
        arrivals: list[float] = [a for m in messages if isinstance(a := m.get("arrival_time"), int | float)]
        if arrivals:
            oldest = min(arrivals)
            self.oldest_arrival = oldest if self.oldest_arrival is None else min(self.oldest_arrival, oldest)
        senders = [sender_of(m) for m in messages]
        self.senders.update(senders)
        self.recipients.update(_recipients_of_all(messages))
        ids = [m["queue_id"] for m in messages]
        if self.mail_suffix:
            suffix = self.mail_suffix
            for sender, queue_id in zip(senders, ids, strict=True):
                if sender.endswith(suffix):
                    self._sample(sender, queue_id)
        if self.login_of is None:
            self._pending_ids.extend(ids)
        else:
            self._attribute(ids)

    def _attribute(self, ids: list[str]) -> None:
        if not self.login_of:
            return
        get = self.login_of.get
        found = [(queue_id, login) for queue_id in ids if (login := get(queue_id)) is not None]
        self.logins.update([login for _, login in found])
        for queue_id, login in found:
            self._sample(login, queue_id)

    def _sample(self, name: str, queue_id: str) -> None:
        ids = self.samples.get(name)
        if ids is None:
            self.samples[name] = [queue_id]
        elif len(ids) < SAMPLES_PER_NAME:
            ids.append(queue_id)

    def snapshot(self) -> QueueSnapshot:
        """Return the aggregates as a QueueSnapshot."""
        by_queue = {name: self.by_queue.get(name, 0) for name in QUEUE_NAMES}
        by_queue.update(self.by_queue)
        oldest = 0 if self.oldest_arrival is None else max(0, int(self.now - self.oldest_arrival))
        return QueueSnapshot(
            total=self.total,
            by_queue=by_queue,
            top_senders=ranked(self.senders, self.top),
            top_recipients=ranked(self.recipients, self.top),
            top_sasl_logins=ranked(self.logins, self.top),
            oldest_age_seconds=oldest,
            total_bytes=self.total_bytes,
            malformed_lines=self.malformed,
        )


def ranked(counter: Counter[str], n: int) -> tuple[Ranked, ...]:
    """Return the `n` most common names of `counter`, ties broken by name."""
    best = heapq.nsmallest(n, counter.items(), key=lambda item: (-item[1], item[0]))  # O(len log n)
    return tuple(Ranked(name, count) for name, count in best)


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
