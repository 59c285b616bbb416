"""Engines and schema upgrades; the only place that knows SQLite needs special care."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITING = "mailfix_writing"  # set on a connection while it holds its engine's writer lock
READ_ONLY = "mailfix_read_only"  # execution option of sessions that only read
LAZY_COMMIT = "mailfix_lazy_commit"  # execution option of a write that may be lost with the machine's power


def make_engine(url: str) -> Engine:
    """Return an engine; SQLite gets WAL, a busy timeout and write-ahead locking."""
    if not url.startswith("sqlite"):
        engine = create_engine(url, pool_pre_ping=True)

        @event.listens_for(engine, "begin")
        def _on_begin_lazy(conn: Any) -> None:
            if conn.get_execution_options().get(LAZY_COMMIT):
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

        return engine
    engine = create_engine(url, connect_args={"timeout": 30})
    # This process's writers queue here and take turns at once; SQLite's own busy wait (for
    # other processes) sleeps up to 100 ms between tries, and under load it let writers starve.
    writers = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so that `begin` below is honoured.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: two writers wait for each other
        # instead of failing with "database is locked" when a read turns into a write.
        # The repository's reads begin deferred: in WAL mode they read a snapshot without
        # the write lock, so they neither wait for writers nor make writers wait.
        options = conn.get_execution_options()
        if options.get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        # A lazy commit does not wait for the disk; the next durable commit syncs it with its own.
        conn.exec_driver_sql(f"PRAGMA synchronous={'NORMAL' if options.get(LAZY_COMMIT) else 'FULL'}")
        # Past the busy timeout (a writer that never ended), fall back to SQLite's own waiting.
        conn.info[_WRITING] = writers.acquire(timeout=30)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _end_write(conn)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end_write(conn: Any) -> None:
        if conn.info.pop(_WRITING, False):
            writers.release()

    return engine


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
