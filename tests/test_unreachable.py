"""A server that cannot be reached, or drops the connection in mid-step: a failed step people see and can
retry, recorded with the state change before anyone is told; and step leases judged by the database's clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.mailserver import Selection
from bot.core.report import report_json
from bot.core.runbook import SYSTEM, Runbook
from bot.core.stepping import LEASE
from bot.core.table import Event, State, person_events
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.errors import AuthFailed, CommandTimeout, ExecutorError, HostKeyMismatch, HostUnreachable
from storage.db import make_engine, upgrade
from storage.repository import Repository
from tests.conftest import DIRECTOR, OPERATOR, SECRET_KEY, make_config
from tests.fakes import FakeMailServer, RecordingNotifier

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


TIMEOUT = CommandTimeout("127.0.0.1", "postqueue did not finish in time; its channel was closed")
NEEDS_A_PERSON = [
    AuthFailed("127.0.0.1", "the server refused the key for user 'root'"),
    HostKeyMismatch("127.0.0.1", "host key changed: got SHA256:x, known_hosts has SHA256:y"),
]
AUTO = "; retrying automatically (attempt 2 of 5) in 30 s, at 03:00:30 UTC"


@pytest.mark.parametrize("error", [REFUSED, *NEEDS_A_PERSON, TIMEOUT], ids=lambda e: type(e).__name__)
def test_an_unreachable_server_fails_the_step_visibly_and_retry_finishes_it(
    tmp_path, repo, server, notifier, clock, error
):
    link = Link(server, up=False, error=error)
    runbook = runbook_on(tmp_path, repo, link, notifier, clock)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert incident.state == State.FAILED and incident.failed_state == State.DIAGNOSING
    passing = error in (REFUSED, TIMEOUT)  # a refused key or host key needs a person: no automatic retry
    assert incident.failure == f"diagnose: {error}" + (AUTO if passing else "")
    assert Event.RETRY in person_events(incident.state)  # the message offers Retry
    assert notifier.changes[-1] == (incident.id, State.FAILED)
    assert (incident.id, f":x: diagnose failed: {error}" + (AUTO if passing else "")) in notifier.logs
    assert [(r.step, r.status) for r in incident.steps] == [("diagnose", "failed")]

    # Before its pause is over (or ever, for a fault that needs a person) the scheduler leaves it alone.
    connects = link.connects
    clock.advance(seconds=29)
    Upkeep(runbook).run_due()
    assert link.connects == connects and runbook.get(incident.id).state == State.FAILED
    if not passing:
        clock.advance(hours=1)
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


def test_the_scheduler_retries_a_passing_fault_with_backoff_then_leaves_it_to_a_person(
    tmp_path, repo, server, notifier, clock
):
    link = Link(server, up=False)
    runbook = runbook_on(tmp_path, repo, link, notifier, clock)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    for attempt, pause in [(2, 30), (3, 60), (4, 120), (5, 300)]:
        when = f"{clock() + timedelta(seconds=pause):%H:%M:%S}"
        said = f"retrying automatically (attempt {attempt} of 5) in {pause} s, at {when} UTC"
        assert runbook.get(incident.id).failure == f"diagnose: {REFUSED}; {said}"  # the incident message
        assert [text for _, text in notifier.logs].count(f":x: diagnose failed: {REFUSED}; {said}") == 1
        clock.advance(seconds=pause - 1)
        Upkeep(runbook).run_due()
        assert link.connects == attempt - 1  # not before the pause is over
        clock.advance(seconds=1)
        Upkeep(runbook).run_due()
        assert link.connects == attempt
    incident = runbook.get(incident.id)
    gave_up = "gave up retrying automatically after 5 attempts: retry it when the server answers"
    assert incident.failure.endswith(gave_up)
    clock.advance(hours=2)
    Upkeep(runbook).run_due()  # no sixth attempt behind people's back
    assert link.connects == 5 and runbook.get(incident.id).state == State.FAILED
    audit = [(e.actor, e.action) for e in repo.audit_events(incident_id=incident.id)]
    assert audit.count((SYSTEM, "auto_retry")) == 4 and audit.count((SYSTEM, "step_failed")) == 5

    link.up = True  # a person's Retry finishes it, and a new failure would start a new series
    incident = runbook.retry(incident.id, actor=OPERATOR)
    assert incident.state == State.AWAITING_APPROVAL
    assert [r.status for r in incident.steps if r.step == "diagnose"] == ["failed"] * 5 + ["done"]


class Meeting(Repository):
    """A repository whose audit reads wait for the other replica's once, when armed: both schedulers
    then decide on the same failure before either acts."""

    def __init__(self, engine, barrier: threading.Barrier) -> None:
        super().__init__(engine)
        self.barrier, self.armed = barrier, False
        self.met: list[int] = []

    def audit_events(self, *, incident_id):
        events = super().audit_events(incident_id=incident_id)
        if self.armed:
            self.armed = False
            self.met.append(self.barrier.wait(10))  # raises BrokenBarrierError if the other never came
        return events


def test_two_replicas_schedulers_retry_a_failed_step_once(tmp_path, database_url, server, clock):
    upgrade(database_url)
    barrier = threading.Barrier(2)
    repos = [Meeting(make_engine(database_url), barrier) for _ in range(2)]
    link, notifier = Link(server, up=False), RecordingNotifier()
    first, second = (runbook_on(tmp_path, repo, link, notifier, clock) for repo in repos)
    incident = first.start(server="mail1", actor=OPERATOR)
    assert link.connects == 1
    clock.advance(seconds=30)
    for repo in repos:
        repo.armed = True
    replicas = [threading.Thread(target=Upkeep(rb).run_due) for rb in (first, second)]
    for thread in replicas:
        thread.start()
    for thread in replicas:
        thread.join(30)
    assert sorted(repos[0].met + repos[1].met) == [0, 1]  # both read the due failure before either retried
    assert link.connects == 2  # one retry reached for the server, not two
    audit = [e.action for e in repos[0].audit_events(incident_id=incident.id)]
    assert audit.count("auto_retry") == 1 and audit.count("step_failed") == 2
    assert sum("(attempt 3 of 5)" in text for _, text in notifier.logs) == 1  # announced once
    assert [r.status for r in first.get(incident.id).steps] == ["failed", "failed"]


def test_a_refused_restart_is_not_retried_automatically_it_is_a_director_s_decision(
    tmp_path, repo, server, notifier, clock
):
    runbook = runbook_on(tmp_path, repo, Link(server, up=False), notifier, clock)
    incident = repo.open_incident(server="mail1", opened_by=OPERATOR, state=State.RESTARTING, now=clock())
    incident = runbook.run_steps(incident.id)
    assert incident.state == State.FAILED and "retrying" not in incident.failure
    clock.advance(hours=1)
    Upkeep(runbook).run_due()
    assert runbook.get(incident.id).state == State.FAILED


class CutServer(FakeMailServer):
    """Drops the SSH connection in the first bulk delete, after it deleted `share` of the selection."""

    share = 1.0

    def delete(self, selection: Selection, *, progress=None) -> int:
        if self.calls_to("delete"):
            return super().delete(selection, progress=progress)
        matching = [m for m in self.messages if self._matches(m, selection)]
        cut_at = round(len(matching) * self.share)
        gone = {id(m) for m in matching[:cut_at]}
        self.calls.append(("delete", repr(selection)))
        self.messages = [m for m in self.messages if id(m) not in gone]
        raise HostUnreachable(self.name, "SSH connection lost while reading output (postsuper)")


@pytest.mark.parametrize("share", [1.0, 0.4], ids=["cut-after-all", "cut-part-way"])
def test_a_delete_cut_in_the_middle_is_re_checked_and_completed_by_the_automatic_retry_with_its_true_count(
    tmp_path, repo, notifier, clock, share
):
    server = CutServer()
    server.share = share
    server.flood("victim", 300, forged=60, to_account=20)
    server.flood("alice", 5)
    runbook = runbook_on(tmp_path, repo, Link(server), notifier, clock)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR, account="victim@example.org")
    assert incident.state == State.FAILED and incident.failed_state == State.CLEANING_UP
    assert "delete_from: mail1: SSH connection lost" in incident.failure
    assert "retrying automatically (attempt 2 of 5) in 30 s" in incident.failure
    assert server.count(Selection(sender="victim@example.org")) == 240 - round(240 * share)

    clock.advance(seconds=30)
    incident = Upkeep(runbook).run_due()[0]  # the scheduler's own retry
    assert incident.state == State.MONITORING
    delete_from = [r for r in incident.steps if r.step == "delete_from"]
    assert [r.status for r in delete_from] == ["failed", "done"]
    assert delete_from[-1].summary["deleted"] == 240  # both parts: the cut attempt's and the completion's
    by_sender = "Selection(sender='victim@example.org', recipient=None, sasl_login=None)"
    # Re-checked on the server: run again only for what the cut attempt had left.
    assert server.calls_to("delete").count(by_sender) == (1 if share == 1.0 else 2)
    report = report_json(incident, repo.audit_events(incident_id=incident.id))
    assert report["counts"]["deleted"] == 300 + 20
    assert all(m.login != "victim" for m in server.messages) and len(server.messages) == 5  # alice's stay


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

        def catch_up(self):
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
