"""A throw-away PostgreSQL server on 127.0.0.1 for the tests that prove mailfix runs on it too.

Uses MAILFIX_TEST_POSTGRES_URL when set; otherwise starts Debian's PostgreSQL (initdb in a temp
dir, a free port, loopback only) when run as root, and stops it at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a PostgreSQL server (an admin connection to database `postgres`)."""
    url = os.environ.get("MAILFIX_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    reason = (
        "PostgreSQL tests need Debian's postgresql package and root (sudo bash .ci/run), or MAILFIX_TEST_POSTGRES_URL"
    )
    if not bins or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    bindir = os.path.dirname(bins[-1])
    home = tempfile.mkdtemp(prefix="mailfix-pg-")
    shutil.chown(home, "postgres")
    port = _free_port()

    def as_postgres(*argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    as_postgres(f"{bindir}/initdb", "-D", f"{home}/data", "-A", "trust", "-U", "postgres", "--no-sync")
    as_postgres(
        f"{bindir}/pg_ctl",
        "-D",
        f"{home}/data",
        "-l",
        f"{home}/log",
        "-w",
        "-o",
        f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(f"{bindir}/pg_ctl", "-D", f"{home}/data", "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    from sqlalchemy import create_engine, text

    name = f"mailfix_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
