"""Shared fixtures for the fast tests: a config, a SQLite repository, a fake server, a clock."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import i18n
from bot.config import Config, ServerConfig
from bot.core.runbook import Runbook
from bot.core.vault import Vault
from storage.db import make_engine, upgrade
from storage.repository import Repository
from tests.fakes import FakeMailServer, RecordingNotifier
from tests.integration.lab import Lab

DIRECTOR, DIRECTOR2, OPERATOR, STRANGER = "UDIRECTOR1", "UDIRECTOR2", "UOPERATOR1", "USTRANGER1"
SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmNkZWY="  # a Fernet key: 32 bytes, base64


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    """Every test starts in English, and a test that loads a Spanish config does not leak it to the next."""
    i18n.use("en")
    yield
    i18n.use("en")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_config(tmp_path: Path, **overrides: object) -> Config:
    server = ServerConfig(
        name="mail1",
        host="127.0.0.1",
        user="root",
        key_file=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts",
        mail_domain="example.org",
    )
    values: dict = dict(
        channel="C0INCIDENT",
        directors=frozenset({DIRECTOR, DIRECTOR2}),
        operators=frozenset({OPERATOR}),
        servers=(server,),
        cli_users={"alt": OPERATOR, "boss": DIRECTOR, "boss2": DIRECTOR2},
        flood_threshold=100,
        normal_queue_size=50,
        monitor_minutes=15,
        restart_monitor_minutes=5,
        check_interval_seconds=30,
        approval_timeout_minutes=30,
    )
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    url = f"sqlite:///{tmp_path}/mailfix.db"
    upgrade(url)
    return Repository(make_engine(url))


@pytest.fixture
def server() -> FakeMailServer:
    fake = FakeMailServer()
    fake.flood("victim", 300, forged=60, to_account=20)
    fake.flood("alice", 5)
    fake.inbox["victim"] = 7
    return fake


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def make_runbook(tmp_path, repo, server, notifier, clock):
    def make(**overrides: object) -> Runbook:
        return Runbook(
            config=make_config(tmp_path, **overrides),
            repository=repo,
            servers=lambda name: server,
            notifier=notifier,
            vault=Vault(SECRET_KEY),
            clock=clock,
        )

    return make


@pytest.fixture
def runbook(make_runbook) -> Runbook:
    return make_runbook()


@pytest.fixture(scope="session")
def postgres_admin_url():
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind mailfix supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mailfix.db"
    from tests.postgres import new_database

    return new_database(request.getfixturevalue("postgres_admin_url"))


# -- the real lab (sshd, Postfix, Dovecot on 127.0.0.1): one per session, shared by every folder --

NEEDED = ("/usr/sbin/sshd", "/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/bin/doveadm", "/usr/bin/sudo")
HOW = "run `sudo bash .ci/install-lab.sh`, then pytest as root"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever uses the lab, in any folder, is an integration test.
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return f"integration lab needs root; {HOW}"
    missing = [path for path in NEEDED if shutil.which(path) is None]
    if missing:
        return f"integration lab needs {', '.join(missing)}; {HOW}"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab (sshd, Postfix, Dovecot on 127.0.0.1), shared by the whole session."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":  # in CI the integration tests must run, not skip
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    the_lab = Lab().start()
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def clean_lab(lab: Lab) -> Lab:
    """The lab restored to its initial state: empty queue, map and mailboxes, known passwords."""
    lab.reset()
    return lab
