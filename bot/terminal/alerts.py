"""What `mailfix watch` prints: one line per alert raised or changed (text, or JSON Lines with --json)."""

from __future__ import annotations

import json
from typing import TextIO

from bot.core.notifier import MessageRef
from bot.core.runbook import utcnow
from bot.core.watch import FLOOD, alert_text
from bot.i18n import _
from bot.terminal.jsonout import alert_json
from bot.terminal.text import paint
from storage.models import FloodAlert


class TerminalAlerts:
    """Prints alerts to the terminal (`mailfix watch`)."""

    def __init__(self, out: TextIO, *, as_json: bool = False) -> None:
        self.out = out
        self.as_json = as_json

    def alert_raised(self, alert: FloodAlert) -> MessageRef | None:
        if self.as_json:
            self._json(alert, "raised")
            return None
        hint = ""
        if alert.kind == FLOOD:
            hint = " · " + _("start an incident: `mailfix start {server}`").format(server=alert.server)
        print(f"{alert.opened_at:%H:%M:%S} ", end="", file=self.out)
        paint(self.out, _("ALERT"), "red")
        print(f" {alert_text(alert)}{hint}", file=self.out, flush=True)
        return None

    def alert_changed(self, alert: FloodAlert) -> None:
        if self.as_json:
            self._json(alert, "changed")
            return
        print(f"{alert.closed_at or utcnow():%H:%M:%S} {alert_text(alert)}", file=self.out, flush=True)

    def _json(self, alert: FloodAlert, event: str) -> None:
        print(json.dumps(alert_json(alert, event), default=str), file=self.out, flush=True)
