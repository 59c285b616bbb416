"""The right account, always: a request counts only while the incident still asks it, a pick or contain
names only an account mailfix offered and may touch, and a restart or reboot is never retried without a
director. Runbook level, against the fake mail server."""

from __future__ import annotations

import pytest

from bot.core.requests import Request
from bot.core.table import Event, State
from bot.core.upkeep import Upkeep
from bot.errors import AccountRefused, AlreadyDone, InvalidTransition, NotAuthorized, StaleRequest
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR, STRANGER


@pytest.fixture
def two_floods(server):
    """victim floods most; bob a little less; postmaster (protected) floods too; promo senders are foreign."""
    server.flood("bob", 150)
    server.flood("postmaster", 200)
    return server


def pending(incident):
    return next(a for a in reversed(incident.approvals) if a.decision is None)


def test_an_approval_answered_after_the_incident_moved_on_changes_nothing_and_says_what_it_asks_now(
    runbook, two_floods
):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    first = pending(incident)
    assert incident.suspect_address == "victim@example.org" and first.subject == "the cleanup of victim@example.org"
    moved = runbook.reject(incident.id, actor=DIRECTOR)
    assert moved.suspect_address == "bob@example.org" and moved.state == State.AWAITING_APPROVAL
    stale = Request(incident.id, Event.APPROVE, account="victim@example.org", approval_id=first.id)
    with pytest.raises(
        StaleRequest, match="about the cleanup of victim@example.org.*now asks about the cleanup of bob"
    ):
        runbook.act(stale, actor=DIRECTOR2)
    after = runbook.get(incident.id)
    assert (after.state, after.version) == (State.AWAITING_APPROVAL, moved.version)
    assert two_floods.calls_to("change_password") == []
    # The CLI's form names the account: the wrong one is refused the same way, the right one goes through.
    with pytest.raises(StaleRequest):
        runbook.approve(incident.id, actor=DIRECTOR2, account="victim@example.org")
    done = runbook.act(
        Request(incident.id, Event.APPROVE, account="bob@example.org", approval_id=pending(moved).id), actor=DIRECTOR2
    )
    assert done.state != State.AWAITING_APPROVAL and two_floods.calls_to("change_password") == ["bob"]


def test_a_reboot_approval_never_approves_a_cleanup_and_a_cleanup_click_never_a_reboot(runbook, two_floods):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    with pytest.raises(StaleRequest, match="the reboot of mail1"):
        runbook.act(Request(incident.id, Event.APPROVE_REBOOT, approval_id=pending(incident).id), actor=DIRECTOR2)
    assert runbook.get(incident.id).state == State.AWAITING_APPROVAL
    runbook.repo.set_fields(incident_id=incident.id, state=State.AWAITING_REBOOT_APPROVAL)
    with pytest.raises(StaleRequest, match="now asks about"):
        runbook.act(Request(incident.id, Event.APPROVE, account="victim@example.org"), actor=DIRECTOR2)
    assert two_floods.calls_to("change_password") == [] and two_floods.calls_to("reboot") == []


def test_an_expired_and_renewed_approval_does_not_accept_the_old_request(runbook, clock, two_floods):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    old = pending(incident)
    clock.advance(minutes=31)
    Upkeep(runbook).run_due()  # expires it
    renewed = runbook.act(Request(incident.id, Event.RENEW), actor=OPERATOR)
    assert pending(renewed).id != old.id
    for event in (Event.APPROVE, Event.REJECT):
        with pytest.raises(StaleRequest):
            runbook.act(Request(incident.id, event, account="victim@example.org", approval_id=old.id), actor=DIRECTOR2)
    assert runbook.get(incident.id).version == renewed.version


@pytest.mark.parametrize(
    ("pick", "reason"),
    [
        ("root", "protected"),  # mailfix's own SSH user, and protected anyway
        ("admin@gmail.com", "not an account of example.org"),  # would have mapped to the local admin
        ("carol", "did not offer"),
        ("promo0@spam.example", "not an account of example.org"),  # a forged foreign sender in the top list
        ("postmaster", "protected"),  # floods, but is protected
        ("victim", "did not offer"),  # the suspect itself is no "other" account
    ],
)
def test_a_pick_outside_what_mailfix_offered_is_refused_and_changes_nothing(runbook, two_floods, pick, reason):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    blocked = set(two_floods.blocked)
    with pytest.raises(AccountRefused, match=reason):
        runbook.reject(incident.id, actor=DIRECTOR, pick=pick)
    after = runbook.get(incident.id)
    assert (after.version, after.suspect_address, two_floods.blocked) == (
        incident.version,
        incident.suspect_address,
        blocked,
    )


def test_a_protected_account_is_never_named_even_when_it_floods_most(runbook, server):
    server.flood("postmaster", 1000)
    server.flood("root", 900)
    incident = runbook.start(server="mail1", actor=OPERATOR)
    assert incident.suspect_address == "victim@example.org"
    assert not {"postmaster", "root"} & server.blocked


def test_contain_accepts_only_the_flood_the_latest_check_saw(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.approve(incident.id, actor=DIRECTOR2, account="victim@example.org")
    server.flood("bob", 150)
    Upkeep(runbook).tick(incident.id)
    with pytest.raises(AccountRefused, match="did not offer"):
        runbook.contain(incident.id, actor=OPERATOR, account="alice")
    incident = runbook.contain(incident.id, actor=OPERATOR, account="bob")
    assert incident.suspect_address == "bob@example.org" and "bob" in server.blocked


def test_retrying_a_failed_reboot_needs_a_director_who_did_not_open_the_incident(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.repo.set_fields(incident_id=incident.id, state=State.FAILED, failed_state=State.REBOOTING)
    for actor, refused in ((OPERATOR, "only the IT director"), (STRANGER, "only the IT director")):
        with pytest.raises(NotAuthorized, match=refused):
            runbook.retry(incident.id, actor=actor)
    assert server.calls_to("reboot") == []
    runbook.retry(incident.id, actor=DIRECTOR)
    assert server.calls_to("reboot") == [""]


def test_retrying_the_cleanup_of_the_approved_account_is_an_operators_call(runbook, server):
    server.fail_on = "purge_inbox"
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR2, account="victim@example.org")
    assert incident.state == State.FAILED
    server.fail_on = ""
    assert runbook.retry(incident.id, actor=OPERATOR).state != State.FAILED


def test_the_inbox_a_cleanup_emptied_comes_back_on_a_directors_restore(runbook, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    runbook.approve(incident.id, actor=DIRECTOR2, account="victim@example.org")
    assert server.inbox["victim"] == 0
    with pytest.raises(InvalidTransition, match="closed incident"):  # not while the incident still runs
        runbook.restore_inbox(incident.id, actor=DIRECTOR)
    runbook.abort(incident.id, actor=OPERATOR)
    with pytest.raises(NotAuthorized):
        runbook.restore_inbox(incident.id, actor=OPERATOR)
    assert runbook.restore_inbox(incident.id, actor=DIRECTOR) == 7
    assert server.inbox["victim"] == 7
    with pytest.raises(AlreadyDone, match="already restored by UDIRECTOR1"):  # a double click restores once
        runbook.restore_inbox(incident.id, actor=DIRECTOR2)
    assert server.inbox["victim"] == 7


def test_only_operators_directors_and_readers_may_read_incidents(make_runbook):
    runbook = make_runbook(readers=frozenset({"UREADER01"}))
    for actor in (OPERATOR, DIRECTOR, "UREADER01"):
        runbook.may_read(actor)
    with pytest.raises(NotAuthorized, match="only operators, directors and readers"):
        runbook.may_read(STRANGER)


def test_a_not_this_account_that_lands_between_the_check_and_the_approval_wins_and_bob_is_not_approved(
    runbook, make_runbook, two_floods
):
    """The binding is checked on the snapshot whose version the approval commits at: a rejection that
    commits right after the approval read the incident makes the approval fail, so it never falls
    through to the next account's approval."""
    incident = runbook.start(server="mail1", actor=OPERATOR)
    victims = Request(incident.id, Event.APPROVE, account="victim@example.org", approval_id=pending(incident).id)
    other = make_runbook()  # another worker (or replica) on the same database
    real_get, raced = runbook.get, []

    def get(incident_id):
        snapshot = real_get(incident_id)
        if not raced:  # the first read of the approval: the other director's rejection lands now
            raced.append(other.reject(incident_id, actor=DIRECTOR))
        return snapshot

    runbook.get = get
    with pytest.raises(Exception) as refused:
        runbook.act(victims, actor=DIRECTOR2)
    assert raced and raced[0].suspect_address == "bob@example.org"
    assert type(refused.value).__name__ in ("AlreadyDone", "StaleRequest")
    after = real_get(incident.id)
    assert after.state == State.AWAITING_APPROVAL and after.suspect_address == "bob@example.org"
    assert [a for a in after.approvals if a.decision == "approved"] == []
    assert two_floods.calls_to("change_password") == []


def test_the_cli_renewal_names_what_it_renews_and_a_mismatch_is_refused(runbook, clock, two_floods):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    clock.advance(minutes=31)
    Upkeep(runbook).run_due()  # the cleanup approval expires
    for wrong in (
        Request(incident.id, Event.RENEW, reboot=True),
        Request(incident.id, Event.RENEW, account="bob@example.org"),
    ):
        with pytest.raises(StaleRequest):
            runbook.act(wrong, actor=OPERATOR)
    renewed = runbook.act(Request(incident.id, Event.RENEW, account="victim@example.org"), actor=OPERATOR)
    assert pending(renewed).subject == "the cleanup of victim@example.org"
