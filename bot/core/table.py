"""The incident's state machine as one declarative table: who may fire which event in which state,
where it leads, what each state runs on entry, the approval it asks for, the event that completes
it, and the monitoring rounds. Buttons, CLI hints, upkeep and the report all read it from here.

    opened ─diagnose→ diagnosing ─suspect_found→ containing (hold, block, kick) ─contained→
    awaiting_approval ─approve→ cleaning_up (password, deletes) → purging_mailbox → notifying_user
    → monitoring ─normal→ resolved;  monitoring ─not_normal→ restarting → monitoring (round 1)
    ─not_normal_after_restart→ awaiting_reboot_approval ─approve_reboot→ rebooting → monitoring
    (round 2) ─not_normal_after_reboot→ failed ("needs a human").
    awaiting_approval ─reject/pick→ releasing ─released→ diagnosing;  monitoring ─contain→ diagnosing.
    Not normal only because another account floods: a restart or reboot would not stop it, so the round
    is watched again (monitoring ─other_flood→ monitoring) and "contain" is offered, in reboot approval too.
    A working state whose step fails goes to failed; retry (a person) or auto_retry (the scheduler, after
    a backoff, for a passing fault only) goes back to it and resumes its steps where they stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from bot.core import steps
from bot.errors import CommandTimeout, DeliveryDelayed, HostUnreachable, InvalidTransition, MailfixError
from storage.models import Incident


class State(StrEnum):
    OPENED = "opened"
    DIAGNOSING = "diagnosing"
    CONTAINING = "containing"  # reversible: hold the suspect's mail, block its login, kick its sessions
    AWAITING_APPROVAL = "awaiting_approval"
    RELEASING = "releasing"
    CLEANING_UP = "cleaning_up"  # irreversible: new password, delete the held and queued mail
    PURGING_MAILBOX = "purging_mailbox"
    NOTIFYING_USER = "notifying_user"
    MONITORING = "monitoring"
    RESTARTING = "restarting"
    AWAITING_REBOOT_APPROVAL = "awaiting_reboot_approval"
    REBOOTING = "rebooting"
    RESOLVED = "resolved"
    ABORTED = "aborted"
    FAILED = "failed"


class Event(StrEnum):
    DIAGNOSE = "diagnose"
    SUSPECT_FOUND = "suspect_found"
    NO_FLOOD = "no_flood"
    CONTAINED = "contained"
    APPROVE = "approve"
    REJECT = "reject"  # "not this account": release, unblock, diagnose again without it
    PICK = "pick"  # "this other account instead"
    CONTAIN = "contain"  # a new flood from another account, seen while monitoring
    RELEASED = "released"
    RENEW = "renew"  # ask again for an approval that expired
    CLEANED = "cleaned"
    PURGED = "purged"
    NOTIFIED = "notified"
    NORMAL = "normal"
    RESOLVE_NOW = "resolve_now"
    NOT_NORMAL = "not_normal"
    NOT_NORMAL_AFTER_RESTART = "not_normal_after_restart"
    NOT_NORMAL_AFTER_REBOOT = "not_normal_after_reboot"
    OTHER_FLOOD = "other_flood"  # not normal only for another account's flood: watch again, never restart for it
    RESTARTED = "restarted"
    APPROVE_REBOOT = "approve_reboot"
    REBOOTED = "rebooted"
    STEP_FAILED = "step_failed"
    RETRY = "retry"
    AUTO_RETRY = "auto_retry"  # the scheduler's own retry of a step that failed for a passing fault
    ABORT = "abort"


class Guard(StrEnum):
    SYSTEM = "system"  # only the bot itself
    OPERATOR = "operator"  # operators and directors
    DIRECTOR = "director"
    APPROVER = "approver"  # a director, and not the opener (nor who named the account) unless allow_self_approval


@dataclass(frozen=True)
class Rule:
    next: State | None  # None: back to the state that failed (retry)
    guard: Guard


@dataclass(frozen=True)
class Stage:
    """What a state does: the steps it runs on entry, the event that completes it, the approval it asks for."""

    steps: tuple[steps.Step, ...] = ()
    completes: Event | Callable[[Incident], Event] | None = None  # None: a waiting state, people decide
    approval: str | None = None  # "cleanup" / "reboot": asked for on entry, expires, can be renewed


@dataclass(frozen=True)
class MonitorRound:
    """One round of monitoring: the events that start it, its length, and the event fired when it ends not normal."""

    entered_by: frozenset[Event]
    minutes_key: str  # the Config attribute with the round's length
    escalates_with: Event


S, E, G = State, Event, Guard

TRANSITIONS: Mapping[tuple[State, Event], Rule] = {
    (S.OPENED, E.DIAGNOSE): Rule(S.DIAGNOSING, G.OPERATOR),
    (S.DIAGNOSING, E.SUSPECT_FOUND): Rule(S.CONTAINING, G.SYSTEM),
    (S.DIAGNOSING, E.NO_FLOOD): Rule(S.MONITORING, G.SYSTEM),
    (S.CONTAINING, E.CONTAINED): Rule(S.AWAITING_APPROVAL, G.SYSTEM),
    (S.AWAITING_APPROVAL, E.APPROVE): Rule(S.CLEANING_UP, G.APPROVER),
    (S.AWAITING_APPROVAL, E.REJECT): Rule(S.RELEASING, G.DIRECTOR),
    (S.AWAITING_APPROVAL, E.PICK): Rule(S.RELEASING, G.DIRECTOR),
    (S.AWAITING_APPROVAL, E.RENEW): Rule(S.AWAITING_APPROVAL, G.OPERATOR),
    (S.RELEASING, E.RELEASED): Rule(S.DIAGNOSING, G.SYSTEM),
    (S.CLEANING_UP, E.CLEANED): Rule(S.PURGING_MAILBOX, G.SYSTEM),
    (S.PURGING_MAILBOX, E.PURGED): Rule(S.NOTIFYING_USER, G.SYSTEM),
    (S.NOTIFYING_USER, E.NOTIFIED): Rule(S.MONITORING, G.SYSTEM),
    (S.MONITORING, E.NORMAL): Rule(S.RESOLVED, G.SYSTEM),
    (S.MONITORING, E.CONTAIN): Rule(S.DIAGNOSING, G.OPERATOR),
    (S.MONITORING, E.RESOLVE_NOW): Rule(S.RESOLVED, G.OPERATOR),
    (S.MONITORING, E.NOT_NORMAL): Rule(S.RESTARTING, G.SYSTEM),
    (S.MONITORING, E.NOT_NORMAL_AFTER_RESTART): Rule(S.AWAITING_REBOOT_APPROVAL, G.SYSTEM),
    (S.MONITORING, E.NOT_NORMAL_AFTER_REBOOT): Rule(S.FAILED, G.SYSTEM),
    (S.MONITORING, E.OTHER_FLOOD): Rule(S.MONITORING, G.SYSTEM),
    (S.RESTARTING, E.RESTARTED): Rule(S.MONITORING, G.SYSTEM),
    (S.AWAITING_REBOOT_APPROVAL, E.APPROVE_REBOOT): Rule(S.REBOOTING, G.APPROVER),
    (S.AWAITING_REBOOT_APPROVAL, E.RENEW): Rule(S.AWAITING_REBOOT_APPROVAL, G.OPERATOR),
    (S.AWAITING_REBOOT_APPROVAL, E.CONTAIN): Rule(S.DIAGNOSING, G.OPERATOR),  # withdraws the reboot request
    (S.REBOOTING, E.REBOOTED): Rule(S.MONITORING, G.SYSTEM),
    (S.FAILED, E.RETRY): Rule(None, G.OPERATOR),
    (S.FAILED, E.AUTO_RETRY): Rule(None, G.SYSTEM),
}


def _diagnosed(incident: Incident) -> Event:
    return Event.SUSPECT_FOUND if incident.suspect_address else Event.NO_FLOOD


CONTAINMENT = (steps.HOLD_FROM, steps.HOLD_LOGIN, steps.BLOCK_LOGIN, steps.KICK_SESSIONS, steps.RECORD_CONTAINMENT)
STAGES: Mapping[State, Stage] = {
    S.DIAGNOSING: Stage((steps.DIAGNOSE,), _diagnosed),
    S.CONTAINING: Stage(CONTAINMENT, E.CONTAINED),
    S.AWAITING_APPROVAL: Stage(approval="cleanup"),
    S.RELEASING: Stage((steps.RELEASE_HELD, steps.UNBLOCK_LOGIN), E.RELEASED),
    S.CLEANING_UP: Stage(
        (steps.CHANGE_PASSWORD, steps.KICK_SESSIONS, steps.DELETE_FROM, steps.DELETE_LOGIN, steps.DELETE_TO)
        + (steps.RECORD_CONTAINMENT, steps.UNBLOCK_LOGIN, steps.FLUSH_QUEUE),
        E.CLEANED,
    ),
    S.PURGING_MAILBOX: Stage((steps.PURGE_INBOX,), E.PURGED),
    S.NOTIFYING_USER: Stage((steps.NOTIFY_USER,), E.NOTIFIED),
    S.RESTARTING: Stage((steps.RESTART_POSTFIX, steps.FLUSH_QUEUE), E.RESTARTED),
    S.AWAITING_REBOOT_APPROVAL: Stage(approval="reboot"),
    S.REBOOTING: Stage((steps.REBOOT,), E.REBOOTED),
}
MONITOR_ROUNDS: tuple[MonitorRound, ...] = (
    MonitorRound(frozenset({E.NO_FLOOD, E.NOTIFIED}), "monitor_minutes", E.NOT_NORMAL),
    MonitorRound(frozenset({E.RESTARTED}), "restart_monitor_minutes", E.NOT_NORMAL_AFTER_RESTART),
    MonitorRound(frozenset({E.REBOOTED}), "restart_monitor_minutes", E.NOT_NORMAL_AFTER_REBOOT),
)
# Retrying these states' failed steps repeats a decision (restart, reboot): only a director may, and
# not the one who opened the incident (four-eyes), as for the first approval.
RETRY_GUARD: Mapping[State, Guard] = {S.RESTARTING: G.APPROVER, S.REBOOTING: G.APPROVER}
# The scheduler retries a step that failed for a passing fault (no answer, a timeout, a link cut in
# mid-command) by itself after each of these pauses in turn, then waits for a person's Retry. A
# refused host key or key, or a command's own error, needs a person at once; so does a failed
# restart or reboot, whose retry repeats a director's decision (RETRY_GUARD).
AUTO_RETRY_BACKOFF = (timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=5))
PASSING_FAULTS = (HostUnreachable, CommandTimeout, DeliveryDelayed)

TERMINAL = frozenset({S.RESOLVED, S.ABORTED})
WORKING = frozenset(s for s, stage in STAGES.items() if stage.completes is not None)
APPROVAL_FOR: Mapping[State, str] = {s: stage.approval for s, stage in STAGES.items() if stage.approval}
TRANSITIONS = {
    **TRANSITIONS,
    **{(s, E.STEP_FAILED): Rule(S.FAILED, G.SYSTEM) for s in STAGES if STAGES[s].steps},
    **{(s, E.ABORT): Rule(S.ABORTED, G.OPERATOR) for s in S if s not in TERMINAL},
}
ESCALATIONS = (*(r.escalates_with for r in MONITOR_ROUNDS), E.APPROVE_REBOOT)  # what the report counts


def next_state(state: str, event: str) -> Rule:
    """Return the rule for `event` in `state`, or raise InvalidTransition."""
    rule = TRANSITIONS.get((State(state), Event(event)))
    if rule is None:
        raise InvalidTransition(event, state)
    return rule


def guard_for(incident: Incident, event: Event, rule: Rule) -> Guard:
    """Return who may fire `event` now: the rule's guard, or the failed state's retry guard."""
    if event == Event.RETRY:
        return RETRY_GUARD.get(State(incident.failed_state or State.FAILED), rule.guard)
    return rule.guard


def completion_event(incident: Incident) -> Event | None:
    """Return the event a working state fires once its steps are done (None for waiting states)."""
    stage = STAGES.get(State(incident.state))
    if stage is None or stage.completes is None:
        return None
    return stage.completes if isinstance(stage.completes, Event) else stage.completes(incident)


def person_events(state: str) -> tuple[Event, ...]:
    """Return the events people may fire in `state`, in table order (the buttons and CLI verbs it offers)."""
    return tuple(e for (s, e), rule in TRANSITIONS.items() if s == state and rule.guard != Guard.SYSTEM)


def auto_retry_after(failed_state: str, error: MailfixError, retried: int) -> timedelta | None:
    """Return the pause before the scheduler retries a step that failed with `error` after `retried`
    automatic retries, or None when a person must decide."""
    if State(failed_state) in RETRY_GUARD or not isinstance(error, PASSING_FAULTS):
        return None
    return AUTO_RETRY_BACKOFF[retried] if retried < len(AUTO_RETRY_BACKOFF) else None


def monitor_round_after(event: Event, current: int) -> int:
    """Return the monitoring round that `event` starts (the current one when it starts none)."""
    return next((i for i, r in enumerate(MONITOR_ROUNDS) if event in r.entered_by), current)
