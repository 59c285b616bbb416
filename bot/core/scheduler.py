"""The bot's clocks: background threads that run one job every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.core.runbook import Runbook
from bot.core.upkeep import Upkeep

log = logging.getLogger(__name__)
MAX_INTERVAL = 5.0


class Periodic:
    """Calls `job()` on a daemon thread every `interval` seconds until stopped; one failure never stops it."""

    def __init__(
        self, name: str, job: Callable[[], object], interval: float, on_stop: Callable[[], None] | None = None
    ):
        self.name, self.job, self.interval, self.on_stop = name, job, interval, on_stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mailfix-{name}", daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.on_stop is not None:
            self.on_stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.job()
            except Exception:  # the database restarting, say: the next round tries again
                log.exception("%s failed", self.name)
            self._stop.wait(self.interval)


def start_scheduler(runbook: Runbook) -> Periodic:
    """Start the upkeep of open incidents now (resuming them after a restart) and every few seconds."""
    every = min(runbook.config.check_interval_seconds, MAX_INTERVAL)
    return Periodic("scheduler", Upkeep(runbook).run_due, every).start()
