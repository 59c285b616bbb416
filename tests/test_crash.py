"""A real `mailfix` process killed with SIGKILL in the middle of a server-changing step, then restarted."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.clitools import fake_env, spawn
from tests.fakes import FakeMailServer


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


def wait_blocked(process: subprocess.Popen[str], state: Path) -> None:
    marker = Path(f"{state}.blocked")
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)


def kill_when_blocked(process: subprocess.Popen[str], state: Path) -> None:
    wait_blocked(process, state)
    process.send_signal(signal.SIGKILL)
    process.wait()
    Path(f"{state}.blocked").unlink()


@pytest.mark.parametrize("step", ["delete", "change_password", "hold"])
def test_a_killed_step_is_verified_or_safely_repeated_after_restart(tmp_path, step):
    env = fake_env(tmp_path)
    state = Path(env["FAKE_MAILSERVER_STATE"])
    if step == "hold":
        kill_when_blocked(spawn(env, "alt", "start", block_after="hold"), state)
        finish(spawn(env, "alt", "run", "--once"))
    else:
        finish(spawn(env, "alt", "start"))
        kill_when_blocked(
            spawn(env, "boss", "approve", "1", "--account", "victim@example.org", block_after=step), state
        )
    finish(spawn(env, "alt", "run"))  # resumes the incident
    if step == "hold":
        finish(spawn(env, "boss", "approve", "1", "--account", "victim@example.org"))
        finish(spawn(env, "alt", "run"))
    server = FakeMailServer.from_file(state)
    status = finish(spawn(env, "alt", "status", "1"))
    assert "resolved" in status.splitlines()[0]
    report = json.loads(finish(spawn(env, "alt", "report", "1", "--format", "json")))
    timeline = [e["what"] for e in report["timeline"]]
    if step == "delete":
        # The delete reached the server before the kill: verified, not run again.
        assert (
            server.calls_to("delete").count("Selection(sender='victim@example.org', recipient=None, sasl_login=None)")
            == 1
        )
        assert timeline.count("step delete_from: done") == 1
    elif step == "change_password":
        # Re-set once more after the restart, with the same stored password: the user's matches the server's.
        assert server.calls_to("change_password") == ["victim", "victim"]
        assert len(server.password_digests) == 2 and len(set(server.password_digests)) == 1
    else:
        assert len(server.calls_to("hold")) == 2  # hold_from killed after applying, verified; hold_login ran
        assert timeline.count("step hold_from: done") == 1
    assert all(m.login != "victim" for m in server.messages)


def test_a_bot_killed_while_monitoring_keeps_the_same_deadline(tmp_path):
    from storage.db import make_engine
    from storage.repository import Repository

    env = fake_env(tmp_path, monitor_minutes=0.1)  # a 6-second window
    finish(spawn(env, "alt", "start"))
    finish(spawn(env, "boss", "approve", "1", "--account", "victim@example.org"))
    repo = Repository(make_engine(env["MAILFIX_DATABASE_URL"]))
    deadline = repo.get(incident_id=1).monitor_deadline
    runner = spawn(env, "alt", "run")
    until = time.monotonic() + 20
    while len(repo.get(incident_id=1).checks) < 2:
        assert time.monotonic() < until and runner.poll() is None
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    incident = repo.get(incident_id=1)
    assert incident.state == "monitoring" and incident.monitor_deadline == deadline
    finish(spawn(env, "alt", "run"))
    incident = repo.get(incident_id=1)
    assert incident.state == "resolved" and incident.monitor_deadline == deadline
    assert incident.closed_at >= deadline  # went on to the same deadline: not from zero, not skipped
    assert (incident.closed_at - deadline).total_seconds() < 10


def test_a_second_worker_leaves_a_running_step_alone_until_its_lease_runs_out(tmp_path):
    env = fake_env(tmp_path)
    state = Path(env["FAKE_MAILSERVER_STATE"])
    finish(spawn(env, "alt", "start"))
    slow = spawn(
        env, "boss", "approve", "1", "--account", "victim@example.org", block_after="delete"
    )  # alive, stuck inside delete_from
    wait_blocked(slow, state)
    time.sleep(6)  # past a lease renewal
    finish(spawn(env, "alt", "run", "--once"))  # another process's scheduler tick
    server = FakeMailServer.from_file(state)
    assert len(server.calls_to("delete")) == 1 and server.calls_to("change_password") == ["victim"]
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    Path(f"{state}.blocked").unlink()
    finish(spawn(env, "alt", "run"))  # once the lease ran out: verified, then the rest
    server = FakeMailServer.from_file(state)
    assert len(server.calls_to("delete")) == 3  # delete_from once, then delete_login and delete_to
    assert "resolved" in finish(spawn(env, "alt", "status", "1")).splitlines()[0]
