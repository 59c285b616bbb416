"""A real `mailfix` process killed with SIGKILL in the middle of a server-changing step, then restarted."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.core.runbook import SYSTEM, Runbook
from bot.core.table import Event, State
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from storage.db import make_engine, upgrade
from storage.models import StepRun
from storage.repository import Repository
from tests.clitools import fake_env, spawn
from tests.conftest import DIRECTOR, OPERATOR, SECRET_KEY, make_config
from tests.fakes import FakeMailServer, RecordingNotifier


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


@dataclass(frozen=True)
class Kill:
    """Where a real `mailfix run` is killed: the step, how the test brings the incident to it, the fake's
    call to block after (its nth), and how many times that call runs in the whole incident."""

    step: str
    setup: str  # contain, cleanup, release, restart, reboot
    block_after: str
    calls: int  # the call's count at the end: a verified step runs once, an idempotent one once more


KILLS = [
    Kill("hold_from", "contain", "hold", 2),
    Kill("hold_login", "contain", "hold#2", 2),
    Kill("block_login", "contain", "block_login", 1),
    Kill("kick_sessions", "contain", "kick_sessions", 3),  # idempotent: kicking again finds nobody
    Kill("change_password", "cleanup", "change_password", 2),  # idempotent: the same stored password again
    Kill("kick_sessions", "cleanup", "kick_sessions#2", 3),
    Kill("delete_from", "cleanup", "delete", 3),
    Kill("delete_login", "cleanup", "delete#2", 3),
    Kill("delete_to", "cleanup", "delete#3", 3),
    Kill("unblock_login", "cleanup", "unblock_login", 1),
    Kill("flush_queue", "cleanup", "flush_queue", 2),  # idempotent: asks Postfix to retry the queue now
    Kill("purge_inbox", "cleanup", "purge_inbox", 1),
    Kill("release_held", "release", "release#2", 2),  # from and login, once each
    Kill("unblock_login", "release", "unblock_login", 1),
    Kill("restart_postfix", "restart", "restart", 2),  # idempotent: a second restart of a running Postfix
    Kill("flush_queue", "restart", "flush_queue#2", 3),
    Kill("reboot", "reboot", "reboot", 1),  # verified by the boot ID
]
FAST = dict(monitor_minutes=0.02, restart_monitor_minutes=0.02, check_interval_seconds=0.2)


def bring_to(runbook: Runbook, setup: str) -> int:
    """Drive incident 1 in this process to the state whose steps the killed process will run; return its id."""
    if setup == "contain":
        incident = runbook.repo.open_incident(server="mail1", opened_by=OPERATOR, state=State.OPENED, now=runbook.now())
        return runbook.fire(incident.id, Event.DIAGNOSE, actor=OPERATOR, run=False).id
    incident = runbook.start(server="mail1", actor=OPERATOR)
    if setup == "cleanup":
        return runbook.fire(incident.id, Event.APPROVE, actor=DIRECTOR, run=False).id
    if setup == "release":
        return runbook.fire(incident.id, Event.REJECT, actor=DIRECTOR, run=False).id
    incident = runbook.approve(incident.id, actor=DIRECTOR, account="victim@example.org")
    if setup == "restart":
        return runbook.fire(incident.id, Event.NOT_NORMAL, actor=SYSTEM, run=False).id
    incident = runbook.fire(incident.id, Event.NOT_NORMAL_AFTER_RESTART, actor=SYSTEM, run=False)
    return runbook.fire(incident.id, Event.APPROVE_REBOOT, actor=DIRECTOR, run=False).id


def lease_run_out(repo: Repository) -> None:
    """The killed worker's lease runs out (the lease tests wait for it; here it is set in the past)."""
    with repo.engine.begin() as db:
        past = datetime(2000, 1, 1, tzinfo=UTC)
        db.execute(update(StepRun).where(StepRun.status == "started").values(lease_until=past))


@pytest.mark.parametrize("kill", KILLS, ids=lambda k: f"{k.step}-{k.setup}")
def test_a_bot_killed_in_any_server_changing_step_finishes_the_incident_running_the_step_once(tmp_path, kill):
    env = fake_env(tmp_path)
    state = Path(env["FAKE_MAILSERVER_STATE"])
    repo = Repository(make_engine(env["MAILFIX_DATABASE_URL"]))
    upgrade(env["MAILFIX_DATABASE_URL"])
    runbook = Runbook(
        config=make_config(tmp_path, **FAST),
        repository=repo,
        servers=lambda name: FakeMailServer.from_file(state),
        notifier=RecordingNotifier(),
        vault=Vault(SECRET_KEY),
    )
    incident_id = bring_to(runbook, kill.setup)

    kill_when_blocked(spawn(env, "alt", "run", block_after=kill.block_after), state)
    killed = [r for r in repo.get(incident_id=incident_id).steps if r.status == "started"]
    assert [r.step for r in killed] == [kill.step]  # killed inside this very step, after the server changed
    lease_run_out(repo)
    finish(spawn(env, "alt", "run", "--once"))  # a restarted bot resumes the incident

    incident = runbook.get(incident_id)
    if incident.state == State.AWAITING_APPROVAL:  # containment done: the director approves, mailfix finishes
        runbook.approve(incident_id, actor=DIRECTOR, account="victim@example.org")
    # "Not this account" ends in monitoring the server without it (whose released mail floods the queue).
    done = State.MONITORING if kill.setup == "release" else State.RESOLVED
    deadline = time.monotonic() + 30
    while (incident := runbook.get(incident_id)).state != done:
        assert time.monotonic() < deadline, incident.state
        Upkeep(runbook).run_due()
        time.sleep(0.1)

    server = FakeMailServer.from_file(state)
    assert len(server.calls_to(kill.block_after.partition("#")[0])) == kill.calls
    runs = [r for r in incident.steps if r.step == kill.step and r.phase == killed[0].phase]
    assert [(r.id, r.status) for r in runs] == [(killed[0].id, "done")]  # the killed attempt, finished once
    assert "victim" not in server.blocked
    if kill.setup == "release":  # "not this account": its mail goes out again, nothing of it deleted
        assert sum(m.login == "victim" for m in server.messages) == 300 and server.calls_to("delete") == []
        assert all(m.queue != "hold" for m in server.messages)
    else:
        assert all(m.login != "victim" and "victim@example.org" not in m.recipients for m in server.messages)
        assert len(set(server.password_digests)) == 1 and server.inbox["victim"] == 0
    if kill.setup == "reboot":
        assert server.boots == 2


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
