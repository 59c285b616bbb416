"""Two `mailfix` processes race on the same approval, on SQLite and on PostgreSQL: exactly one wins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from storage.db import make_engine, upgrade
from storage.repository import DuplicateOpen, Repository
from tests.clitools import ROOT, fake_env, spawn, write_config
from tests.conftest import Clock
from tests.fakes import FakeMailServer

ROUNDS = 3
# A racer imports everything, waits at a barrier until the other racer is there too, then runs
# `mailfix` and writes when (time.monotonic(), one clock for every process) its run began and ended.
RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    from bot.terminal.cli import main

    mine, theirs, times = (Path(p) for p in sys.argv[1:4])
    mine.touch()
    deadline = time.monotonic() + 30
    while not theirs.exists():
        if time.monotonic() > deadline:
            sys.exit("the other racer never reached the barrier")
        time.sleep(0.0005)
    began = time.monotonic()
    try:
        code = main(sys.argv[4:])
    finally:
        times.write_text(f"{began!r} {time.monotonic()!r}")
    sys.exit(code)
""")


def race(env: dict[str, str], directory: Path, *argv: str) -> list[tuple[int, str, tuple[float, float]]]:
    """Run `mailfix ARGV` as boss and as boss2 at once; return each one's exit code, stderr and (began, ended)."""
    users = ("boss", "boss2")
    barrier = [directory / f"{user}.at-barrier" for user in users]
    times = [directory / f"{user}.times" for user in users]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier[i]), str(barrier[1 - i]), str(times[i]), *argv],
            cwd=ROOT,
            env={**os.environ, **env, "SUDO_USER": user, "FAKE_MAILSERVER_BLOCK_AFTER": ""},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i, user in enumerate(users)
    ]
    results = []
    for racer, path in zip(racers, times, strict=True):
        _, err = racer.communicate(timeout=60)
        began, ended = (float(t) for t in path.read_text().split())
        results.append((racer.returncode, err, (began, ended)))
    return results


def overlapped(results: list[tuple[int, str, tuple[float, float]]]) -> bool:
    """True when both racers were inside `mailfix` at the same time."""
    (began1, ended1), (began2, ended2) = (interval for _, _, interval in results)
    return max(began1, began2) < min(ended1, ended2)


def test_two_processes_approving_at_once_run_the_cleanup_once(tmp_path, database_url):
    # Every round races on a fresh approval: its own server (and fake mail server), one database.
    overlaps = []
    for round_ in range(1, ROUNDS + 1):
        directory = tmp_path / f"round{round_}"
        directory.mkdir()
        env = fake_env(directory, database_url)
        env["MAILFIX_CONFIG"] = str(write_config(directory, server_name=f"mail{round_}"))
        start = spawn(env, "alt", "start", f"mail{round_}")
        out, err = start.communicate(timeout=60)
        assert start.returncode == 0, (out, err)
        found = re.search(rf"^#(\d+) +mail{round_} +awaiting_approval ", out, re.MULTILINE)
        assert found, out
        incident = found.group(1)

        results = race(env, directory, "approve", incident, "--account", "victim@example.org")
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 1], (round_, results)
        loser_err = next(err for code, err, _ in results if code == 1)
        assert "already approved by UDIRECTOR" in loser_err, loser_err
        server = FakeMailServer.from_file(Path(env["FAKE_MAILSERVER_STATE"]))
        assert server.calls_to("change_password") == ["victim"], round_
        overlaps.append(overlapped(results))
    assert any(overlaps), "the two approvals never ran at the same time: nothing raced"


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
