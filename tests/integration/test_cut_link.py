"""The SSH connection dies in the middle of a bulk delete of a large flood (the lab's sshd process
serving mailfix is killed): the step fails with its reason, the retry re-checks the queue and
completes it, and the report counts every message deleted, by both attempts."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bot.terminal import cli
from storage.db import make_engine
from storage.repository import Repository
from tests.clitools import write_server_config
from tests.conftest import SECRET_KEY
from tests.integration.flood import LEGIT_USERS, flood, queue_entries
from tests.integration.lab import Lab, pid_in

FLOOD = 30_000  # large enough that deleting it takes seconds


def sshd_sessions(lab: Lab) -> list[int]:
    """Return the sshd processes that serve connections: the listener's sshd descendants, not the listener."""
    listener = pid_in(lab.dir / "sshd.pid")
    assert listener is not None, "the lab's sshd is not running"
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: list[int] = []
    for pid in parent:
        ancestor = parent.get(pid)
        while ancestor not in (None, 0, 1, listener):
            ancestor = parent.get(ancestor)
        try:
            is_sshd = Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
        except OSError:
            continue
        if ancestor == listener and is_sshd:
            found.append(pid)
    return found


def held(lab: Lab) -> int:
    """Return how many messages the hold queue holds (a directory listing: cheap enough to poll)."""
    return sum(1 for _ in os.scandir(lab.queue_dir / "hold"))


@pytest.fixture
def mailfix(clean_lab, tmp_path, monkeypatch):
    """Run `mailfix` commands in this process against the lab as a given local user; returns (code, output)."""
    settings = "flood_threshold = 200\nnormal_queue_size = 100\nmonitor_minutes = 0.01\ncheck_interval_seconds = 0.2"
    config = write_server_config(tmp_path, clean_lab.server_config(user="mailfixop"), settings=settings)
    monkeypatch.setenv("MAILFIX_CONFIG", str(config))
    monkeypatch.setenv("MAILFIX_DATABASE_URL", f"sqlite:///{tmp_path}/mailfix.db")
    monkeypatch.setenv("MAILFIX_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("MAILFIX_MAILSERVER", raising=False)

    def run(user: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("SUDO_USER", user)  # the tests run as root
        out = io.StringIO()
        return cli.main(list(argv), out=out), out.getvalue()

    return run


def test_a_delete_whose_ssh_connection_dies_half_way_is_re_checked_and_completed_with_the_true_count(
    clean_lab, mailfix, tmp_path
):
    lab = clean_lab
    report = flood(lab, count=FLOOD, forged_fraction=0.0, legit=30, bounces=10, inbox=2, timeout=600)
    people = {f"{user}@{lab.domain}" for user in LEGIT_USERS}
    legit = {e["queue_id"] for e in queue_entries(lab) if e["sender"] in people}
    assert len(legit) == report.legit
    code, out = mailfix("alt", "start", "lab")
    assert code == 0, out
    assert held(lab) == FLOOD  # contained: the whole flood is on hold, waiting for the director

    repo = Repository(make_engine(f"sqlite:///{tmp_path}/mailfix.db"))
    approved: list[tuple[int, str]] = []
    approving = threading.Thread(
        target=lambda: approved.append(mailfix("boss", "approve", "1", "--account", f"victim@{lab.domain}"))
    )
    approving.start()
    deadline = time.monotonic() + 300
    while not any(r.step == "delete_from" for r in repo.get(incident_id=1).steps) or held(lab) > FLOOD - 500:
        assert approving.is_alive() and time.monotonic() < deadline, approved
        time.sleep(0.01)
    sessions = sshd_sessions(lab)
    assert sessions, "no sshd process serves mailfix's connection"
    for pid in sessions:
        os.kill(pid, signal.SIGKILL)  # the link dies under postsuper
    at_kill = held(lab)
    approving.join(300)

    out = approved[0][1]
    incident = repo.get(incident_id=1)
    assert incident.state == "failed" and incident.failed_state == "cleaning_up"
    assert incident.failure.startswith(f"delete_from: {lab.host}: SSH connection lost")
    assert "retrying automatically (attempt 2 of 5) in 30 s" in incident.failure
    assert "delete_from failed: 127.0.0.1: SSH connection lost" in out  # what the thread says
    # Settled (what was already deleting on the server finishes), then a person retries, as the thread offers.
    settled = held(lab)
    while time.sleep(1) or held(lab) != settled:
        settled = held(lab)
    assert 0 < at_kill < FLOOD and 0 < settled < FLOOD, (at_kill, settled)  # cut half way

    code, out = mailfix("alt", "retry", "1")
    assert code == 0, out
    assert mailfix("alt", "run")[0] == 0
    data = json.loads(mailfix("alt", "report", "1", "--format", "json")[1])
    assert data["incident"]["state"] == "resolved"
    delete_from = [r for r in repo.get(incident_id=1).steps if r.step == "delete_from"]
    assert [r.status for r in delete_from] == ["failed", "done"]
    assert delete_from[-1].summary["deleted"] == FLOOD  # the cut attempt's part and the completion's
    assert data["counts"]["deleted"] == report.from_login + report.bounces
    remaining = queue_entries(lab)
    assert {e["queue_id"] for e in remaining} == legit  # none of the flood, every legitimate message
    print(f"\ncut at {FLOOD - at_kill} of {FLOOD} deleted; {FLOOD - settled} before the retry")
