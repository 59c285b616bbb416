"""The scheduler's own retries of a step that failed for a passing fault: how many were made in a row,
what to announce when a step fails, and when the next one is due. The rules (which faults, which
pauses) are in `bot.core.table`; the decision itself is the AUTO_RETRY transition, which commits at
the incident's version, so two schedulers (replicas) can never both retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.table import AUTO_RETRY_BACKOFF, Event, auto_retry_after
from bot.errors import MailfixError
from bot.i18n import _
from storage.models import AuditEvent

_TRANSITIONS = frozenset(Event)
ATTEMPTS = len(AUTO_RETRY_BACKOFF) + 1  # the first try and the automatic retries


@dataclass(frozen=True)
class Plan:
    """What the scheduler will do about a failed step: retry it as `attempt` (of ATTEMPTS) after `pause`."""

    attempt: int
    pause: timedelta | None  # None: no more automatic retries, a person decides

    def announce(self, now: datetime) -> str:
        """Return what the thread and the incident message say about it, for a failure at `now`."""
        if self.pause is None:
            if self.attempt == 1:
                return ""  # a fault that needs a person: the failure says it all
            return _(
                "gave up retrying automatically after {attempts} attempts: retry it when the server answers"
            ).format(attempts=self.attempt)
        seconds = round(self.pause.total_seconds())
        when = f"{now + self.pause:%H:%M:%S} UTC"
        return _("retrying automatically (attempt {attempt} of {attempts}) in {seconds} s, at {when}").format(
            attempt=self.attempt + 1, attempts=ATTEMPTS, seconds=seconds, when=when
        )

    def details(self) -> dict[str, int]:
        """Return what the failure's audit event records, so any scheduler can tell when the retry is due."""
        return {} if self.pause is None else {"auto_retry_in": round(self.pause.total_seconds())}


def retried(audit: Sequence[AuditEvent]) -> int:
    """Return how many automatic retries were made since a person last acted (or the state was entered)."""
    count = 0
    for event in reversed(audit):
        if event.action == Event.AUTO_RETRY:
            count += 1
        elif event.action != Event.STEP_FAILED and event.action in _TRANSITIONS:
            break
    return count


def plan(failed_state: str, error: MailfixError, audit: Sequence[AuditEvent]) -> Plan:
    """Return what follows the failure of a step of `failed_state` with `error`, given the incident's audit trail."""
    done = retried(audit)
    return Plan(attempt=done + 1, pause=auto_retry_after(failed_state, error, done))


def due_at(audit: Sequence[AuditEvent]) -> datetime | None:
    """Return when the automatic retry of the incident's failed step is due (None: none is planned)."""
    last = next((e for e in reversed(audit) if e.action in _TRANSITIONS), None)
    if last is None or last.action != Event.STEP_FAILED or "auto_retry_in" not in last.details:
        return None
    return last.at + timedelta(seconds=int(last.details["auto_retry_in"]))
