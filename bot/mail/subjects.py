"""Sample subjects of the suspect's queued mail: read with postcat, decoded, made safe to show, and
prefetched while the queue listing still streams.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from email.header import decode_header, make_header

from bot.errors import MailfixError
from bot.mail.queue import QueueAggregator

SAMPLE_SUBJECTS = 3
_SUBJECT_RE = re.compile(r"^Subject:[ \t]*(.*(?:\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)


def subjects_in(postcat_output: str) -> tuple[str, ...]:
    """Return the decoded Subject of every message in `postcat -h` output."""
    return tuple(decode_subject(found) for found in _SUBJECT_RE.findall(postcat_output))


def decode_subject(raw: str) -> str:
    """Return a header value decoded (RFC 2047), unfolded, without control or bidi characters, cut to 120."""
    try:
        text = str(make_header(decode_header(raw)))
    except (ValueError, LookupError):
        text = raw
    # A subject is the spammer's text: no escape sequence may reach a terminal, no bidi override may
    # reorder what a person reads.
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf"))
    return " ".join(text.split())[:120]


PREFETCH_AFTER = 2000  # messages seen before guessing which account's subjects to fetch


class Prefetch:
    """Sample subjects fetched while the listing still streams, used if the guess was the suspect's mail.

    Two guesses may start it, whichever comes first: the leading account after PREFETCH_AFTER
    messages of the listing, or the leading login once the log is read (a gzip'ed listing arrives
    in a few large pieces, too late to guess from).
    """

    def __init__(self) -> None:
        self.ids: tuple[str, ...] | None = None
        self._future: Future[tuple[str, ...]] | None = None
        self._result: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def start(self, pool: ThreadPoolExecutor, ids: list[str], fetch: Callable[[list[str]], tuple[str, ...]]) -> None:
        """Fetch the subjects of `ids`, unless a guess was made already."""
        with self._lock:
            if self.ids is not None:
                return
            self.ids = tuple(ids)
            if ids:
                try:
                    self._future = pool.submit(fetch, ids)
                except RuntimeError:  # the diagnosis is over: the pool takes no more work
                    self.ids = ()

    def settle(self) -> None:
        """Wait for the fetch; a failed guess is simply not used."""
        with self._lock:
            self.ids = self.ids or ()  # no guess from now on
        if self._future is not None:
            try:
                self._result = self._future.result()
            except MailfixError:
                self.ids = ()

    def subjects(
        self,
        samples: Sequence[list[str]],
        fetch: Callable[[list[str]], tuple[str, ...]],
        *,
        suspect_ids: Collection[str] = (),
    ) -> tuple[str, ...]:
        """Return the prefetched subjects if the guess was the suspect's mail (one of `samples`, or
        messages among `suspect_ids`), else fetch the first non-empty of `samples`."""
        guessed = self.ids or ()
        if any(ids and tuple(ids) == guessed for ids in samples) or (guessed and set(guessed) <= set(suspect_ids)):
            return self._result
        return fetch(next((ids for ids in samples if ids), []))


def newest_of_leading_login(login_of: dict[str, str]) -> list[str]:
    """Return the newest queue IDs the log ties to the login with the most entries (likely still queued)."""
    leader = Counter(login_of.values()).most_common(1)
    if not leader:
        return []
    found = []
    for queue_id, login in reversed(login_of.items()):
        if login == leader[0][0]:
            found.append(queue_id)
            if len(found) == SAMPLE_SUBJECTS:
                break
    return found


def leading_samples(aggregator: QueueAggregator) -> list[str]:
    """Return the sample IDs of the login (or else the local sender) with the most messages so far."""
    for counter in (aggregator.logins, aggregator.local_senders):
        for name, _ in counter.most_common(3):
            ids = aggregator.samples.get(name)
            if ids and len(ids) >= SAMPLE_SUBJECTS:
                return ids[:SAMPLE_SUBJECTS]
    return []
