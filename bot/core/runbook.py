"""The per-incident state machine's engine: it fires events against the table in `bot.core.table`,
runs each state's entry steps, and tells the notifier.

Every transition is committed with its audit event in one transaction guarded by the incident's
version, so when two workers (or replicas) fire the same event exactly one wins. The core knows
nothing of Slack or SSH: it gets a pool of mail servers and a notifier. Slack and the CLI enter
through one door, `act`, with a `Request` bound to what the person saw.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bot.config import Config
from bot.core import retrying, steps
from bot.core.binding import PAST_TENSE, check_binding, offered_account
from bot.core.diagnosis import deletes
from bot.core.effects import authorize, effects
from bot.core.mailserver import MailServer
from bot.core.notifier import Notifier, stamp
from bot.core.pool import ServerPool
from bot.core.requests import Request
from bot.core.stepping import StepRunner
from bot.core.table import (
    STAGES,
    TERMINAL,
    Event,
    Guard,
    State,
    completion_event,
    guard_for,
    next_state,
)
from bot.core.vault import Vault
from bot.errors import (
    AlreadyDone,
    ExecutorError,
    IncidentNotFound,
    InvalidTransition,
    MailfixError,
    NotAuthorized,
    ServerBusy,
)
from bot.i18n import N_, _
from storage.models import Incident
from storage.repository import DuplicateOpen, Repository, StaleVersion

log = logging.getLogger(__name__)
SYSTEM = steps.SYSTEM_ACTOR  # the actor of events the bot fires itself


def utcnow() -> datetime:
    return datetime.now(UTC)


class Runbook:
    """Drives incidents: opens them, fires events, runs entry steps, resumes after a crash."""

    def __init__(
        self,
        *,
        config: Config,
        repository: Repository,
        servers: ServerPool | Callable[[str], MailServer],
        notifier: Notifier,
        vault: Vault,
        blocklists: Callable[[str], str | None] = lambda server: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.repo = repository
        self.servers = ServerPool.of(servers)
        self.notifier = notifier
        self.vault = vault
        self.blocklists = blocklists  # server name → blocklist verdicts as text (None: nothing to check)
        self.now = clock
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._active: dict[int, int] = {}  # incidents this process is working on right now (re-entrant)
        self._steps = StepRunner(
            repository=repository,
            owner=self.owner,
            now=clock,
            get=self.get,
            context=self._context,
            failed=self._step_failed,
            log_step=self.log_step,
        )

    # -- what people do -------------------------------------------------------------------

    def start(self, *, server: str | None, actor: str) -> Incident:
        """Open an incident on `server` and diagnose it (containing the flood at once when configured)."""
        authorize(self.config, actor, Guard.OPERATOR, None, Event.DIAGNOSE)
        name = self.config.server(server).name
        try:
            incident = self.repo.open_incident(server=name, opened_by=actor, state=State.OPENED, now=self.now())
        except DuplicateOpen:
            existing = self.repo.open_on(server=name)
            raise ServerBusy(name, existing.id if existing else None) from None
        self.tell(incident)
        return self.fire(incident.id, Event.DIAGNOSE, actor=actor)

    def act(self, request: Request, *, actor: str) -> Incident:
        """Carry out what a person asked, only while the incident still asks what they answered."""
        return self.fire(request.incident_id, request.event, actor=actor, asked=request)

    def _answer(self, incident: Incident, request: Request) -> dict[str, Any]:
        """Check `request` against the incident as it is at this version; return the data its event needs."""
        check_binding(incident, request, done_before=lambda event: self._already_done(incident, event))
        if request.event in (Event.PICK, Event.CONTAIN):
            with self.servers.lock(incident.server):
                protected = self.server(incident.server).protected_accounts()
            domain = self.config.server(incident.server).mail_domain
            return {"pick": offered_account(incident, request, mail_domain=domain, protected=protected)}
        last_check_normal = bool(incident.checks and incident.checks[-1].normal)
        if request.event == Event.RESOLVE_NOW and incident.state == State.MONITORING and not last_check_normal:
            raise InvalidTransition(Event.RESOLVE_NOW, reason=_("the last check was not normal"))
        return {}

    def approve(self, incident_id: int, *, actor: str, account: str | None = None) -> Incident:
        """A director approves the pending cleanup (of `account`, when named) or reboot."""
        event = Event.APPROVE_REBOOT if self.get(incident_id).state == State.AWAITING_REBOOT_APPROVAL else Event.APPROVE
        return self.act(Request(incident_id, event, account=account), actor=actor)

    def reject(self, incident_id: int, *, actor: str, pick: str | None = None) -> Incident:
        """A director says "not this account" (optionally naming the right one)."""
        event = Event.PICK if pick is not None else Event.REJECT
        return self.act(Request(incident_id, event, pick=pick), actor=actor)

    def contain(self, incident_id: int, *, actor: str, account: str) -> Incident:
        """Contain another account whose flood showed up while monitoring (hold and block; cleanup needs approval)."""
        return self.act(Request(incident_id, Event.CONTAIN, pick=account), actor=actor)

    def abort(self, incident_id: int, *, actor: str) -> Incident:
        return self.act(Request(incident_id, Event.ABORT), actor=actor)

    def retry(self, incident_id: int, *, actor: str) -> Incident:
        return self.act(Request(incident_id, Event.RETRY), actor=actor)

    def resolve_now(self, incident_id: int, *, actor: str) -> Incident:
        """Close a monitored incident early, if its last check was normal."""
        return self.act(Request(incident_id, Event.RESOLVE_NOW), actor=actor)

    def confirm_password(self, incident_id: int, *, actor: str, account: str | None = None) -> bool:
        """The user has the new password: erase it and withdraw the message; False if already done, or if
        `account` (from the button) is not the one whose password waits: a late click erases no other's."""
        incident = self.get(incident_id)
        if account is not None and account != incident.password_for:
            return False
        delivered = steps.delivery_of(incident)
        people = self.config.operators | self.config.directors
        may = actor == delivered.get("to") if delivered.get("via") == "dm" else actor in people
        if not may:
            raise NotAuthorized(actor, "confirm the password", _("only the person who received it may confirm it"))
        return self.withdraw_password(incident, actor, "password_confirmed")

    def withdraw_password(self, incident: Incident, actor: str, action: str) -> bool:
        if not self.repo.erase_password(incident_id=incident.id):
            return False
        self.repo.audit(incident_id=incident.id, actor=actor, action=action, now=self.now())
        try:
            self.notifier.withdraw_password(incident, steps.password_message(incident))
        except Exception:
            log.exception("could not withdraw the password message of incident #%s", incident.id)
        return True

    def restore_inbox(self, incident_id: int, *, actor: str) -> int:
        """A director puts back, once, the INBOX that the closed incident's cleanup archived; return how many."""
        incident = self.get(incident_id)
        authorize(self.config, actor, Guard.DIRECTOR, None, Event.APPROVE)
        archived = steps.archive_of(incident)
        if State(incident.state) not in TERMINAL or archived is None:
            only = _("a closed incident whose cleanup archived an INBOX")
            raise InvalidTransition(_("restore the inbox"), reason=only)
        path, account = archived
        for event in self.repo.audit_events(incident_id=incident.id):
            if event.action == "inbox_restored" and event.details.get("archive") == path:  # a double click
                raise AlreadyDone(N_("restored"), event.actor, event.at)
        with self.servers.lock(incident.server):
            restored = self.server(incident.server).restore_inbox(account, path)
        self.repo.audit(
            incident_id=incident.id,
            actor=actor,
            action="inbox_restored",
            now=self.now(),
            archive=path,
            restored=restored,
        )
        text = _(":inbox_tray: Restored {count} messages into the INBOX of {login}")
        self.log_step(incident, text.format(count=restored, login=account.login))
        return restored

    def may_read(self, actor: str) -> None:
        """Raise NotAuthorized unless `actor` may read incidents (addresses, subjects, failures)."""
        config = self.config
        if actor != SYSTEM and actor not in config.operators | config.directors | config.readers:
            raise NotAuthorized(actor, "read incidents", _("only operators, directors and readers may see incidents"))

    def fire(
        self, incident_id: int, event: Event, *, actor: str, run: bool = True, asked: Request | None = None, **data: Any
    ) -> Incident:
        """Apply `event` (checking the table, the guard, what a person `asked` and the version), then run the
        new state's steps. `failed_step=(run id, summary)` ends that step attempt in the same transaction;
        `at_version` fires only if the incident is still at that version (a decision made on a snapshot)."""
        with self.working(incident_id):  # before the commit: the scheduler never runs the steps beside us
            return self._fire(incident_id, event, actor=actor, run=run, asked=asked, **data)

    def _fire(
        self, incident_id: int, event: Event, *, actor: str, run: bool, asked: Request | None, **data: Any
    ) -> Incident:
        incident = self.get(incident_id)
        failed_step = data.pop("failed_step", None)
        if data.pop("at_version", incident.version) != incident.version:  # decided on an older snapshot
            raise InvalidTransition(event, reason=_("the incident changed meanwhile"))
        if asked is not None:
            # Checked on this very snapshot: the transition below commits only at its version, so nobody's
            # "not this account" can slip in between the check and the change.
            data = {**data, **self._answer(incident, asked)}
        try:
            rule = next_state(incident.state, event)
        except InvalidTransition:
            raise self._already_done(incident, event) or InvalidTransition(event, incident.state) from None
        authorize(self.config, actor, guard_for(incident, event, rule), incident, event)
        if event == Event.APPROVE and not self.vault.ready:
            reason = _("MAILFIX_SECRET_KEY is not set: the new password could not be kept")
            raise NotAuthorized(actor, "approve", reason)
        target = rule.next or State(incident.failed_state or State.FAILED)
        changes, decide, ask = effects(
            config=self.config, incident=incident, event=event, target=target, actor=actor, data=data, now=self.now()
        )
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
                request=ask,
                failed_step=failed_step,
            )
        except StaleVersion as stale:
            # Prefer "approved by the director who won" over whoever changed the incident last.
            done = self._already_done(self.get(incident_id), event)
            last = stale.last
            what = PAST_TENSE.get(event, N_("done"))
            raise done or AlreadyDone(what, last.actor if last else None, last.at if last else None) from None
        self.tell(incident)
        if ask is not None:  # the directors hear of it now, where Slack notifies them, not at the reminder
            text = _(":raised_hand: {directors} please decide on {subject}{deletes} (until {until})").format(
                directors=self.directors_mention(),
                subject=ask.subject,
                deletes=deletes(incident) if ask.what == "cleanup" else "",
                until=stamp(ask.expires_at),
            )
            self.log_step(incident, text)
        if target in TERMINAL:  # a password never outlives its incident, delivered or not
            self.withdraw_password(incident, actor, "password_erased_incident_closed")
        return self.run_steps(incident.id) if run else incident

    def run_steps(self, incident_id: int) -> Incident:
        """Run the current state's pending entry steps, then fire its completion event; repeat."""
        with self.working(incident_id):
            incident = self.get(incident_id)
            while State(incident.state) in STAGES:
                state = State(incident.state)
                with self.servers.lock(incident.server):
                    if not self._steps.run_entry(incident):
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

    def steps_pending(self, incident: Incident) -> bool:
        return self._steps.steps_pending(incident)

    def _step_failed(self, incident: Incident, step: steps.Step, run_id: int, exc: MailfixError) -> None:
        """End the attempt as failed and the incident in FAILED in one transaction, then tell people."""
        reason = f"{step.name}: {exc}"
        if step is steps.REBOOT:
            reason = _(
                "needs a human: {server} did not come back after the reboot ({error}); tried: Postfix restart, reboot"
            ).format(server=incident.server, error=exc)
        if isinstance(exc, ExecutorError):  # the connection may be half dead: the retry opens a new one
            self.servers.forget(incident.server)
        failed = (run_id, {"error": str(exc)})
        then = retrying.plan(incident.state, exc, self.repo.audit_events(incident_id=incident.id))
        said = f"; {announced}" if (announced := then.announce(self.now())) else ""
        data: dict[str, Any] = {"reason": reason + said, "failed_step": failed, **then.details()}
        try:
            self.fire(incident.id, Event.STEP_FAILED, actor=SYSTEM, run=False, **data)
        except (AlreadyDone, InvalidTransition):  # aborted while the step ran: the attempt still ends failed
            self.repo.finish_step(step_id=run_id, status=steps.StepStatus.FAILED, summary=failed[1], now=self.now())
            said = ""
        if step is steps.REBOOT:
            self.log_step(incident, f":sos: {self.directors_mention()} {reason}")
        else:
            self.log_step(
                incident, _(":x: {step} failed: {error}{retrying}").format(step=step.name, error=exc, retrying=said)
            )

    def _already_done(self, incident: Incident, event: Event) -> AlreadyDone | None:
        if event not in PAST_TENSE:
            return None
        for audit in reversed(self.repo.audit_events(incident_id=incident.id)):
            if audit.action == event:
                return AlreadyDone(PAST_TENSE[event], audit.actor, audit.at)
        return None

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

    # -- collaborators --------------------------------------------------------------------

    def server(self, name: str) -> MailServer:
        """Return the pooled mail-server connection for `name`."""
        return self.servers.get(name)

    def _context(self, incident: Incident) -> steps.StepContext:
        def save(**fields: Any) -> None:
            self.repo.set_fields(incident_id=incident.id, **fields)
            for key, value in fields.items():
                setattr(incident, key, value)

        return steps.StepContext(
            incident=incident,
            server=self.server(incident.server),
            config=self.config,
            server_config=self.config.server(incident.server),
            vault=self.vault,
            notifier=self.notifier,
            save=save,
            now=self.now,
            withdraw_password=self.withdraw_password,
        )

    def tell(self, incident: Incident) -> None:
        # A Slack outage must not stop a step: the notifier keeps what it could not show, `catch_up` shows it.
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
        self.servers.close()


def _public(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
