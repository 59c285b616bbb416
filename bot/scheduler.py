"""The bot's clock: the upkeep of open incidents at start-up (resuming them after a restart) and every few seconds."""

from __future__ import annotations

import logging
import threading

from bot.runbook import Runbook
from bot.upkeep import Upkeep

log = logging.getLogger(__name__)
MAX_INTERVAL = 5.0


class Scheduler:
    """Calls `Upkeep(runbook).run_due()` on a daemon thread until stopped."""

    def __init__(self, runbook: Runbook, *, interval: float | None = None) -> None:
        self.runbook = runbook
        self.interval = interval if interval is not None else min(runbook.config.check_interval_seconds, MAX_INTERVAL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mailfix-scheduler", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                Upkeep(self.runbook).run_due()
            except Exception:  # one bad tick (database restarting, say) must not stop the clock
                log.exception("scheduler tick failed")
            self._stop.wait(self.interval)
