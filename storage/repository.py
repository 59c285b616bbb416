"""Every read and write of incidents; sessions never leave this module.

Objects returned are detached snapshots (`expire_on_commit=False`): read them, don't mutate them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from storage.db import READ_ONLY
from storage.models import Approval, AuditEvent, Check, FloodAlert, Incident, StepRun


class StaleVersion(Exception):
    """Another writer changed the incident first; `last` is the audit event that did it."""

    def __init__(self, last: AuditEvent | None) -> None:
        self.last = last
        super().__init__("incident changed by someone else")


class DuplicateOpen(Exception):
    """The database refused a second open incident on the same server."""


class DuplicateStep(Exception):
    """Another worker already started this attempt of this step."""


class DuplicateAlert(Exception):
    """The database refused a second open alert for the same server, kind and account."""


@dataclass(frozen=True)
class NewApproval:
    what: str
    subject: str
    requested_by: str
    expires_at: datetime


_FULL = (selectinload(Incident.steps), selectinload(Incident.approvals), selectinload(Incident.checks))


class Repository:
    """Typed access to incidents, steps, approvals, checks and the audit log."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Reads run in sessions of their own: on SQLite they then never take the write lock (storage.db).
        self._reads = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    def open_incident(self, *, server: str, opened_by: str, state: str, now: datetime) -> Incident:
        """Insert a new open incident, or raise DuplicateOpen if the server has one."""
        incident = Incident(
            server=server,
            state=state,
            opened_by=opened_by,
            opened_at=now,
            version=1,
            phase=0,
            rejected_accounts=[],
            diagnosis={},
        )
        try:
            with self._sessions.begin() as session:
                session.add(incident)
                session.flush()
                session.add(AuditEvent(incident_id=incident.id, actor=opened_by, action="open", at=now, details={}))
        except IntegrityError:
            raise DuplicateOpen(server) from None
        return self.get(incident_id=incident.id)  # type: ignore[return-value]

    def get(self, *, incident_id: int) -> Incident | None:
        """Return the incident with its steps, approvals and checks, or None."""
        with self._reads() as session:
            return session.scalars(select(Incident).where(Incident.id == incident_id).options(*_FULL)).first()

    def open_on(self, *, server: str) -> Incident | None:
        """Return the open incident on `server`, if any."""
        with self._reads() as session:
            query = select(Incident).where(Incident.server == server, Incident.closed_at.is_(None))
            return session.scalars(query).first()

    def list_incidents(self, *, open_only: bool = False, limit: int = 50) -> Sequence[Incident]:
        """Return the newest incidents first."""
        with self._reads() as session:
            query = select(Incident).order_by(Incident.id.desc()).limit(limit)
            if open_only:
                query = query.where(Incident.closed_at.is_(None))
            return session.scalars(query).all()

    def transition(
        self,
        *,
        incident_id: int,
        expected_version: int,
        actor: str,
        event: str,
        now: datetime,
        changes: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
        decide: tuple[int, str] | None = None,
        request: NewApproval | None = None,
        failed_step: tuple[int, Mapping[str, Any]] | None = None,
    ) -> Incident:
        """Apply `changes` if the incident is still at `expected_version`, with its audit event, in one transaction.

        `decide` = (approval id, decision) records a director's decision; `request` opens a new approval;
        `failed_step` = (step run id, summary) ends that attempt as failed in the same transaction (even
        when stale), so no worker ever sees the attempt ended while the incident still runs steps.
        Raises StaleVersion when someone else changed the incident first.
        """
        with self._sessions.begin() as session:
            if failed_step is not None:
                run = session.get_one(StepRun, failed_step[0])
                run.status, run.summary, run.finished_at = "failed", {**run.summary, **failed_step[1]}, now
            result = session.execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.version == expected_version)
                .values(version=expected_version + 1, **changes)
            )
            stale = result.rowcount != 1  # type: ignore[attr-defined]
            if not stale:
                self._record_transition(session, incident_id, actor, event, now, details, decide, request)
        if stale:
            raise StaleVersion(self.last_event(incident_id=incident_id))
        return self.get(incident_id=incident_id)  # type: ignore[return-value]

    @staticmethod
    def _record_transition(
        session: Session,
        incident_id: int,
        actor: str,
        event: str,
        now: datetime,
        details: Mapping[str, Any] | None,
        decide: tuple[int, str] | None,
        request: NewApproval | None,
    ) -> None:
        session.add(AuditEvent(incident_id=incident_id, actor=actor, action=event, at=now, details=dict(details or {})))
        if decide is not None:
            approval = session.get_one(Approval, decide[0])
            approval.decision, approval.decided_by, approval.decided_at = decide[1], actor, now
        if request is not None:
            session.add(
                Approval(
                    incident_id=incident_id,
                    what=request.what,
                    subject=request.subject,
                    requested_by=request.requested_by,
                    requested_at=now,
                    expires_at=request.expires_at,
                )
            )

    def set_fields(self, *, incident_id: int, **fields: Any) -> None:
        """Update fields that are not the state (Slack message ref, encrypted password, diagnosis)."""
        with self._sessions.begin() as session:
            session.execute(update(Incident).where(Incident.id == incident_id).values(**fields))

    def start_step(
        self,
        *,
        incident_id: int,
        phase: int,
        step: str,
        attempt: int,
        actor: str,
        now: datetime,
        owner: str | None = None,
        lease: timedelta | None = None,
        at_version: int | None = None,
    ) -> StepRun:
        """Record that a step attempt has started (held by `owner` for `lease` on the database's clock), or
        raise DuplicateStep if another worker did, or if the incident is no longer at `at_version`."""
        run = StepRun(
            owner=owner,
            lease_until=self._db_now(lease) if lease is not None else None,
            incident_id=incident_id,
            phase=phase,
            step=step,
            status="started",
            attempt=attempt,
            actor=actor,
            started_at=now,
            summary={},
        )
        try:
            with self._sessions.begin() as session:
                if at_version is not None and not self._still_at(session, incident_id, at_version):
                    raise DuplicateStep(step)
                session.add(run)
                session.flush()
                session.refresh(run)  # the lease the database computed
        except IntegrityError:
            raise DuplicateStep(step) from None
        return run

    @staticmethod
    def _still_at(session: Session, incident_id: Any, version: int) -> bool:
        """True if the incident is still at `version`. A snapshot read in two statements may show a step failed
        by a transition it does not show yet: the failure commits with the version bump, which tells."""
        return session.scalar(select(Incident.version).where(Incident.id == incident_id)) == version

    def renew_lease(self, *, step_id: int, owner: str, lease: timedelta) -> bool:
        """Extend the lease of a running step that `owner` still holds; False if it holds it no more."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(StepRun)
                .where(StepRun.id == step_id, StepRun.owner == owner, StepRun.status == "started")
                .values(lease_until=self._db_now(lease))
            )
            return result.rowcount == 1  # type: ignore[attr-defined]

    def claim_step(self, *, step_id: int, owner: str, lease: timedelta, at_version: int | None = None) -> bool:
        """Take over a started step whose lease ran out (its worker died); False while the lease lasts, or when
        the incident is no longer at `at_version`. Expiry is decided by the database's clock, one clock for
        every host, in the UPDATE itself: two workers can never both take the same step over."""
        with self._sessions.begin() as session:
            incident_id = select(StepRun.incident_id).where(StepRun.id == step_id).scalar_subquery()
            if at_version is not None and not self._still_at(session, incident_id, at_version):
                return False
            result = session.execute(
                update(StepRun)
                .where(StepRun.id == step_id, StepRun.status == "started")
                .where(or_(StepRun.lease_until.is_(None), StepRun.lease_until <= self._db_now()))
                .values(owner=owner, lease_until=self._db_now(lease))
            )
            return result.rowcount == 1  # type: ignore[attr-defined]

    def _db_now(self, plus: timedelta = timedelta()) -> ColumnElement[datetime]:
        """The database's current time plus `plus`, as SQL: leases never depend on a host's clock."""
        if self.engine.dialect.name == "sqlite":
            # Written in the text form SQLAlchemy stores datetimes in on SQLite, so they compare as text.
            return func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"{plus.total_seconds():+.3f} seconds")
        return func.now() + plus

    def claim_check(self, *, incident_id: int, hold: timedelta) -> bool:
        """Take the due check (database clock) and hold the next off for `hold`: one replica takes each check."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.state == "monitoring", Incident.closed_at.is_(None))
                .where(or_(Incident.next_check_at.is_(None), Incident.next_check_at <= self._db_now()))
                .values(next_check_at=self._db_now(hold))
            )
            return result.rowcount == 1  # type: ignore[attr-defined]

    def hasten_check(self, *, incident_id: int, within: timedelta) -> None:
        """Make the incident's next check due within `within` from now (database clock), if it is due later."""
        with self._sessions.begin() as session:
            session.execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.next_check_at > self._db_now(within))
                .values(next_check_at=self._db_now(within))
            )

    def finish_step(self, *, step_id: int, status: str, summary: Mapping[str, Any], now: datetime) -> None:
        """Record a step attempt's outcome (its summary added to what the attempt noted while it ran)."""
        with self._sessions.begin() as session:
            run = session.get_one(StepRun, step_id)
            run.status, run.summary, run.finished_at = status, {**run.summary, **summary}, now

    def note_step(self, *, step_id: int, summary: Mapping[str, Any]) -> None:
        """Add `summary` to a running step attempt's record at once (what it found before changing the server)."""
        with self._sessions.begin() as session:
            run = session.get_one(StepRun, step_id)
            run.summary = {**run.summary, **summary}

    def add_check(self, *, incident_id: int, **values: Any) -> Check:
        """Record one monitoring check."""
        check = Check(incident_id=incident_id, **values)
        with self._sessions.begin() as session:
            session.add(check)
        return check

    def audit(self, *, incident_id: int | None, actor: str, action: str, now: datetime, **details: Any) -> None:
        """Append an audit event that is not a state change."""
        with self._sessions.begin() as session:
            session.add(AuditEvent(incident_id=incident_id, actor=actor, action=action, at=now, details=details))

    def audit_events(self, *, incident_id: int) -> Sequence[AuditEvent]:
        """Return the incident's audit trail, oldest first."""
        with self._reads() as session:
            query = select(AuditEvent).where(AuditEvent.incident_id == incident_id).order_by(AuditEvent.id)
            return session.scalars(query).all()

    def mark_reminded(self, *, approval_id: int, now: datetime) -> bool:
        """Mark a pending approval reminded; False if it already was (or was decided)."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Approval)
                .where(Approval.id == approval_id, Approval.reminded_at.is_(None), Approval.decision.is_(None))
                .values(reminded_at=now)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def expire_approval(self, *, approval_id: int, now: datetime) -> bool:
        """Mark a pending approval expired; False if it was decided (or expired) already."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Approval)
                .where(Approval.id == approval_id, Approval.decision.is_(None))
                .values(decision="expired", decided_at=now, decided_by="mailfix")
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def with_pending_password(self) -> Sequence[Incident]:
        """Return incidents still holding an undelivered (encrypted) password."""
        with self._reads() as session:
            query = select(Incident).where(Incident.password_ciphertext.is_not(None)).options(*_FULL)
            return session.scalars(query).all()

    def erase_password(self, *, incident_id: int) -> bool:
        """Erase the stored password; False if it was erased already."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.password_ciphertext.is_not(None))
                .values(password_ciphertext=None)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def ping(self) -> bool:
        """Return True when the database answers."""
        with self._reads() as session:
            return session.execute(select(1)).scalar() == 1

    def last_event(self, *, incident_id: int) -> AuditEvent | None:
        """Return the incident's newest audit event."""
        with self._reads() as session:
            query = select(AuditEvent).where(AuditEvent.incident_id == incident_id).order_by(AuditEvent.id.desc())
            return session.scalars(query.limit(1)).first()

    # -- flood watch alerts ---------------------------------------------------------------

    def open_alert(
        self, *, server: str, kind: str, account: str, now: datetime, details: Mapping[str, Any]
    ) -> FloodAlert:
        """Insert an open alert, or raise DuplicateAlert if the same one is open already."""
        alert = FloodAlert(server=server, kind=kind, account=account, opened_at=now, details=dict(details))
        try:
            with self._sessions.begin() as session:
                session.add(alert)
        except IntegrityError:
            raise DuplicateAlert(f"{server} {kind} {account}") from None
        return alert

    def open_alerts(self, *, server: str | None = None) -> Sequence[FloodAlert]:
        """Return the open alerts (of one server, when given), oldest first."""
        with self._reads() as session:
            query = select(FloodAlert).where(FloodAlert.closed_at.is_(None)).order_by(FloodAlert.id)
            if server is not None:
                query = query.where(FloodAlert.server == server)
            return session.scalars(query).all()

    def get_alert(self, *, alert_id: int) -> FloodAlert | None:
        """Return the alert, or None."""
        with self._reads() as session:
            return session.get(FloodAlert, alert_id)

    def update_alert(self, *, alert_id: int, **fields: Any) -> FloodAlert | None:
        """Update an alert's fields (Slack message ref, notified_at, details) and return it."""
        with self._sessions.begin() as session:
            session.execute(update(FloodAlert).where(FloodAlert.id == alert_id).values(**fields))
        return self.get_alert(alert_id=alert_id)

    def claim_telling(self, *, alert_id: int, lease: timedelta) -> bool:
        """Take the telling of an untold alert for `lease` (database clock); False if told or another watcher has it."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(FloodAlert)
                .where(FloodAlert.id == alert_id, FloodAlert.notified_at.is_(None))
                .where(or_(FloodAlert.telling_until.is_(None), FloodAlert.telling_until <= self._db_now()))
                .values(telling_until=self._db_now(lease))
            )
            return result.rowcount == 1  # type: ignore[attr-defined]

    def close_alert(self, *, alert_id: int, now: datetime, details: Mapping[str, Any]) -> FloodAlert | None:
        """Close an open alert with its final details; None if it was closed already (by another watcher)."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(FloodAlert)
                .where(FloodAlert.id == alert_id, FloodAlert.closed_at.is_(None))
                .values(closed_at=now, details=dict(details))
            )
            closed = bool(result.rowcount)  # type: ignore[attr-defined]
        return self.get_alert(alert_id=alert_id) if closed else None
