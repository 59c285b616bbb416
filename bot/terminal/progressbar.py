"""A progress bar on the terminal's stderr for the long steps (reading the queue, holding, deleting).

Drawn only when stderr is a terminal: a pipe or a log file gets nothing (no carriage returns in it).
It uses no colour, so NO_COLOR needs nothing here.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from bot.core.progress import Progress, Throttle
from bot.terminal.text import printable

BAR_SECONDS = 0.2  # a terminal can redraw often; fast enough to look alive
BAR_WIDTH = 24
_ERASE_TO_END = "\x1b[K"


class ProgressBar:
    """Draws one step's progress in place on `stream`; the final count stays on its own line."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self._clock = stream, clock
        self._throttle: Throttle | None = None

    @classmethod
    def on_stderr(cls) -> ProgressBar | None:
        """Return a bar on stderr when it is a terminal, else None."""
        return cls(sys.stderr) if sys.stderr.isatty() else None

    def show(self, progress: Progress | None) -> None:
        """Draw `progress` (at most every BAR_SECONDS); None: the step ended, draw its final count and end the line."""
        if progress is None:
            throttle, self._throttle = self._throttle, None
            if throttle is not None and throttle.shown is not None:
                throttle.flush()
                self._write("\n")
            return
        if self._throttle is None:
            self._throttle = Throttle(self._draw, interval=BAR_SECONDS, clock=self._clock)
        self._throttle.update(progress)

    def _draw(self, progress: Progress) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        self._write(f"\r{render(progress, width=columns - 1)}{_ERASE_TO_END}")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def render(progress: Progress, *, width: int = 79) -> str:
    """Return one line, at most `width` characters: e.g. "deleting… [######------] 40,000 / 70,000"."""
    fraction = progress.fraction()
    counts = progress.text().removeprefix(f"{progress.label}… ")
    bar = ""
    if fraction is not None:
        filled = round(fraction * BAR_WIDTH)
        bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "] "
    line = f"{printable(progress.label)}… {bar}{counts}"
    return line[-width:] if len(line) > width else line
