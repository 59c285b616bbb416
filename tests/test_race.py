"""Two `mailfix` processes race on the same approval, on SQLite and on PostgreSQL: exactly one wins."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import IntegrityError

from storage.db import make_engine, upgrade
from storage.repository import DuplicateOpen, Repository
from tests.clitools import fake_env, spawn
from tests.conftest import Clock
from tests.fakes import FakeMailServer


def test_two_processes_approving_at_once_run_the_cleanup_once(tmp_path, database_url):
    env = fake_env(tmp_path, database_url)
    start = spawn(env, "alt", "start", "mail1")
    assert start.wait(60) == 0, start.communicate()
    for _ in range(3):  # several rounds, so the race really overlaps at least once
        racers = [spawn(env, user, "approve", "1", "--account", "victim@example.org") for user in ("boss", "boss2")]
        results = [(p.wait(60), p.communicate()) for p in racers]
        codes = sorted(code for code, _ in results)
        if codes == [0, 1]:
            break
    assert codes == [0, 1], results
    loser_err = next(err for code, (_, err) in results if code == 1)
    assert "already approved by UDIRECTOR" in loser_err
    server = FakeMailServer.from_file(Path(env["FAKE_MAILSERVER_STATE"]))
    assert server.calls_to("change_password") == ["victim"]


def test_the_database_refuses_a_second_open_incident_per_server(database_url):
    upgrade(database_url)
    repo, clock = Repository(make_engine(database_url)), Clock()
    first = repo.open_incident(server="mail1", opened_by="U1", state="opened", now=clock())
    try:
        repo.open_incident(server="mail1", opened_by="U2", state="opened", now=clock())
        raise AssertionError("a second open incident was accepted")
    except DuplicateOpen:
        pass
    # Not only the code: a raw insert that bypasses the repository is refused too.
    from storage.models import Incident

    def raw_open() -> None:
        with repo._sessions.begin() as session:  # noqa: SLF001 - the point is to bypass the repository
            session.add(
                Incident(
                    server="mail2",
                    state="opened",
                    opened_by="U1",
                    opened_at=clock(),
                    version=1,
                    phase=0,
                    rejected_accounts=[],
                    diagnosis={},
                )
            )

    raw_open()
    try:
        raw_open()
        raise AssertionError("the database accepted two open incidents on mail2")
    except IntegrityError:
        pass
    repo.transition(
        incident_id=first.id,
        expected_version=1,
        actor="U1",
        event="abort",
        now=clock(),
        changes={"state": "aborted", "closed_at": clock()},
    )
    assert repo.open_incident(server="mail1", opened_by="U1", state="opened", now=clock()).id != first.id
