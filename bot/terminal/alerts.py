"""What `mailfix watch` prints: one line per alert raised or changed."""

from __future__ import annotations

from typing import TextIO

from bot.core.notifier import MessageRef
from bot.core.runbook import utcnow
from bot.core.watch import FLOOD, alert_text
from storage.models import FloodAlert


class TerminalAlerts:
    """Prints alerts to the terminal (`mailfix watch`)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def alert_raised(self, alert: FloodAlert) -> MessageRef | None:
        hint = f" · start an incident: `mailfix start {alert.server}`" if alert.kind == FLOOD else ""
        print(f"{alert.opened_at:%H:%M:%S} ALERT {alert_text(alert)}{hint}", file=self.out, flush=True)
        return None

    def alert_changed(self, alert: FloodAlert) -> None:
        print(f"{alert.closed_at or utcnow():%H:%M:%S} {alert_text(alert)}", file=self.out, flush=True)
