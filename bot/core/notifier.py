"""What the runbook tells the outside world; Slack, the terminal and tests each implement it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.core.mailserver import Account, Password
from storage.models import Incident


@dataclass(frozen=True)
class MessageRef:
    """Where the incident's message lives (a Slack channel and timestamp)."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Delivery:
    """How the new password reached the user; `confirmed` means it may be erased now."""

    via: str  # "dm", "operator", "terminal"
    confirmed: bool
    note: str = ""
    ref: MessageRef | None = None  # the message holding the password, to withdraw it later
    to: str | None = None  # who received it (the only person who may confirm a DM)


class Notifier(Protocol):
    def incident_changed(self, incident: Incident) -> MessageRef | None:
        """Post or update the incident's message; return its ref when newly posted."""
        ...

    def step_logged(self, incident: Incident, text: str) -> None:
        """Log one step's outcome (a reply in the incident's thread)."""
        ...

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        """Tell the affected user what happened and hand over the new password."""
        ...

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        """Rewrite the message at `ref` without the password (confirmed, or kept too long)."""
        ...
