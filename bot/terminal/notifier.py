"""The runbook's notifier for the terminal: progress lines; never the password (see `mailfix password`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from bot.core.labels import state_label
from bot.core.mailserver import Account, Password
from bot.core.notifier import Delivery, MessageRef
from bot.core.progress import Progress
from bot.i18n import _
from bot.terminal.progressbar import ProgressBar
from bot.terminal.text import plain
from storage.models import Incident


class TerminalNotifier:
    """Prints progress to the terminal; the password is never printed here (see `mailfix password`)."""

    def __init__(self, out: TextIO, names: Mapping[str, str] | None = None, bar: ProgressBar | None = None) -> None:
        self.out = out
        self.names = names or {}  # Slack ID -> local login, to show people by name
        self.bar = bar  # where long steps draw their progress (stderr on a terminal), None: nowhere

    def incident_changed(self, incident: Incident) -> MessageRef | None:
        print(f"#{incident.id} {incident.server}: {state_label(incident.state)}", file=self.out, flush=True)
        return None

    def step_logged(self, incident: Incident, text: str) -> None:
        print(f"#{incident.id}   {plain(text, self.names)}", file=self.out, flush=True)

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        note = _("tell {address} by phone: run `mailfix password {id}` to read the new password once").format(
            address=account.address, id=incident.id
        )
        return Delivery(via="terminal", confirmed=False, note=note)

    def step_progress(self, incident: Incident, progress: Progress | None) -> None:
        if self.bar is not None:
            self.bar.show(progress)

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        erased = _("the new password is erased from mailfix")
        print(f"#{incident.id}   {erased}", file=self.out, flush=True)

    def catch_up(self) -> None:
        """Nothing to re-deliver: every line is printed as it happens."""
