"""The runbook state machine against the fake mail server."""

from __future__ import annotations

import threading

import pytest

from bot.core.mailserver import Selection
from bot.core.runbook import SYSTEM
from bot.core.table import TRANSITIONS, Event, Guard, State, next_state
from bot.core.upkeep import Upkeep
from bot.errors import (
    AlreadyDone,
    ApprovalExpired,
    InvalidAccount,
    InvalidTransition,
    NotAuthorized,
    ServerBusy,
    UnknownServer,
)
from storage.models import Incident
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR, STRANGER


def done_steps(incident: Incident, name: str) -> int:
    return sum(1 for r in incident.steps if r.step == name and r.status == "done")


def test_start_diagnoses_and_contains_the_flood_before_approval(runbook, server, clock):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert incident.state == State.AWAITING_APPROVAL
    assert incident.suspect_address == "victim@example.org"
    assert incident.suspect_login == "victim"
    held = [m for m in server.messages if m.queue == "hold"]
    assert len(held) == 300  # forged senders too, through the SASL login
    assert all(m.login == "victim" for m in held)
    assert "victim" in server.blocked
    assert incident.contained_at is not None
    assert [a.what for a in incident.approvals] == ["cleanup"]


def test_a_whole_incident_runs_every_step_once_and_resolves(runbook, server, notifier, clock):
    incident = runbook.start(server=None, actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.MONITORING
    assert not any(m.login == "victim" or "victim@example.org" in m.recipients for m in server.messages)
    assert sum(1 for m in server.messages if m.login == "alice") == 5
    assert server.inbox["victim"] == 0
    assert "victim" not in server.blocked
    assert notifier.passwords == [("victim@example.org", server.passwords["victim"])]
    assert incident.password_ciphertext is None  # the user confirmed: erased
    for name in ("change_password", "delete_from", "delete_login", "delete_to", "purge_inbox", "notify_user"):
        assert done_steps(incident, name) == 1, name
    for _ in range(31):
        clock.advance(seconds=30)
        incident = Upkeep(runbook).tick(incident.id)
    assert incident.state == State.RESOLVED
    assert incident.closed_at is not None
    assert server.calls_to("change_password") == ["victim"]


def test_every_transition_in_the_table_is_reachable_by_fire(runbook, repo, clock):
    for number, ((state, event), rule) in enumerate(TRANSITIONS.items()):
        incident = repo.open_incident(server=f"s{number}", opened_by=OPERATOR, state=state, now=clock())
        if state == State.FAILED:
            repo.set_fields(incident_id=incident.id, failed_state=State.CONTAINING)
        actor = {Guard.SYSTEM: SYSTEM, Guard.OPERATOR: OPERATOR}.get(rule.guard, DIRECTOR2)
        if event in (Event.APPROVE, Event.APPROVE_REBOOT):  # an approval needs a request to answer
            runbook.fire(incident.id, Event.RENEW, actor=OPERATOR, run=False)
        after = runbook.fire(incident.id, event, actor=actor, run=False, pick="bob@example.org", reason="x")
        assert after.state == (rule.next or State.CONTAINING), (state, event)


@pytest.mark.parametrize("state", list(State))
def test_every_illegal_pair_says_what_cannot_be_done(state):
    for event in Event:
        if (state, event) in TRANSITIONS:
            continue
        with pytest.raises(InvalidTransition) as err:
            next_state(state, event)
        assert str(err.value) == f"Can't {event.replace('_', ' ')} when {state.replace('_', ' ')}"


def test_only_directors_approve_and_not_the_one_who_opened(runbook, server):
    incident = runbook.start(server="mail1", actor=DIRECTOR)
    with pytest.raises(NotAuthorized, match="only the IT director"):
        runbook.approve(incident.id, actor=OPERATOR)
    with pytest.raises(NotAuthorized, match="another director must approve"):
        runbook.approve(incident.id, actor=DIRECTOR)
    assert runbook.get(incident.id).state == State.AWAITING_APPROVAL
    assert server.calls_to("change_password") == []
    assert runbook.approve(incident.id, actor=DIRECTOR2).state == State.MONITORING


def test_self_approval_is_allowed_when_configured(make_runbook):
    runbook = make_runbook(allow_self_approval=True)
    incident = runbook.start(server="mail1", actor=DIRECTOR)
    assert runbook.approve(incident.id, actor=DIRECTOR).state == State.MONITORING


def test_strangers_cannot_start_or_abort(runbook):
    with pytest.raises(NotAuthorized, match="only operators or directors"):
        runbook.start(server="mail1", actor=STRANGER)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    with pytest.raises(NotAuthorized):
        runbook.abort(incident.id, actor=STRANGER)
    runbook.repo.set_fields(incident_id=incident.id, state=State.MONITORING)
    with pytest.raises(NotAuthorized, match="fired by mailfix itself"):
        runbook.fire(incident.id, Event.NORMAL, actor=OPERATOR)


def test_unknown_server_and_a_second_incident_are_refused(runbook):
    with pytest.raises(UnknownServer, match="mail9"):
        runbook.start(server="mail9", actor=OPERATOR)
    first = runbook.start(server="mail1", actor=OPERATOR)
    with pytest.raises(ServerBusy, match=f"#{first.id}"):
        runbook.start(server="mail1", actor=OPERATOR)


def test_an_expired_approval_cannot_be_used_until_renewed(runbook, clock, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    clock.advance(minutes=31)
    with pytest.raises(ApprovalExpired):
        runbook.approve(incident.id, actor=DIRECTOR)
    assert server.calls_to("change_password") == []
    runbook.fire(incident.id, Event.RENEW, actor=OPERATOR)
    assert runbook.approve(incident.id, actor=DIRECTOR).state == State.MONITORING


def test_a_second_click_is_told_who_approved_first(runbook):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.approve(incident.id, actor=DIRECTOR)
    with pytest.raises(AlreadyDone, match=f"already approved by {DIRECTOR} at 03:00"):
        runbook.approve(incident.id, actor=DIRECTOR2)


def test_two_directors_approving_at_once_run_the_cleanup_once(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    barrier, outcomes = threading.Barrier(2), []

    def approve(actor: str) -> None:
        barrier.wait()
        try:
            runbook.approve(incident.id, actor=actor)
            outcomes.append("won")
        except AlreadyDone as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve, args=(a,)) for a in (DIRECTOR, DIRECTOR2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[1] == "won" and outcomes.count("won") == 1
    assert server.calls_to("change_password") == ["victim"]


def test_not_this_account_releases_unblocks_and_looks_again(runbook, server):
    server.flood("mallory", 150)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert incident.suspect_login == "victim"
    incident = runbook.reject(incident.id, actor=DIRECTOR)
    assert incident.state == State.AWAITING_APPROVAL
    assert incident.suspect_login == "mallory"
    assert "victim" not in server.blocked and "mallory" in server.blocked
    assert not any(m.queue == "hold" for m in server.messages if m.login == "victim")
    incident = runbook.reject(incident.id, actor=DIRECTOR)
    assert incident.state == State.MONITORING  # nobody else over the threshold


def test_picking_another_account_contains_that_one(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.reject(incident.id, actor=DIRECTOR, pick="alice")
    assert (incident.state, incident.suspect_address, incident.suspect_login) == (
        State.AWAITING_APPROVAL,
        "alice@example.org",
        "alice",
    )
    assert "alice" in server.blocked and "victim" not in server.blocked


def test_a_failed_step_can_be_retried_without_redoing_done_steps(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    server.fail_on = "delete"
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.FAILED
    assert "delete_from" in incident.failure
    server.fail_on = ""
    incident = runbook.retry(incident.id, actor=OPERATOR)
    assert incident.state == State.MONITORING
    assert server.calls_to("change_password") == ["victim"]


def test_a_torn_snapshot_that_shows_a_failed_step_before_its_failure_does_not_run_it_again(runbook, server):
    """Another replica's failure (the step failed, the incident FAILED) commits in one transaction, but a
    snapshot is read in two statements (the incident, then its steps): it can show the state before and
    the failed step after. Trusting it, a worker started the step again (CI saw two failed attempts)."""
    incident = runbook.start(server="mail1", actor=OPERATOR)
    server.fail_on = "delete"
    before = runbook.fire(incident.id, Event.APPROVE, actor=DIRECTOR, run=False)
    after = runbook.run_steps(incident.id)
    assert after.state == State.FAILED and before.state == State.CLEANING_UP
    torn = before
    torn.steps = list(after.steps)  # the state of the first statement, the steps of the second
    server.fail_on = ""  # the server would answer now: a re-run would reach it
    deletes = len(server.calls_to("delete"))
    runner = runbook._steps  # noqa: SLF001 - the step runner, fed the torn snapshot
    runner._get = lambda _id: torn  # noqa: SLF001
    assert runner.run_entry(torn) is False
    assert len(server.calls_to("delete")) == deletes
    assert [r.status for r in runbook.get(incident.id).steps if r.step == "delete_from"] == ["failed"]


def test_a_step_started_but_not_done_is_verified_not_rerun(runbook, server, repo, clock):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.fire(incident.id, Event.APPROVE, actor=DIRECTOR, run=False)
    # Simulate a crash after the delete reached the server but before "done" was written.
    server.delete(Selection(sender="victim@example.org"))
    repo.start_step(
        incident_id=incident.id,
        phase=incident.phase,
        step="delete_from",
        attempt=1,
        actor=SYSTEM,
        now=clock(),
    )
    calls_before = len(server.calls_to("delete"))
    incident = Upkeep(runbook).run_due()[0]
    assert incident.state == State.MONITORING
    delete_from = [r for r in incident.steps if r.step == "delete_from"]
    assert [r.status for r in delete_from] == ["done"]
    assert delete_from[0].summary["verified"]
    # delete_login and delete_to ran; delete_from did not run again.
    assert len(server.calls_to("delete")) == calls_before + 2


def test_monitoring_that_stays_bad_escalates_to_restart_then_reboot_approval(runbook, server, clock):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    server.flood("bob", 80)  # keeps the queue over normal_queue_size (50)
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident.id)
    assert incident.state == State.MONITORING and incident.monitor_round == 1
    assert server.calls_to("restart") == [""]
    clock.advance(minutes=6)
    incident = Upkeep(runbook).tick(incident.id)
    assert incident.state == State.AWAITING_REBOOT_APPROVAL
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.MONITORING and incident.monitor_round == 2
    assert server.calls_to("reboot") == [""]
    clock.advance(minutes=6)
    incident = Upkeep(runbook).tick(incident.id)
    assert incident.state == State.FAILED
    assert incident.failure.startswith("needs a human: mail is still not normal after a Postfix restart and a reboot")


def awaiting_reboot_approval(runbook, server, clock):
    """Return an incident whose queue stayed bad after the cleanup and the Postfix restart."""
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.approve(incident.id, actor=DIRECTOR)
    server.flood("bob", 80)
    for minutes in (16, 6):
        clock.advance(minutes=minutes)
        incident = Upkeep(runbook).tick(incident.id)
    assert incident.state == State.AWAITING_REBOOT_APPROVAL
    return incident


@pytest.mark.parametrize("rebooted", [False, True])
def test_a_reboot_cut_short_by_a_crash_is_told_apart_by_the_boot_id(runbook, server, repo, clock, rebooted):
    """Started but not done: a new boot ID means it happened; the same one means it never went out."""
    incident = awaiting_reboot_approval(runbook, server, clock)
    incident = runbook.fire(incident.id, Event.APPROVE_REBOOT, actor=DIRECTOR, run=False)
    assert incident.state == State.REBOOTING
    # The crash: the step was recorded and the boot ID saved, then the bot died (before or after the command).
    repo.start_step(incident_id=incident.id, phase=incident.phase, step="reboot", attempt=1, actor=SYSTEM, now=clock())
    repo.set_fields(incident_id=incident.id, boot_id_before_reboot=server.boot_id())
    if rebooted:
        server.reboot(deadline_seconds=60)
    incident = Upkeep(runbook).run_due()[0]
    assert incident.state == State.MONITORING
    assert server.calls_to("reboot") == [""]  # exactly one reboot either way
    reboot = [r for r in incident.steps if r.step == "reboot"]
    assert ("verified" in reboot[-1].summary) is rebooted


def test_a_server_that_does_not_come_back_from_the_reboot_fails_for_a_human(runbook, server, notifier, clock):
    incident = awaiting_reboot_approval(runbook, server, clock)
    server.fail_on = "reboot"
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.FAILED and incident.failed_state == State.REBOOTING
    assert "needs a human: mail1 did not come back after the reboot" in incident.failure
    assert any(f"<@{DIRECTOR}>" in text and ":sos:" in text for _, text in notifier.logs)


def test_a_new_flood_while_monitoring_is_reported_and_can_be_contained(runbook, server, notifier, clock):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.approve(incident.id, actor=DIRECTOR)
    first_password = server.passwords["victim"]
    server.flood("mallory", 150)
    for _ in range(2):
        clock.advance(seconds=30)
        Upkeep(runbook).tick(incident.id)
    alerts = [text for _, text in notifier.logs if "New flood from another account: mallory" in text]
    assert len(alerts) == 1
    incident = runbook.contain(incident.id, actor=OPERATOR, account="mallory")
    assert (incident.state, incident.suspect_login) == (State.AWAITING_APPROVAL, "mallory")
    assert "mallory" in server.blocked
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.MONITORING
    assert server.passwords["victim"] == first_password and server.passwords["mallory"] != first_password
    assert [address for address, _ in notifier.passwords] == ["victim@example.org", "mallory@example.org"]


def test_a_late_confirmation_never_erases_another_accounts_password(runbook, server, notifier, clock):
    notifier.confirm = False
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.approve(incident.id, actor=DIRECTOR)
    server.flood("mallory", 150)
    clock.advance(seconds=30)
    Upkeep(runbook).tick(incident.id)
    runbook.contain(incident.id, actor=OPERATOR, account="mallory")
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    # victim's unconfirmed message was withdrawn before mallory's password took the slot
    assert notifier.withdrawn == [incident.id] and incident.password_for == "mallory@example.org"
    assert runbook.confirm_password(incident.id, actor="UVICTIM01", account="victim@example.org") is False
    assert runbook.get(incident.id).password_ciphertext is not None
    assert runbook.confirm_password(incident.id, actor="UVICTIM01", account="mallory@example.org") is True
    assert runbook.get(incident.id).password_ciphertext is None


def test_without_hold_before_approval_nothing_changes_until_approved(make_runbook, server):
    runbook = make_runbook(hold_before_approval=False)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert incident.state == State.AWAITING_APPROVAL
    assert not any(m.queue == "hold" for m in server.messages) and not server.blocked
    assert {r.step: r.status for r in incident.steps}["hold_from"] == "skipped"


def test_the_scheduler_reminds_once_then_expires_an_unanswered_approval(runbook, notifier, clock):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    clock.advance(minutes=16)
    Upkeep(runbook).run_due()
    Upkeep(runbook).run_due()
    reminders = [text for _, text in notifier.logs if "Reminder" in text]
    assert len(reminders) == 1 and f"<@{DIRECTOR}>" in reminders[0]
    clock.advance(minutes=15)
    Upkeep(runbook).run_due()
    assert runbook.get(incident.id).approvals[-1].decision == "expired"
    with pytest.raises(ApprovalExpired):
        runbook.approve(incident.id, actor=DIRECTOR)
    with pytest.raises(InvalidTransition, match="has not expired"):
        runbook.fire(runbook.fire(incident.id, Event.RENEW, actor=OPERATOR).id, Event.RENEW, actor=OPERATOR)
    assert runbook.approve(incident.id, actor=DIRECTOR).state == State.MONITORING


def test_an_unconfirmed_password_is_withdrawn_after_the_configured_time(make_runbook, notifier, clock):
    runbook = make_runbook(monitor_minutes=120)  # still open when the password times out
    notifier.confirm = False
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.password_ciphertext is not None
    clock.advance(minutes=59)
    Upkeep(runbook).run_due()
    assert runbook.get(incident.id).password_ciphertext is not None
    clock.advance(minutes=2)
    Upkeep(runbook).run_due()
    assert runbook.get(incident.id).password_ciphertext is None
    assert notifier.withdrawn == [incident.id]
    assert runbook.confirm_password(incident.id, actor="UVICTIM01") is False


def test_the_director_who_picked_the_account_may_not_approve_its_cleanup(runbook):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.reject(incident.id, actor=DIRECTOR, pick="alice")
    with pytest.raises(NotAuthorized, match="you named this account"):
        runbook.approve(incident.id, actor=DIRECTOR)
    assert runbook.approve(incident.id, actor=DIRECTOR2).state == State.MONITORING


def test_a_malformed_pick_is_refused_before_anything_changes(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    calls = list(server.calls)
    with pytest.raises(InvalidAccount):
        runbook.reject(incident.id, actor=DIRECTOR, pick="bob; reboot")
    assert runbook.get(incident.id).state == State.AWAITING_APPROVAL and server.calls == calls
