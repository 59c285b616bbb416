"""The Slack outbox: the version each incident's channel message shows, and the thread replies kept until posted.

Every claim is a conditional UPDATE with a lease on the database's clock (see `Repository.claim_step`):
across processes and replicas, one holder writes an incident's message at a time, and one poster posts
an incident's oldest unposted reply — so replies go out in order, each once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from storage.models import Incident, SlackMessage, ThreadReply
from storage.repository import Repository


@dataclass(frozen=True)
class ClaimedReply:
    """A reply this process holds: `attempts` > 1 means an earlier attempt may have reached Slack."""

    id: int
    incident_id: int
    text: str
    created_at: datetime
    attempts: int


class Outbox:
    """Typed access to what Slack has shown and what it still has to show."""

    def __init__(self, repository: Repository) -> None:
        self.repo = repository
        self._sessions = sessionmaker(repository.engine, expire_on_commit=False)
        self._reads = repository._reads  # reads never take SQLite's write lock (storage.db)
        self._db_now = repository._db_now  # the one clock every host shares

    def incident(self, incident_id: int) -> Incident | None:
        """Return the incident as it is now, with what its message renders."""
        return self.repo.get(incident_id=incident_id)

    # -- the incident's channel message ------------------------------------------------------

    def claim_message(self, *, incident_id: int, owner: str, lease: timedelta) -> SlackMessage | None:
        """Hold the incident's message for `lease` as `owner` (one claim's own name: a thread beside us is another
        holder); None while someone else holds it."""
        self._ensure_message(incident_id)
        with self._sessions.begin() as session:
            result = session.execute(
                update(SlackMessage)
                .where(SlackMessage.incident_id == incident_id)
                .where(
                    or_(
                        SlackMessage.claimed_by.is_(None),
                        SlackMessage.claimed_until <= self._db_now(),
                    )
                )
                .values(claimed_by=owner, claimed_until=self._db_now(lease))
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return session.get_one(SlackMessage, incident_id)

    def _ensure_message(self, incident_id: int) -> None:
        with self._reads() as session:
            if session.get(SlackMessage, incident_id) is not None:
                return
        try:
            with self._sessions.begin() as session:
                session.add(SlackMessage(incident_id=incident_id, shown_version=0, post_attempts=0))
        except IntegrityError:
            pass  # another process inserted it first

    def release_message(self, *, incident_id: int, owner: str) -> None:
        """Let go of the message, if we still hold it."""
        with self._sessions.begin() as session:
            session.execute(
                update(SlackMessage)
                .where(SlackMessage.incident_id == incident_id, SlackMessage.claimed_by == owner)
                .values(claimed_by=None, claimed_until=None)
            )

    def note_post_attempt(self, *, incident_id: int) -> None:
        """Record, before it goes out, that the message's first post is being tried."""
        with self._sessions.begin() as session:
            session.execute(
                update(SlackMessage)
                .where(SlackMessage.incident_id == incident_id)
                .values(post_attempts=SlackMessage.post_attempts + 1)
            )

    def message_shown(
        self, *, incident_id: int, version: int, channel: str | None = None, ts: str | None = None
    ) -> None:
        """Record that Slack shows `version` (never lowering it), and where the message lives when first found."""
        with self._sessions.begin() as session:
            session.execute(
                update(SlackMessage)
                .where(SlackMessage.incident_id == incident_id, SlackMessage.shown_version < version)
                .values(shown_version=version)
            )
            if ts is not None:
                session.execute(
                    update(Incident)
                    .where(Incident.id == incident_id, Incident.slack_ts.is_(None))
                    .values(slack_channel=channel, slack_ts=ts)
                )

    def behind(self) -> list[int]:
        """Return the incidents whose Slack message shows an older version than the incident's."""
        with self._reads() as session:
            query = (
                select(SlackMessage.incident_id)
                .join(Incident, Incident.id == SlackMessage.incident_id)
                .where(Incident.version > SlackMessage.shown_version)
                .order_by(SlackMessage.incident_id)
            )
            return list(session.scalars(query))

    # -- the thread replies ------------------------------------------------------------------

    def add_reply(self, *, incident_id: int, text: str, now: datetime) -> int:
        """Keep a reply for the incident's thread until it is posted; return its id."""
        reply = ThreadReply(incident_id=incident_id, text=text, created_at=now, attempts=0)
        with self._sessions.begin() as session:
            session.add(reply)
            session.flush()
            return reply.id

    def claim_next_reply(self, *, incident_id: int, owner: str, lease: timedelta) -> ClaimedReply | None:
        """Hold the incident's oldest unposted reply for `lease`; None when there is none or another holds it.

        Only the oldest can be held, so a later reply never overtakes an earlier one that failed.
        """
        with self._sessions.begin() as session:
            oldest = session.scalar(
                select(func.min(ThreadReply.id)).where(
                    ThreadReply.incident_id == incident_id, ThreadReply.posted_at.is_(None)
                )
            )
            if oldest is None:
                return None
            result = session.execute(
                update(ThreadReply)
                .where(ThreadReply.id == oldest, ThreadReply.posted_at.is_(None))
                .where(or_(ThreadReply.claimed_until.is_(None), ThreadReply.claimed_until <= self._db_now()))
                .values(claimed_by=owner, claimed_until=self._db_now(lease), attempts=ThreadReply.attempts + 1)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            reply = session.get_one(ThreadReply, oldest)
            session.refresh(reply)
            return ClaimedReply(reply.id, reply.incident_id, reply.text, reply.created_at, reply.attempts)

    def reply_posted(self, *, reply_id: int, ts: str, now: datetime) -> None:
        """Record that the reply is in the thread, at `ts`."""
        with self._sessions.begin() as session:
            session.execute(
                update(ThreadReply)
                .where(ThreadReply.id == reply_id)
                .values(posted_at=now, slack_ts=ts, claimed_by=None, claimed_until=None)
            )

    def reply_refused(self, *, reply_id: int, error: str, now: datetime) -> None:
        """Record that Slack refused the reply for good (it would refuse it again), so the next one can go."""
        with self._sessions.begin() as session:
            session.execute(
                update(ThreadReply)
                .where(ThreadReply.id == reply_id)
                .values(posted_at=now, error=error[:64], claimed_by=None, claimed_until=None)
            )

    def release_reply(self, *, reply_id: int, owner: str, pause: timedelta) -> None:
        """Let go of a reply whose post failed: it stays pending, first in line, and nobody takes it for `pause`.

        The pause matters after a timeout: Slack may still be storing the post, and a look-up made at once
        would miss it and post the reply a second time.
        """
        with self._sessions.begin() as session:
            session.execute(
                update(ThreadReply)
                .where(ThreadReply.id == reply_id, ThreadReply.claimed_by == owner)
                .values(claimed_by=None, claimed_until=self._db_now(pause))
            )

    def with_pending_replies(self) -> list[int]:
        """Return the incidents that have replies not yet posted."""
        with self._reads() as session:
            query = select(ThreadReply.incident_id).where(ThreadReply.posted_at.is_(None)).distinct()
            return sorted(session.scalars(query))

    def replies(self, *, incident_id: int) -> Sequence[ThreadReply]:
        """Return the incident's replies, oldest first."""
        with self._reads() as session:
            query = select(ThreadReply).where(ThreadReply.incident_id == incident_id).order_by(ThreadReply.id)
            return session.scalars(query).all()
