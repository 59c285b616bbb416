"""The runbook's notifier for the terminal: progress lines; never the password (see `mailfix password`)."""

from __future__ import annotations

from typing import TextIO

from bot.core.mailserver import Account, Password
from bot.core.notifier import Delivery, MessageRef
from storage.models import Incident


class TerminalNotifier:
    """Prints progress to the terminal; the password is never printed here (see `mailfix password`)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def incident_changed(self, incident: Incident) -> MessageRef | None:
        print(f"#{incident.id} {incident.server}: {incident.state.replace('_', ' ')}", file=self.out, flush=True)
        return None

    def step_logged(self, incident: Incident, text: str) -> None:
        print(f"#{incident.id}   {text}", file=self.out, flush=True)

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        note = f"tell {account.address} by phone: run `mailfix password {incident.id}` to read the new password once"
        return Delivery(via="terminal", confirmed=False, note=note)

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        print(f"#{incident.id}   the new password is erased from mailfix", file=self.out, flush=True)
