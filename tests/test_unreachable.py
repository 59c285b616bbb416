"""A server that cannot be reached, or drops the connection in mid-step: a failed step people see and can
retry, recorded with the state change before anyone is told; and step leases judged by the database's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.mailserver import Selection
from bot.core.runbook import SYSTEM, Runbook
from bot.core.stepping import LEASE
from bot.core.table import Event, State, person_events
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.errors import AuthFailed, CommandTimeout, ExecutorError, HostKeyMismatch, HostUnreachable
from storage.db import make_engine, upgrade
from storage.repository import Repository
from tests.conftest import DIRECTOR, OPERATOR, SECRET_KEY, make_config
from tests.fakes import FakeMailServer

REFUSED = HostUnreachable("127.0.0.1", "cannot connect to port 22: ConnectionRefusedError: [Errno 111]")


class Link:
    """Connects to the fake server only while `up` (else raises `error`); counts the attempts."""

    def __init__(self, server: FakeMailServer, *, up: bool = True, error: ExecutorError = REFUSED) -> None:
        self.server, self.up, self.error, self.connects = server, up, error, 0

    def __call__(self, name: str) -> FakeMailServer:
        self.connects += 1
        if not self.up:
            raise self.error
        return self.server


def runbook_on(tmp_path, repo, link, notifier, clock) -> Runbook:
    return Runbook(
        config=make_config(tmp_path),
        repository=repo,
        servers=link,
        notifier=notifier,
        vault=Vault(SECRET_KEY),
        clock=clock,
    )


@pytest.mark.parametrize(
    "error",
    [
        REFUSED,
        AuthFailed("127.0.0.1", "the server refused the key for user 'root'"),
        HostKeyMismatch("127.0.0.1", "host key changed: got SHA256:x, known_hosts has SHA256:y"),
        CommandTimeout("127.0.0.1", "true did not finish in time; its channel was closed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_unreachable_server_fails_the_step_visibly_and_retry_finishes_it(
    tmp_path, repo, server, notifier, clock, error
):
    link = Link(server, up=False, error=error)
    runbook = runbook_on(tmp_path, repo, link, notifier, clock)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert incident.state == State.FAILED and incident.failed_state == State.DIAGNOSING
    assert incident.failure == f"diagnose: {error}"
    assert Event.RETRY in person_events(incident.state)  # the message offers Retry
    assert notifier.changes[-1] == (incident.id, State.FAILED)
    assert (incident.id, f":x: diagnose failed: {error}") in notifier.logs
    assert [(r.step, r.status) for r in incident.steps] == [("diagnose", "failed")]

    # A failed step waits for a person: the scheduler does not hammer the server behind their back.
    connects = link.connects
    Upkeep(runbook).run_due()
    assert link.connects == connects and runbook.get(incident.id).state == State.FAILED

    incident = runbook.retry(incident.id, actor=OPERATOR)  # still down: fails again, still retryable
    assert incident.state == State.FAILED and [r.status for r in incident.steps] == ["failed", "failed"]

    link.up = True
    incident = runbook.retry(incident.id, actor=OPERATOR)
    assert incident.state == State.AWAITING_APPROVAL and incident.suspect_address == "victim@example.org"
    assert [r.status for r in incident.steps if r.step == "diagnose"] == ["failed", "failed", "done"]
    incident = runbook.approve(incident.id, actor=DIRECTOR, account="victim@example.org")
    assert incident.state == State.MONITORING
    assert all(m.login != "victim" for m in server.messages)


class CutServer(FakeMailServer):
    """Drops the SSH connection right after the first bulk delete reached the server."""

    cut = True

    def delete(self, selection: Selection) -> int:
        deleted = super().delete(selection)
        if self.cut:
            self.cut = False
            raise HostUnreachable(self.name, "SSH connection lost while reading output (postsuper)")
        return deleted


def test_a_step_cut_in_the_middle_is_re_checked_on_retry_not_run_twice(tmp_path, repo, notifier, clock):
    server = CutServer()
    server.flood("victim", 300, forged=60, to_account=20)
    runbook = runbook_on(tmp_path, repo, Link(server), notifier, clock)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR, account="victim@example.org")
    assert incident.state == State.FAILED and incident.failed_state == State.CLEANING_UP
    assert "delete_from: mail1: SSH connection lost" in incident.failure
    incident = runbook.retry(incident.id, actor=OPERATOR)
    assert incident.state == State.MONITORING
    delete_from = [r for r in incident.steps if r.step == "delete_from"]
    assert [r.status for r in delete_from] == ["failed", "done"] and delete_from[-1].summary["verified"]
    by_sender = "Selection(sender='victim@example.org', recipient=None, sasl_login=None)"
    assert server.calls_to("delete").count(by_sender) == 1  # re-checked on the server, not run again


def test_the_failure_is_committed_with_the_state_before_anyone_is_told(tmp_path, repo, server, clock):
    """Another replica looking at the incident while people are being told must find it failed, not runnable."""
    other_link = Link(server, up=False)

    class Watching:
        def __init__(self):
            self.seen: list[tuple[str, str]] = []

        def incident_changed(self, incident):
            return None

        def step_logged(self, incident, text):
            if "failed" in text:
                now = repo.get(incident_id=incident.id)
                self.seen.append((now.state, now.steps[-1].status))
                Upkeep(other).run_due()  # the other replica's scheduler tick, right then

        def deliver_password(self, incident, account, password):  # pragma: no cover - not reached
            raise AssertionError

        def withdraw_password(self, incident, ref):
            pass

    watching = Watching()
    other = runbook_on(tmp_path, repo, other_link, watching, clock)
    runbook = runbook_on(tmp_path, repo, Link(server, up=False), watching, clock)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert watching.seen == [(State.FAILED, "failed")]
    assert other_link.connects == 0  # the other replica did not run the failed step again
    assert [r.status for r in runbook.get(incident.id).steps] == ["failed"]


# -- leases: the database's clock decides --------------------------------------------------------


def crashed_delete(runbook, repo, server, *, lease: timedelta):
    """An approved incident whose delete_from another worker started (and applied) under `lease`."""
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.fire(incident.id, Event.APPROVE, actor=DIRECTOR, run=False)
    server.delete(Selection(sender="victim@example.org"))
    repo.start_step(
        incident_id=incident.id,
        phase=incident.phase,
        step="delete_from",
        attempt=1,
        actor=SYSTEM,
        now=runbook.now(),
        owner="another-host:1",
        lease=lease,
    )
    return incident


def test_a_live_lease_is_left_alone_even_when_this_host_s_clock_is_far_ahead(runbook, repo, server, clock):
    incident = crashed_delete(runbook, repo, server, lease=LEASE)
    clock.now = datetime.now(UTC) + timedelta(days=1)  # this host's clock runs a day fast
    deletes = len(server.calls_to("delete"))
    incident = Upkeep(runbook).run_due()[0]
    assert incident.state == State.CLEANING_UP
    assert [r.status for r in incident.steps if r.step == "delete_from"] == ["started"]
    assert len(server.calls_to("delete")) == deletes  # nothing ran beside the other worker


def test_a_lease_run_out_on_the_database_clock_is_taken_over_even_when_this_host_s_clock_is_behind(
    runbook, repo, server, clock
):
    incident = crashed_delete(runbook, repo, server, lease=-timedelta(seconds=1))  # its worker died
    clock.now = datetime(2000, 1, 1, tzinfo=UTC)  # this host's clock runs years slow
    incident = Upkeep(runbook).run_due()[0]
    assert incident.state == State.MONITORING
    delete_from = [r for r in incident.steps if r.step == "delete_from"]
    assert [r.status for r in delete_from] == ["done"] and delete_from[0].summary["verified"]


def test_only_one_worker_takes_over_a_step_whose_lease_ran_out(database_url):
    upgrade(database_url)
    repo = Repository(make_engine(database_url))
    incident = repo.open_incident(server="mail1", opened_by=OPERATOR, state="cleaning_up", now=datetime.now(UTC))
    common = dict(incident_id=incident.id, phase=0, actor=SYSTEM, now=datetime.now(UTC), attempt=1)
    live = repo.start_step(step="delete_from", owner="a", lease=LEASE, **common)
    dead = repo.start_step(step="delete_to", owner="a", lease=-timedelta(seconds=1), **common)
    assert not repo.claim_step(step_id=live.id, owner="b", lease=LEASE)
    assert repo.claim_step(step_id=dead.id, owner="b", lease=LEASE)
    assert not repo.claim_step(step_id=dead.id, owner="c", lease=LEASE)  # b holds it now
    assert not repo.renew_lease(step_id=dead.id, owner="a", lease=LEASE)  # a lost it for good
    assert repo.renew_lease(step_id=dead.id, owner="b", lease=LEASE)


def test_a_server_slow_to_fail_its_connect_does_not_stall_the_others():
    import threading

    from bot.core.pool import ServerPool

    hanging, fast = threading.Event(), FakeMailServer(name="mail2")

    def connect(name: str) -> FakeMailServer:
        if name == "mail1":
            hanging.wait(10)  # a host that drops packets: the connect waits for its timeout
            raise HostUnreachable(name, "cannot connect to port 22: TimeoutError: timed out")
        return fast

    pool = ServerPool(connect)
    slow = threading.Thread(target=lambda: pytest.raises(HostUnreachable, pool.get, "mail1"))
    slow.start()
    try:
        got: list[FakeMailServer] = []
        other = threading.Thread(target=lambda: got.append(pool.get("mail2")))
        other.start()
        other.join(2)
        assert got == [fast]  # answered while mail1 still hangs
    finally:
        hanging.set()
        slow.join()
