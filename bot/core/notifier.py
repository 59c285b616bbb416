"""What the runbook tells the outside world; Slack, the terminal and tests each implement it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.core.mailserver import Account, Password
from bot.core.progress import Progress
from storage.models import Incident

STAMP_FORMAT = "%Y-%m-%d %H:%M UTC"  # how a text for a notifier writes a moment; Slack shows it in the reader's zone
STAMP_RE = re.compile(r"\b(\d{4}-\d\d-\d\d \d\d:\d\d) UTC\b")


def stamp(at: datetime) -> str:
    """Return `at` in UTC as texts for notifiers write it (a notifier may re-render what matches STAMP_RE)."""
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).strftime(STAMP_FORMAT)


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

    def step_progress(self, incident: Incident, progress: Progress | None) -> None:
        """Show how far a long step is (paced by the notifier); None: the step ended, clear it."""
        ...

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        """Rewrite the message at `ref` without the password (confirmed, or kept too long)."""
        ...

    def catch_up(self) -> None:
        """Re-deliver what did not reach people yet (a message left behind its incident, replies not posted)."""
        ...
