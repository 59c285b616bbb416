"""Streaming parse of `postqueue -j`: aggregates for a snapshot, and exact selection of queue IDs.

`postqueue -j` prints one JSON object per message and line, e.g.
`{"queue_name": "deferred", "queue_id": "4XyZ...", "arrival_time": 1700000000, "message_size": 512,
"sender": "victim@lab.test", "recipients": [{"address": "a@b.example", "delay_reason": "..."}]}`.
Members we do not know are ignored; a line that is not such an object is counted as malformed.
Nothing here keeps the messages. Memory is bounded whatever the senders and recipients: the rankings
of all senders and recipients are bounded summaries (`TopCounter`); exact counts are kept only for
addresses of the mail domain and for SASL logins (the accounts mailfix can act on), and the IDs of
each local sender's, recipient's and login's messages (for an immediate hold, and to count a cleanup's
messages once each).
"""

from __future__ import annotations

import json
import operator
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import itemgetter
from typing import Any

from bot.core.mailserver import NOT_ACCOUNTS, QueueSnapshot
from bot.mail.ranking import TopCounter, ranked

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
IdsByName = dict[str, list[str]]


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
    if not isinstance(sender, str) or sender.lower() in NOT_ACCOUNTS:
        return NULL_SENDER
    return sender.lower()


def null_sender_named(senders: list[str]) -> list[str]:
    """Return `senders` (lower-cased by the caller) with the null sender's spellings as MAILER-DAEMON."""
    if NOT_ACCOUNTS.isdisjoint(senders):
        return senders
    return [NULL_SENDER if sender in NOT_ACCOUNTS else sender for sender in senders]


def recipients_of(message: Message) -> set[str]:
    """Return the distinct recipient addresses of `message`, lower-cased."""
    found = set()
    for recipient in message.get("recipients") or ():
        if isinstance(recipient, dict) and isinstance(recipient.get("address"), str):
            found.add(recipient["address"].lower())
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


@dataclass(frozen=True)
class Batch:
    """A batch of `postqueue -j` lines as columns: one entry per message, in listing order."""

    queue_names: list[str]
    ids: list[str]
    senders: list[str]  # lower-cased, the null sender as MAILER-DAEMON
    recipients: list[str]  # every message's distinct recipients, lower-cased, one after the other
    recipient_ids: list[str]  # the queue ID of the message of each entry of `recipients` (or [], see below)
    total_bytes: int
    oldest_arrival: float | None
    malformed: int
    # The local recipients and their messages' IDs when the parser found them itself; recipient_ids is then
    # empty (only the local recipients' IDs are kept). None: they are found from recipients and recipient_ids.
    local_recipients: tuple[list[str], list[str]] | None = None


def parse_batch(lines: list[bytes]) -> Batch:
    """Return the messages of `lines` as a Batch; blank lines are skipped, malformed ones counted.

    Postfix's usual lines go through a handful of C-level passes (one JSON parse for the batch,
    then map/itemgetter per field); a batch with anything unusual is parsed a message at a time.
    In a flood it reads 100,000 messages while postqueue and sshd want the same CPU.
    """
    return _parse_regular(lines) or _parse_each(lines)


_GET_FIELDS = [
    itemgetter(name) for name in ("queue_name", "queue_id", "sender", "message_size", "arrival_time", "recipients")
]
_GET_ADDRESS = itemgetter("address")


def _parse_regular(lines: list[bytes]) -> Batch | None:
    """Return the Batch when every line is an object with the usual members and types, else None."""
    present = list(filter(None, lines))
    try:
        messages = _loads(b"[" + b",".join(present) + b"]")
        if len(messages) != len(present) or not _all_of(messages, dict):
            return None
        names, ids, senders, sizes, arrivals, recipient_lists = (list(map(get, messages)) for get in _GET_FIELDS)
        recipients = list(chain.from_iterable(recipient_lists))
        if not (
            _all_of(names, str) and _all_of(ids, str) and _all_of(senders, str) and _all_of(sizes, int)
            and _all_of(arrivals, int) and _all_of(recipient_lists, list) and _all_of(recipients, dict)
        ):  # fmt: skip
            return None
        addresses = list(map(_GET_ADDRESS, recipients))
        if not _all_of(addresses, str):
            return None
    except (ValueError, KeyError, TypeError):
        return None
    recipient_ids = ids
    if set(map(len, recipient_lists)) != {1}:  # not one recipient each: count a message once per address
        distinct = [{r["address"].lower() for r in found} for found in recipient_lists]
        addresses = [address for found in distinct for address in found]
        recipient_ids = [queue_id for queue_id, found in zip(ids, distinct, strict=True) for _ in found]
    senders = null_sender_named(list(map(str.lower, senders)))
    return Batch(
        queue_names=names,
        ids=ids,
        senders=senders,
        recipients=list(map(str.lower, addresses)),
        recipient_ids=recipient_ids,
        total_bytes=sum(sizes),
        oldest_arrival=min(arrivals, default=None),
        malformed=0,
    )


def _all_of(values: list[Any], kind: type) -> bool:
    """Return True when every value is exactly of type `kind` (bool is not an int here)."""
    return set(map(type, values)) <= {kind}


def _parse_each(lines: list[bytes]) -> Batch:
    """Return the Batch of `lines` parsed one by one, tolerating anything."""
    messages = []
    malformed = 0
    for line in lines:
        try:
            message = _loads(line)
        except ValueError:
            malformed += bool(line.strip())
            continue
        if type(message) is dict and type(message.get("queue_id")) is str:
            messages.append(message)
        else:
            malformed += 1
    arrivals: list[float] = [a for m in messages if isinstance(a := m.get("arrival_time"), int | float)]
    return Batch(
        queue_names=[str(m.get("queue_name", "unknown")) for m in messages],
        ids=[m["queue_id"] for m in messages],
        senders=[sender_of(m) for m in messages],
        recipients=[address for m in messages for address in recipients_of(m)],
        recipient_ids=[m["queue_id"] for m in messages for _ in recipients_of(m)],
        total_bytes=sum(s for m in messages if type(s := m.get("message_size")) is int),
        oldest_arrival=min(arrivals, default=None),
        malformed=malformed,
    )


class QueueAggregator:
    """Totals, rankings and a few sample IDs of a queue, fed one batch of `postqueue -j` lines at a time."""

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
        self._pending: list[tuple[list[str], list[str], list[str]]] = []  # (queue names, IDs, senders)
        self.mail_suffix = f"@{mail_domain.lower()}" if mail_domain else "@"
        self.now = time.time() if now is None else now
        self.top = top
        self.total = 0
        self.total_bytes = 0
        self.malformed = 0
        self.oldest_arrival: float | None = None
        self.by_queue: Counter[str] = Counter()
        self.senders = TopCounter()  # rankings, bounded
        self.recipients = TopCounter()
        # Exact counts of the local addresses (of the mail domain, or without one): a suspect's own.
        self.local_senders: Counter[str] = Counter()
        self.local_recipients: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()
        # Local senders of the messages the log ties to no login: only these may name a sender as the suspect.
        self.unattributed_senders: Counter[str] = Counter()
        # First queue IDs seen per login and per local sender: postcat reads their subjects later.
        self.samples: dict[str, list[str]] = {}
        # The IDs of each local sender's and each login's messages not on hold: what a hold of the
        # suspect's mail feeds postsuper right after the diagnosis, without listing the queue again.
        self.open_ids_by_sender: dict[str, list[str]] = {}
        self.open_ids_by_login: dict[str, list[str]] = {}
        # The rest of the local mail, by ID, so that the messages a cleanup deletes count once each.
        self.held_ids_by_sender: dict[str, list[str]] = {}
        self.held_ids_by_login: dict[str, list[str]] = {}
        self.ids_by_recipient: dict[str, list[str]] = {}

    def set_logins(self, login_of: Mapping[str, str]) -> None:
        """Provide queue ID -> SASL login, attributing the lines aggregated so far."""
        self.login_of = login_of
        pending, self._pending = self._pending, []
        for names, ids, senders in pending:
            self._attribute(names, ids, senders)

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
        self.add_parsed(parse_batch(lines))

    def add_totals(self, *, total_bytes: int, oldest_arrival: float | None) -> None:
        """Add sizes and an oldest arrival found elsewhere (the server's digest, a parsed batch)."""
        self.total_bytes += total_bytes
        if oldest_arrival is not None:
            old = self.oldest_arrival
            self.oldest_arrival = oldest_arrival if old is None else min(old, oldest_arrival)

    def add_parsed(self, batch: Batch) -> None:
        """Aggregate a parsed batch."""
        self.malformed += batch.malformed
        self.add_totals(total_bytes=batch.total_bytes, oldest_arrival=batch.oldest_arrival)
        if not batch.ids:
            return
        self.total += len(batch.ids)
        # Counter.update on a list counts in C.
        self.by_queue.update(batch.queue_names)
        self.senders.update(batch.senders)
        self.recipients.update(batch.recipients)
        suffix = self.mail_suffix  # inline of is_local: this runs for every message and recipient
        local = [s.endswith(suffix) or "@" not in s for s in batch.senders]
        self.local_senders.update(compress(batch.senders, local))
        if batch.local_recipients is None:
            local_to = [r.endswith(suffix) or "@" not in r for r in batch.recipients]
            local_recipients = list(compress(batch.recipients, local_to))
            local_ids = list(compress(batch.recipient_ids, local_to))
        else:
            local_recipients, local_ids = batch.local_recipients
        self.local_recipients.update(local_recipients)
        for recipient, queue_id in zip(local_recipients, local_ids, strict=True):
            self.ids_by_recipient.setdefault(recipient, []).append(queue_id)
        self._sample(batch.senders, batch.ids, suffix=self.mail_suffix)
        _collect(
            (self.open_ids_by_sender, self.held_ids_by_sender),
            batch.queue_names,
            batch.ids,
            [s if x else None for s, x in zip(batch.senders, local, strict=True)],
        )
        if self.login_of is None:
            self._pending.append((batch.queue_names, batch.ids, batch.senders))
        else:
            self._attribute(batch.queue_names, batch.ids, batch.senders)

    def is_local(self, address: str) -> bool:
        return address.endswith(self.mail_suffix) or "@" not in address

    def _attribute(self, names: list[str], ids: list[str], senders: list[str]) -> None:
        if not self.login_of:
            self.unattributed_senders.update(filter(self.is_local, senders))
            return
        logins = list(map(self.login_of.get, ids))
        self.logins.update(filter(None, logins))
        unattributed = compress(senders, map(operator.not_, logins))
        self.unattributed_senders.update(filter(self.is_local, unattributed))
        self._sample(logins, ids)
        _collect((self.open_ids_by_login, self.held_ids_by_login), names, ids, logins)

    def sent_from(self, names: Iterable[str]) -> int:
        """Return how many messages the local addresses `names` sent, exactly (summary counts for others)."""
        return sum(self.local_senders.get(n, 0) if self.is_local(n) else self.senders.get(n) for n in names)

    def sent_to(self, names: Iterable[str]) -> int:
        """Return how many messages went to the local addresses `names`, exactly (summary counts for others)."""
        return sum(self.local_recipients.get(n, 0) if self.is_local(n) else self.recipients.get(n) for n in names)

    def open_ids(self, *, senders: Iterable[str] = (), logins: Iterable[str] = ()) -> list[str]:
        """Return the IDs of the listed messages not on hold sent from `senders` or as `logins`, each once."""
        found = [
            *(self.open_ids_by_sender.get(n, ()) for n in senders),
            *(self.open_ids_by_login.get(n, ()) for n in logins),
        ]
        return list(dict.fromkeys(chain.from_iterable(found)))

    def _sample(self, names: Sequence[str | None], ids: list[str], *, suffix: str = "") -> None:
        """Keep the first queue IDs of each name (ending with `suffix`) that has fewer than it needs."""
        samples = self.samples
        wanted = {
            name
            for name in set(names)
            if name is not None and name.endswith(suffix) and len(samples.get(name, ())) < SAMPLES_PER_NAME
        }
        if not wanted:  # in a flood, after the first batch: the busy names have their samples
            return
        for name, queue_id in zip(names, ids, strict=True):
            if name in wanted:
                found = samples.setdefault(name, [])  # type: ignore[arg-type]
                if len(found) < SAMPLES_PER_NAME:
                    found.append(queue_id)

    def snapshot(self) -> QueueSnapshot:
        """Return the aggregates as a QueueSnapshot."""
        by_queue = {name: self.by_queue.get(name, 0) for name in QUEUE_NAMES}
        by_queue.update(self.by_queue)
        oldest = 0 if self.oldest_arrival is None else max(0, int(self.now - self.oldest_arrival))
        return QueueSnapshot(
            total=self.total,
            by_queue=by_queue,
            top_senders=ranked(self.senders.counts, self.top),
            top_recipients=ranked(self.recipients.counts, self.top),
            ranking_error=max(self.senders.error, self.recipients.error),
            top_sasl_logins=ranked(self.logins, self.top),
            oldest_age_seconds=oldest,
            total_bytes=self.total_bytes,
            malformed_lines=self.malformed,
        )


def _collect(
    into: tuple[IdsByName, IdsByName], queue_names: list[str], ids: list[str], names: Sequence[str | None]
) -> None:
    """Append each ID to the list of its name (None: none) in the first dict, or in the second when on hold."""
    open_ids, held_ids = into
    for queue_name, queue_id, name in zip(queue_names, ids, names, strict=True):
        if name is not None:
            into_ids = held_ids if queue_name == "hold" else open_ids
            if name in into_ids:  # not setdefault: no empty list made for each of a flood's messages
                into_ids[name].append(queue_id)
            else:
                into_ids[name] = [queue_id]
