"""Sample subjects of the suspect's queued mail: read with postcat, decoded, made safe to show, and
prefetched while the queue listing still streams.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
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
    """Sample subjects fetched while the listing still streams, used if the guess was the suspect."""

    def __init__(self) -> None:
        self.ids: tuple[str, ...] | None = None
        self._future: Future[tuple[str, ...]] | None = None
        self._result: tuple[str, ...] = ()

    def start(self, pool: ThreadPoolExecutor, ids: list[str], fetch: Callable[[list[str]], tuple[str, ...]]) -> None:
        self.ids = tuple(ids)
        if ids:
            self._future = pool.submit(fetch, ids)

    def settle(self) -> None:
        """Wait for the fetch; a failed guess is simply not used."""
        if self._future is not None:
            try:
                self._result = self._future.result()
            except MailfixError:
                self.ids = ()

    def subjects(self, samples: Sequence[list[str]], fetch: Callable[[list[str]], tuple[str, ...]]) -> tuple[str, ...]:
        """Return the prefetched subjects if the guess was one of `samples`, else fetch the first non-empty one.

        The guess is made before the log names the logins, so it is often the address's samples.
        """
        if any(ids and tuple(ids) == self.ids for ids in samples):
            return self._result
        return fetch(next((ids for ids in samples if ids), []))


def leading_samples(aggregator: QueueAggregator) -> list[str]:
    """Return the sample IDs of the login (or else the local sender) with the most messages so far."""
    for counter in (aggregator.logins, aggregator.senders):
        for name, _ in counter.most_common(3):
            ids = aggregator.samples.get(name)
            if ids and len(ids) >= SAMPLE_SUBJECTS:
                return ids[:SAMPLE_SUBJECTS]
    return []
