"""Progress of a long step (reading the queue, holding, deleting): the hook the mail layer calls as it
goes, what a notifier is shown, and the throttle that paces how often a notifier shows it.

The mail layer knows nothing of who watches: it calls a plain `Hook(done, total)`. A step wraps the
hook in a `Reporter` that labels the numbers and hands them to its notifier; the notifier paces them
with a `Throttle` (Slack every few seconds, a terminal several times a second).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Hook = Callable[[int, int | None], None]
"""Called by a long operation as it goes: (done so far, total or None while unknown)."""


@dataclass(frozen=True)
class Progress:
    """How far a long step is: `label`… done / total."""

    label: str  # what the step is doing, e.g. "deleting"
    done: int
    total: int | None = None

    def text(self) -> str:
        """Return e.g. "deleting… 40,000 / 70,000" (or "reading the queue… 40,000" without a total)."""
        if self.total is None:
            return f"{self.label}… {self.done:,}"
        return f"{self.label}… {self.done:,} / {self.total:,}"

    def fraction(self) -> float | None:
        """Return done/total between 0 and 1, None without a total."""
        if not self.total:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)


class Throttle:
    """Passes progress on to `show` at most once per `interval` seconds, and never a lower count.

    The first value waits one interval too: a step shorter than that shows no progress at all.
    """

    def __init__(
        self, show: Callable[[Progress], None], *, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._show, self.interval, self._clock = show, interval, clock
        self._last = clock()
        self._pending: Progress | None = None
        self.shown: Progress | None = None  # the last value shown, None while nothing was

    def update(self, progress: Progress) -> None:
        """Note `progress`; show it when the interval since the last showing has passed."""
        latest = self._pending or self.shown
        if latest is not None and progress.done < latest.done:
            return  # never backwards (a count that restarts, a late chunk's answer)
        self._pending = progress
        if self._clock() - self._last >= self.interval:
            self._emit()

    def flush(self) -> None:
        """Show the latest value now if it was not shown yet (the step ended: its final count)."""
        if self._pending is not None:
            self._emit()

    def _emit(self) -> None:
        progress, self._pending = self._pending, None
        assert progress is not None
        self._last = self._clock()
        self.shown = progress
        self._show(progress)


class Reporter:
    """The hook a step hands to the mail layer: labels the numbers and shows them through `show`.

    Showing progress is a courtesy: a failure is logged once and progress stops, the step goes on.
    `close` says the step ended (`show(None)`): the notifier clears or replaces what it showed.
    """

    def __init__(self, show: Callable[[Progress | None], None], label: str, *, total: int | None = None) -> None:
        self._show, self.label, self.total = show, label, total
        self._broken = False

    def __call__(self, done: int, total: int | None = None) -> None:
        total = self.total if total is None else total
        # A count past its total means more matched than were counted before: the total grew.
        self._safely(Progress(self.label, done, None if total is None else max(total, done)))

    def close(self) -> None:
        self._safely(None)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _safely(self, progress: Progress | None) -> None:
        if self._broken:
            return
        try:
            self._show(progress)
        except Exception as exc:  # progress must never fail the step that reports it
            self._broken = True
            log.warning("progress of %r is no longer shown: %s", self.label, type(exc).__name__)
