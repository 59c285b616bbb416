"""The tables: incidents, the steps run for them, approvals, monitoring checks, the audit log, and flood alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Incident(Base):
    """One run of the runbook against one server; `version` guards every state change."""

    __tablename__ = "incidents"
    __table_args__ = (
        # At most one open incident per server, enforced by the database itself.
        Index(
            "uq_open_incident_per_server",
            "server",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    server: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Bumped on every transition but retry and failure, so a retry resumes the same entry's steps.
    phase: Mapped[int] = mapped_column(Integer, default=0)
    failed_state: Mapped[str | None] = mapped_column(String(32))
    failure: Mapped[str | None] = mapped_column(Text)
    suspect_address: Mapped[str | None] = mapped_column(String(254))
    suspect_login: Mapped[str | None] = mapped_column(String(254))
    picked_account: Mapped[str | None] = mapped_column(String(254))
    suspect_named_by: Mapped[str | None] = mapped_column(String(32))  # who picked the suspect by hand
    rejected_accounts: Mapped[list[str]] = mapped_column(JSON, default=list)
    diagnosis: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opened_by: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column()
    contained_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    monitor_round: Mapped[int] = mapped_column(Integer, default=0)
    monitor_deadline: Mapped[datetime | None] = mapped_column()
    # Read just before the reboot command: after a crash, an unchanged boot ID means it never went out.
    boot_id_before_reboot: Mapped[str | None] = mapped_column(String(64))
    # The next monitoring check is due then (database clock); the replica that moves it runs the check.
    next_check_at: Mapped[datetime | None] = mapped_column()
    # The new password, Fernet-encrypted, from just before it is set until the user has it.
    password_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    password_for: Mapped[str | None] = mapped_column(String(254))
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))

    steps: Mapped[list[StepRun]] = relationship(back_populates="incident", order_by="StepRun.id")
    approvals: Mapped[list[Approval]] = relationship(back_populates="incident", order_by="Approval.id")
    checks: Mapped[list[Check]] = relationship(back_populates="incident", order_by="Check.id")


class StepRun(Base):
    """One attempt at one step; the unique key makes two workers unable to start the same attempt."""

    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("incident_id", "phase", "step", "attempt", name="uq_step_attempt"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    phase: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # started, done, failed, skipped
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    actor: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The worker running a started step renews its lease; an expired lease means that worker died.
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column()

    incident: Mapped[Incident] = relationship(back_populates="steps")


class Approval(Base):
    """A request for a director's decision (cleanup or reboot) and its outcome."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    what: Mapped[str] = mapped_column(String(16))  # cleanup, reboot
    subject: Mapped[str | None] = mapped_column(String(320))  # the account, or "reboot of <server>"
    requested_by: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    reminded_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decision: Mapped[str | None] = mapped_column(String(16))  # approved, rejected, expired
    decided_at: Mapped[datetime | None] = mapped_column()

    incident: Mapped[Incident] = relationship(back_populates="approvals")


class Check(Base):
    """One monitoring check of the server."""

    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column()
    monitor_round: Mapped[int] = mapped_column(Integer)
    postfix_running: Mapped[bool] = mapped_column()
    queue_size: Mapped[int] = mapped_column(Integer)
    normal: Mapped[bool] = mapped_column()
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    incident: Mapped[Incident] = relationship(back_populates="checks")


class AuditEvent(Base):
    """Append-only: who did what, when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    actor: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class FloodAlert(Base):
    """One alert of the flood watch: a flood from one account, or a server it could not reach."""

    __tablename__ = "flood_alerts"
    __table_args__ = (
        # One open alert per server, kind and account, enforced by the database: two watchers
        # (replicas, or a restart racing the old process) cannot both raise the same alert.
        Index(
            "uq_open_flood_alert",
            "server",
            "kind",
            "account",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    server: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # flood, unreachable
    account: Mapped[str] = mapped_column(String(254), default="")  # "" for unreachable
    opened_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    # Set once the alert was told (Slack, terminal): an alert raised during a Slack outage is told later.
    notified_at: Mapped[datetime | None] = mapped_column()
    # A watcher telling the alert holds it until then (database clock), so no other watcher tells it too.
    telling_until: Mapped[datetime | None] = mapped_column()
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SlackRequest(Base):
    """A Slack request already handled by some replica, so a retry of it runs nowhere again."""

    __tablename__ = "slack_requests"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(index=True)


class SlackMessage(Base):
    """What the incident's Slack message shows: the version last shown, and who may write it now (a lease)."""

    __tablename__ = "slack_messages"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    shown_version: Mapped[int] = mapped_column(Integer, default=0)
    # Only the holder writes the message, so two processes never race an older version over a newer one.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column()
    # First posts tried: after one whose outcome is unknown, Slack is searched before posting again.
    post_attempts: Mapped[int] = mapped_column(Integer, default=0)


class ThreadReply(Base):
    """One reply for an incident's Slack thread, kept until it is posted (once, in order, by whoever claims it)."""

    __tablename__ = "thread_replies"
    __table_args__ = (Index("ix_thread_replies_pending", "incident_id", "posted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    posted_at: Mapped[datetime | None] = mapped_column()
    slack_ts: Mapped[str | None] = mapped_column(String(32))  # None with posted_at: Slack refused it for good
    error: Mapped[str | None] = mapped_column(String(64))
