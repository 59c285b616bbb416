"""The per-incident state machine: one table of (state, event) → (next state, guard), and the steps
each working state runs on entry.

Every transition is committed with its audit event in one transaction guarded by the incident's
version, so when two workers (or replicas) fire the same event exactly one wins. The core knows
nothing of Slack or SSH: it gets a mail-server factory and a notifier.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.config import Config
from bot.core import steps
from bot.core.mailserver import MailServer, validate_account
from bot.core.notifier import MessageRef, Notifier
from bot.core.vault import Vault
from bot.errors import (
    AlreadyDone,
    ApprovalExpired,
    IncidentNotFound,
    InvalidTransition,
    MailfixError,
    NotAuthorized,
    ServerBusy,
)
from storage.models import Approval, Incident
from storage.repository import DuplicateOpen, DuplicateStep, NewApproval, Repository, StaleVersion

log = logging.getLogger(__name__)
SYSTEM = steps.SYSTEM_ACTOR  # the actor of events the bot fires itself
# A running step's worker renews its lease every LEASE/3; another worker (process, replica) treats a
# started step as crashed, and re-checks it, only once the lease has run out.
LEASE = timedelta(seconds=15)


class State(StrEnum):
    OPENED = "opened"
    DIAGNOSING = "diagnosing"
    AWAITING_APPROVAL = "awaiting_approval"
    RELEASING = "releasing"
    CONTAINING = "containing"
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
    RESTARTED = "restarted"
    APPROVE_REBOOT = "approve_reboot"
    REBOOTED = "rebooted"
    STEP_FAILED = "step_failed"
    RETRY = "retry"
    ABORT = "abort"


class Guard(StrEnum):
    SYSTEM = "system"  # only the bot itself
    OPERATOR = "operator"  # operators and directors
    DIRECTOR = "director"
    APPROVER = "approver"  # a director, and not the opener unless allow_self_approval


@dataclass(frozen=True)
class Rule:
    next: State | None  # None: back to the state that failed (retry)
    guard: Guard


S, E, G = State, Event, Guard
TERMINAL = frozenset({S.RESOLVED, S.ABORTED})
WORKING = frozenset({S.DIAGNOSING, S.RELEASING, S.CONTAINING, S.PURGING_MAILBOX, S.NOTIFYING_USER})
WORKING |= {S.RESTARTING, S.REBOOTING}

TRANSITIONS: Mapping[tuple[State, Event], Rule] = {
    (S.OPENED, E.DIAGNOSE): Rule(S.DIAGNOSING, G.OPERATOR),
    (S.DIAGNOSING, E.SUSPECT_FOUND): Rule(S.AWAITING_APPROVAL, G.SYSTEM),
    (S.DIAGNOSING, E.NO_FLOOD): Rule(S.MONITORING, G.SYSTEM),
    (S.AWAITING_APPROVAL, E.APPROVE): Rule(S.CONTAINING, G.APPROVER),
    (S.AWAITING_APPROVAL, E.REJECT): Rule(S.RELEASING, G.DIRECTOR),
    (S.AWAITING_APPROVAL, E.PICK): Rule(S.RELEASING, G.DIRECTOR),
    (S.AWAITING_APPROVAL, E.RENEW): Rule(S.AWAITING_APPROVAL, G.OPERATOR),
    (S.RELEASING, E.RELEASED): Rule(S.DIAGNOSING, G.SYSTEM),
    (S.CONTAINING, E.CLEANED): Rule(S.PURGING_MAILBOX, G.SYSTEM),
    (S.PURGING_MAILBOX, E.PURGED): Rule(S.NOTIFYING_USER, G.SYSTEM),
    (S.NOTIFYING_USER, E.NOTIFIED): Rule(S.MONITORING, G.SYSTEM),
    (S.MONITORING, E.NORMAL): Rule(S.RESOLVED, G.SYSTEM),
    (S.MONITORING, E.RESOLVE_NOW): Rule(S.RESOLVED, G.OPERATOR),
    (S.MONITORING, E.CONTAIN): Rule(S.DIAGNOSING, G.OPERATOR),
    (S.MONITORING, E.NOT_NORMAL): Rule(S.RESTARTING, G.SYSTEM),
    (S.MONITORING, E.NOT_NORMAL_AFTER_RESTART): Rule(S.AWAITING_REBOOT_APPROVAL, G.SYSTEM),
    (S.MONITORING, E.NOT_NORMAL_AFTER_REBOOT): Rule(S.FAILED, G.SYSTEM),
    (S.RESTARTING, E.RESTARTED): Rule(S.MONITORING, G.SYSTEM),
    (S.AWAITING_REBOOT_APPROVAL, E.APPROVE_REBOOT): Rule(S.REBOOTING, G.APPROVER),
    (S.AWAITING_REBOOT_APPROVAL, E.RENEW): Rule(S.AWAITING_REBOOT_APPROVAL, G.OPERATOR),
    (S.REBOOTING, E.REBOOTED): Rule(S.MONITORING, G.SYSTEM),
    (S.FAILED, E.RETRY): Rule(None, G.OPERATOR),
    **{(s, E.STEP_FAILED): Rule(S.FAILED, G.SYSTEM) for s in WORKING | {S.AWAITING_APPROVAL}},
    **{(s, E.ABORT): Rule(S.ABORTED, G.OPERATOR) for s in S if s not in TERMINAL},
}

# What a state runs on entry, in order; a working state then fires its completion event.
ENTRY_STEPS: Mapping[State, tuple[steps.Step, ...]] = {
    S.DIAGNOSING: (steps.DIAGNOSE,),
    S.AWAITING_APPROVAL: (steps.HOLD_FROM, steps.HOLD_LOGIN, steps.BLOCK_LOGIN, steps.KICK_SESSIONS)
    + (steps.RECORD_CONTAINMENT,),
    S.RELEASING: (steps.RELEASE_HELD, steps.UNBLOCK_LOGIN),
    S.CONTAINING: (steps.CHANGE_PASSWORD, steps.KICK_SESSIONS, steps.DELETE_FROM, steps.DELETE_LOGIN)
    + (steps.DELETE_TO, steps.RECORD_CONTAINMENT, steps.UNBLOCK_LOGIN, steps.FLUSH_QUEUE),
    S.PURGING_MAILBOX: (steps.PURGE_INBOX,),
    S.NOTIFYING_USER: (steps.NOTIFY_USER,),
    S.RESTARTING: (steps.RESTART_POSTFIX, steps.FLUSH_QUEUE),
    S.REBOOTING: (steps.REBOOT,),
}
COMPLETION: Mapping[State, Event] = {
    S.RELEASING: E.RELEASED,
    S.CONTAINING: E.CLEANED,
    S.PURGING_MAILBOX: E.PURGED,
    S.NOTIFYING_USER: E.NOTIFIED,
    S.RESTARTING: E.RESTARTED,
    S.REBOOTING: E.REBOOTED,
}
APPROVAL_FOR: Mapping[State, str] = {S.AWAITING_APPROVAL: "cleanup", S.AWAITING_REBOOT_APPROVAL: "reboot"}
PAST_TENSE: Mapping[Event, str] = {
    E.APPROVE: "approved",
    E.REJECT: "rejected",
    E.PICK: "redirected to another account",
    E.APPROVE_REBOOT: "approved (reboot)",
    E.ABORT: "aborted",
    E.RETRY: "retried",
    E.DIAGNOSE: "started",
    E.RESOLVE_NOW: "resolved",
    E.RENEW: "renewed",
    E.CONTAIN: "contained",
}


def completion_event(incident: Incident) -> Event | None:
    """Return the event a working state fires once its steps are done (None for waiting states)."""
    if incident.state == State.DIAGNOSING:  # the diagnosis saved its suspect, or none
        return Event.SUSPECT_FOUND if incident.suspect_address else Event.NO_FLOOD
    return COMPLETION.get(State(incident.state))


def next_state(state: str, event: str) -> Rule:
    """Return the rule for `event` in `state`, or raise InvalidTransition."""
    rule = TRANSITIONS.get((State(state), Event(event)))
    if rule is None:
        raise InvalidTransition(event, state)
    return rule


def utcnow() -> datetime:
    return datetime.now(UTC)


class Runbook:
    """Drives incidents: opens them, fires events, runs entry steps, monitors, resumes after a crash."""

    def __init__(
        self,
        *,
        config: Config,
        repository: Repository,
        servers: Callable[[str], MailServer],
        notifier: Notifier,
        vault: Vault,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.repo = repository
        self._server_factory = servers
        self._servers: dict[str, MailServer] = {}
        self._server_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._active: dict[int, int] = {}  # incidents this process is working on right now (re-entrant)
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.notifier = notifier
        self.vault = vault
        self.now = clock

    # -- what people do -------------------------------------------------------------------

    def start(self, *, server: str | None, actor: str) -> Incident:
        """Open an incident on `server` and diagnose it (containing the flood at once when configured)."""
        self._authorize(actor, Guard.OPERATOR, None, Event.DIAGNOSE)
        name = self.config.server(server).name
        try:
            incident = self.repo.open_incident(server=name, opened_by=actor, state=State.OPENED, now=self.now())
        except DuplicateOpen:
            existing = self.repo.open_on(server=name)
            raise ServerBusy(name, existing.id if existing else None) from None
        self.tell(incident)
        return self.fire(incident.id, Event.DIAGNOSE, actor=actor)

    def approve(self, incident_id: int, *, actor: str) -> Incident:
        """A director approves the pending cleanup or reboot."""
        incident = self.get(incident_id)
        event = Event.APPROVE_REBOOT if incident.state == State.AWAITING_REBOOT_APPROVAL else Event.APPROVE
        return self.fire(incident_id, event, actor=actor)

    def reject(self, incident_id: int, *, actor: str, pick: str | None = None) -> Incident:
        """A director says "not this account" (optionally naming the right one)."""
        if pick is not None:
            return self.fire(incident_id, Event.PICK, actor=actor, pick=validate_account(pick))
        return self.fire(incident_id, Event.REJECT, actor=actor)

    def contain(self, incident_id: int, *, actor: str, account: str) -> Incident:
        """Contain another account whose flood showed up while monitoring (hold and block; cleanup needs approval)."""
        return self.fire(incident_id, Event.CONTAIN, actor=actor, pick=validate_account(account))

    def abort(self, incident_id: int, *, actor: str) -> Incident:
        return self.fire(incident_id, Event.ABORT, actor=actor)

    def retry(self, incident_id: int, *, actor: str) -> Incident:
        return self.fire(incident_id, Event.RETRY, actor=actor)

    def confirm_password(self, incident_id: int, *, actor: str, account: str | None = None) -> bool:
        """The user has the new password: erase it and withdraw the message; False if already done.

        `account` (from the button) makes sure a late click never erases another account's password.
        """
        incident = self.get(incident_id)
        if account is not None and account != incident.password_for:
            return False
        return self.withdraw_password(incident, actor, "password_confirmed")

    def withdraw_password(self, incident: Incident, actor: str, action: str) -> bool:
        if not self.repo.erase_password(incident_id=incident.id):
            return False
        self.repo.audit(incident_id=incident.id, actor=actor, action=action, now=self.now())
        try:
            self.notifier.withdraw_password(incident, _password_message(incident))
        except Exception:
            log.exception("could not withdraw the password message of incident #%s", incident.id)
        return True

    def resolve_now(self, incident_id: int, *, actor: str) -> Incident:
        """Close a monitored incident early, if its last check was normal."""
        incident = self.get(incident_id)
        if incident.state == State.MONITORING and not (incident.checks and incident.checks[-1].normal):
            raise InvalidTransition("resolve now", "the last check was not normal")
        return self.fire(incident_id, Event.RESOLVE_NOW, actor=actor)

    @contextmanager
    def working(self, incident_id: int) -> Iterator[None]:
        with self._lock:
            self._active[incident_id] = self._active.get(incident_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._active[incident_id] -= 1
                if not self._active[incident_id]:
                    del self._active[incident_id]

    def is_active(self, incident_id: int) -> bool:
        """True while this process works on the incident (run_steps or a check)."""
        return incident_id in self._active

    def get(self, incident_id: int) -> Incident:
        incident = self.repo.get(incident_id=incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    # -- the engine -----------------------------------------------------------------------

    def fire(self, incident_id: int, event: Event, *, actor: str, run: bool = True, **data: Any) -> Incident:
        """Apply `event` (checking the table, the guard and the version), then run the new state's steps."""
        incident = self.get(incident_id)
        try:
            rule = next_state(incident.state, event)
        except InvalidTransition:
            raise self._already_done(incident, event) or InvalidTransition(event, incident.state) from None
        self._authorize(actor, rule.guard, incident, event)
        target = rule.next or State(incident.failed_state or State.FAILED)
        changes, decide, request = self._effects(incident, event, target, actor, data)
        try:
            incident = self.repo.transition(
                incident_id=incident.id,
                expected_version=incident.version,
                actor=actor,
                event=event,
                now=self.now(),
                changes=changes,
                details={"from": incident.state, "to": target, **_public(data)},
                decide=decide,
                request=request,
            )
        except StaleVersion as stale:
            # Prefer "approved by the director who won" over whoever changed the incident last.
            done = self._already_done(self.get(incident_id), event)
            last = stale.last
            raise done or AlreadyDone(
                PAST_TENSE.get(event, f"{event} done"), last.actor if last else None, last.at if last else None
            ) from None
        self.tell(incident)
        return self.run_steps(incident.id) if run else incident

    def run_steps(self, incident_id: int) -> Incident:
        """Run the current state's pending entry steps, then fire its completion event; repeat."""
        with self.working(incident_id):
            return self._run_steps(incident_id)

    def _run_steps(self, incident_id: int) -> Incident:
        incident = self.get(incident_id)
        while State(incident.state) in ENTRY_STEPS:
            state = State(incident.state)
            if not self._run_entry(incident):
                return self.get(incident_id)  # a step failed, or another worker owns it
            incident = self.get(incident_id)
            if incident.state != state:
                return incident  # aborted (or changed) while the steps ran
            completion = completion_event(incident)
            if completion is None:
                break  # a waiting state: its entry steps ran, now people decide
            try:
                incident = self.fire(incident.id, completion, actor=SYSTEM, run=False)
            except (AlreadyDone, InvalidTransition):
                return self.get(incident_id)
        return incident

    def _run_entry(self, incident: Incident) -> bool:
        """Run the entry steps not yet done in this phase; return True when all of them are done."""
        state = State(incident.state)
        server = self.server(incident.server)
        with self.server_lock(incident.server):
            for step in ENTRY_STEPS[state]:
                incident = self.get(incident.id)
                if incident.state != state:
                    return False
                ctx = self._context(incident, server)
                runs = [r for r in incident.steps if r.phase == incident.phase and r.step == step.name]
                if any(r.status in ("done", "skipped") for r in runs):
                    continue
                if not step.when(ctx):
                    self._record_skipped(incident, step)
                    continue
                started = [r for r in runs if r.status == "started"]
                if started and started[-1].lease_until is not None and started[-1].lease_until > self.now():
                    return False  # another worker is running it right now
                if started and step.verify is not None and self._verified(ctx, step):
                    self.repo.finish_step(
                        step_id=started[-1].id,
                        status="done",
                        now=self.now(),
                        summary={"verified": "already applied; not run again"},
                    )
                    continue
                if self._attempt(ctx, step, attempt=len(runs) + 1) is None:
                    return False
        return True

    def _attempt(self, ctx: steps.StepContext, step: steps.Step, *, attempt: int) -> steps.StepOutcome | None:
        incident = ctx.incident
        try:
            run = self.repo.start_step(
                incident_id=incident.id,
                phase=incident.phase,
                step=step.name,
                attempt=attempt,
                actor=SYSTEM,
                now=self.now(),
                owner=self.owner,
                lease_until=self.now() + LEASE,
            )
        except DuplicateStep:
            return None
        began = self.now()
        try:
            with self._heartbeat(run.id):
                outcome = step.run(ctx)
        except MailfixError as exc:
            self.repo.finish_step(step_id=run.id, status="failed", summary={"error": str(exc)}, now=self.now())
            reason = f"{step.name}: {exc}"
            if step is steps.REBOOT:
                reason = (
                    f"needs a human: {incident.server} did not come back after the reboot ({exc}); "
                    "tried: Postfix restart, reboot"
                )
                self.log_step(incident, f":sos: {self.directors_mention()} {reason}")
            else:
                self.log_step(incident, f":x: {step.name} failed: {exc}")
            self._fail(incident.id, reason)
            return None
        seconds = (self.now() - began).total_seconds()
        self.repo.finish_step(
            step_id=run.id,
            status="done",
            now=self.now(),
            summary={**outcome.summary, "seconds": round(seconds, 3)},
        )
        if outcome.text:
            self.log_step(incident, f"{outcome.text} ({seconds:.1f}s)")
        return outcome

    @contextmanager
    def _heartbeat(self, step_id: int) -> Iterator[None]:
        """Renew the step's lease while it runs, so other workers leave it alone."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE.total_seconds() / 3):
                try:
                    self.repo.renew_lease(step_id=step_id, until=self.now() + LEASE)
                except Exception:  # a missed renewal only risks a needless re-check elsewhere
                    log.exception("could not renew the lease of step run %s", step_id)

        thread = threading.Thread(target=renew, name=f"mailfix-lease-{step_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _verified(self, ctx: steps.StepContext, step: steps.Step) -> bool:
        assert step.verify is not None
        try:
            return step.verify(ctx)
        except MailfixError:
            return False

    def _fail(self, incident_id: int, reason: str) -> None:
        with suppress(AlreadyDone, InvalidTransition):
            self.fire(incident_id, Event.STEP_FAILED, actor=SYSTEM, run=False, reason=reason)

    def _record_skipped(self, incident: Incident, step: steps.Step) -> None:
        try:
            run = self.repo.start_step(
                incident_id=incident.id,
                phase=incident.phase,
                step=step.name,
                attempt=1,
                actor=SYSTEM,
                now=self.now(),
            )
        except DuplicateStep:
            return
        self.repo.finish_step(step_id=run.id, status="skipped", summary={}, now=self.now())

    def _effects(
        self, incident: Incident, event: Event, target: State, actor: str, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[int, str] | None, NewApproval | None]:
        """Return the field changes, the approval decision and the approval request a transition brings."""
        now = self.now()
        changes: dict[str, Any] = {"state": target}
        if event not in (Event.RETRY, Event.STEP_FAILED):
            changes["phase"] = incident.phase + 1
        if target == State.FAILED:
            changes |= {"failed_state": incident.state, "failure": str(data.get("reason", ""))[:2000]}
        if target in TERMINAL:
            changes["closed_at"] = now
        if event in (Event.REJECT, Event.PICK) and incident.suspect_address:
            changes["rejected_accounts"] = [*incident.rejected_accounts, incident.suspect_address]
        if event in (Event.PICK, Event.CONTAIN):
            changes |= {"picked_account": str(data["pick"]), "suspect_named_by": actor}
        elif event == Event.REJECT:
            changes["suspect_named_by"] = None
        if target == State.MONITORING:
            rounds = {Event.NO_FLOOD: 0, Event.NOTIFIED: 0, Event.RESTARTED: 1, Event.REBOOTED: 2}
            monitor_round = rounds.get(event, incident.monitor_round)
            minutes = self.config.monitor_minutes if monitor_round == 0 else self.config.restart_monitor_minutes
            changes |= {"monitor_round": monitor_round, "monitor_deadline": now + timedelta(minutes=minutes)}
        decide, request = None, None
        current = _current_approval(incident)
        expired = current is None or current.decision == "expired" or current.expires_at <= now
        if event in (Event.APPROVE, Event.APPROVE_REBOOT):
            if current is None or expired:
                raise ApprovalExpired(current.what if current else "pending", current.expires_at if current else now)
            decide = (current.id, "approved")
        elif event in (Event.REJECT, Event.PICK) and current is not None and current.decision is None:
            decide = (current.id, "rejected")
        elif event == Event.RENEW:
            if not expired:
                raise InvalidTransition("renew", "the approval request has not expired")
            if current is not None and current.decision is None:
                decide = (current.id, "expired")
        if event == Event.APPROVE and not self.vault.ready:
            raise NotAuthorized(actor, "approve", "MAILFIX_SECRET_KEY is not set: the new password could not be kept")
        what = APPROVAL_FOR.get(target)
        if what is not None and (event == Event.RENEW or target != incident.state):
            timeout = timedelta(minutes=self.config.approval_timeout_minutes)
            request = NewApproval(what=what, requested_by=actor, expires_at=now + timeout)
        return changes, decide, request

    def _authorize(self, actor: str, guard: Guard, incident: Incident | None, event: Event) -> None:
        config = self.config
        if guard == Guard.SYSTEM:
            if actor != SYSTEM:
                raise NotAuthorized(actor, event, f"{event} is fired by mailfix itself, not by people")
            return
        if actor == SYSTEM:
            return
        if guard == Guard.OPERATOR and actor not in config.operators | config.directors:
            raise NotAuthorized(actor, event, f"only operators or directors may {event.replace('_', ' ')}")
        if guard in (Guard.DIRECTOR, Guard.APPROVER) and actor not in config.directors:
            raise NotAuthorized(actor, event, "only the IT director can approve this")
        if guard == Guard.APPROVER and incident is not None and not config.allow_self_approval:
            if actor == incident.opened_by:
                raise NotAuthorized(actor, event, "you opened this incident: another director must approve (four-eyes)")
            if actor == incident.suspect_named_by:
                raise NotAuthorized(actor, event, "you named this account: another director must approve (four-eyes)")

    def _already_done(self, incident: Incident, event: Event) -> AlreadyDone | None:
        if event not in PAST_TENSE:
            return None
        for audit in reversed(self.repo.audit_events(incident_id=incident.id)):
            if audit.action == event:
                return AlreadyDone(PAST_TENSE[event], audit.actor, audit.at)
        return None

    # -- collaborators --------------------------------------------------------------------

    def server(self, name: str) -> MailServer:
        """Return the (cached) mail-server connection for `name`."""
        with self._lock:
            if name not in self._servers:
                self._servers[name] = self._server_factory(name)
            return self._servers[name]

    def server_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._server_locks.setdefault(name, threading.Lock())

    def _context(self, incident: Incident, server: MailServer) -> steps.StepContext:
        def save(**fields: Any) -> None:
            self.repo.set_fields(incident_id=incident.id, **fields)
            for key, value in fields.items():
                setattr(incident, key, value)

        return steps.StepContext(
            incident=incident,
            server=server,
            config=self.config,
            server_config=self.config.server(incident.server),
            vault=self.vault,
            notifier=self.notifier,
            save=save,
            now=self.now,
            withdraw_password=self.withdraw_password,
        )

    def tell(self, incident: Incident) -> None:
        # Notifying is best effort: the database is the record, and a Slack outage must not stop a step.
        try:
            ref = self.notifier.incident_changed(incident)
            if ref is not None:
                self.repo.set_fields(incident_id=incident.id, slack_channel=ref.channel, slack_ts=ref.ts)
        except Exception:
            log.exception("could not update the message of incident #%s", incident.id)

    def directors_mention(self) -> str:
        return " ".join(f"<@{d}>" for d in sorted(self.config.directors))

    def log_step(self, incident: Incident, text: str) -> None:
        try:
            self.notifier.step_logged(incident, text)
        except Exception:
            log.exception("could not log a step of incident #%s", incident.id)

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.close()
            self._servers.clear()


def pending_approval(incident: Incident) -> Approval | None:
    pending = [a for a in incident.approvals if a.decision is None]
    return pending[-1] if pending else None


def _current_approval(incident: Incident) -> Approval | None:
    """Return the newest approval request for what the incident's state waits on."""
    what = APPROVAL_FOR.get(State(incident.state))
    matching = [a for a in incident.approvals if a.what == what]
    return matching[-1] if matching else None


def _password_message(incident: Incident) -> MessageRef | None:
    for run in reversed(incident.steps):
        if run.step == "notify_user" and run.summary.get("message_ts"):
            return MessageRef(run.summary["message_channel"], run.summary["message_ts"])
    return None


def _public(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
