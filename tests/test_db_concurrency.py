"""The database under a Slack burst: reads never wait for a writer, writers take turns, request keys commit lazily."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import text

from storage.db import LAZY_COMMIT, make_engine, upgrade
from storage.deliveries import Deliveries
from storage.repository import Repository


def _repository(url: str) -> Repository:
    upgrade(url)
    return Repository(make_engine(url))


def _within(seconds: float, call) -> list:
    """Run `call` in a thread; return [its result] if it finished within `seconds`, else []."""
    done: list = []
    thread = threading.Thread(target=lambda: done.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return done


def test_a_read_on_sqlite_does_not_wait_for_a_writer_holding_the_lock(tmp_path):
    url = f"sqlite:///{tmp_path}/mailfix.db"
    repo = _repository(url)
    repo.open_incident(server="mail1", opened_by="UOPERATOR1", state="opened", now=datetime.now(UTC))
    holder = sqlite3.connect(tmp_path / "mailfix.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        read = _within(2.0, lambda: (repo.get(incident_id=1), repo.list_incidents(), repo.audit_events(incident_id=1)))
        assert read, "a read waited for the writer's lock"
        incident, listed, events = read[0]
        assert incident.server == "mail1" and len(listed) == 1 and [e.action for e in events] == ["open"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        repo.engine.dispose()


def test_racing_writers_of_one_process_record_each_key_once_and_release_the_lock_after_a_duplicate(database_url):
    repo = _repository(database_url)
    deliveries = Deliveries(repo)
    threads, keys = 8, [f"trigger-{i}" for i in range(40)]
    start = threading.Barrier(threads)
    spans: list[tuple[float, float]] = []
    firsts: list[str] = []

    def race() -> None:
        start.wait()
        began = time.perf_counter()
        won = [key for key in keys if deliveries.first(key=key)]
        spans.append((began, time.perf_counter()))
        firsts.extend(won)

    racers = [threading.Thread(target=race, daemon=True) for _ in range(threads)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(20)
    try:
        assert len(spans) == threads, "a writer never finished: the lock was not released"
        assert max(b for b, _ in spans) < min(e for _, e in spans), "the racers did not overlap"
        assert sorted(firsts) == sorted(keys)  # every key first exactly once, 7 duplicates of each refused
        assert _within(2.0, lambda: deliveries.first(key="after-the-race")) == [True]
    finally:
        repo.engine.dispose()


def test_only_a_lazy_commit_skips_waiting_for_the_disk(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    show = "PRAGMA synchronous" if database_url.startswith("sqlite") else "SHOW synchronous_commit"
    durable = ("2", "on")  # SQLite FULL, PostgreSQL on

    def setting(lazy: bool) -> str:
        with engine.connect() as conn:
            conn = conn.execution_options(**{LAZY_COMMIT: True}) if lazy else conn
            with conn.begin():
                return str(conn.execute(text(show)).scalar())

    try:
        assert setting(lazy=False) in durable
        assert setting(lazy=True) not in durable
        assert setting(lazy=False) in durable  # the lazy setting did not stay on the pooled connection
    finally:
        engine.dispose()
