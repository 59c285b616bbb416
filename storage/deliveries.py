"""The Slack requests any replica has received, so that the same request again, wherever it lands, is known."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from storage.db import LAZY_COMMIT
from storage.models import SlackRequest
from storage.repository import Repository


class Deliveries:
    """Keys of Slack requests (trigger_id, event_id) with when they arrived, on the database's clock."""

    def __init__(self, repository: Repository) -> None:
        self._sessions = sessionmaker(repository.engine)
        self._db_now = repository._db_now  # the one clock every host shares

    def first(self, *, key: str) -> bool:
        """Record that a Slack request was received; False if any replica recorded it before."""
        try:
            with self._sessions.begin() as session:
                # Not waiting for the disk: this is on every request's way to its ack, and a key lost
                # with the machine's power only lets a retry through, which the runbook's versions absorb.
                session.connection(execution_options={LAZY_COMMIT: True})
                session.execute(insert(SlackRequest).values(key=key, seen_at=self._db_now()))
        except IntegrityError:
            return False
        return True

    def forget(self, *, older_than: timedelta) -> None:
        """Delete the keys recorded more than `older_than` ago."""
        with self._sessions.begin() as session:
            session.execute(delete(SlackRequest).where(SlackRequest.seen_at < self._db_now(-older_than)))
