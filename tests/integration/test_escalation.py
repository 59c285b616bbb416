"""Monitoring and escalation against the real lab: restart, reboot approval, a reboot that never returns."""

from __future__ import annotations

import pytest

from bot.core.runbook import Runbook
from bot.core.table import State
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.mail.postfix import PostfixServer
from tests.conftest import DIRECTOR, OPERATOR, SECRET_KEY, Clock, make_config
from tests.fakes import RecordingNotifier
from tests.integration.flood import flood, queue_size


@pytest.fixture
def escalation(clean_lab, repo, tmp_path):
    """A runbook on the lab whose clock the test moves (the deadlines are in the database)."""
    clock, notifier = Clock(), RecordingNotifier()

    def make(**server_overrides: object) -> Runbook:
        server_config = clean_lab.server_config(user="mailfixop", **server_overrides)
        config = make_config(tmp_path, servers=(server_config,), flood_threshold=150, normal_queue_size=40)
        return Runbook(
            config=config,
            repository=repo,
            servers=lambda name: PostfixServer(server_config),
            notifier=notifier,
            vault=Vault(SECRET_KEY),
            clock=clock,
        )

    return make, clock, notifier


def contained_and_cleaned(lab, runbook: Runbook) -> int:
    flood(lab, login="victim", count=300, forged_fraction=0.2, legit=5, bounces=5, inbox=2)
    incident = runbook.start(server="lab", actor=OPERATOR)
    assert incident.state == State.AWAITING_APPROVAL, incident.failure
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.MONITORING, incident.failure
    return incident.id


def test_a_flood_that_stops_after_containment_resolves(clean_lab, escalation):
    make, clock, _ = escalation
    runbook = make()
    incident_id = contained_and_cleaned(clean_lab, runbook)
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident_id)
    assert incident.state == State.RESOLVED
    assert incident.checks[-1].normal and incident.checks[-1].postfix_running


def test_mail_that_stays_abnormal_escalates_to_restart_then_to_a_reboot(clean_lab, escalation):
    make, clock, notifier = escalation
    runbook = make()
    incident_id = contained_and_cleaned(clean_lab, runbook)
    flood(clean_lab, login="alice", count=60, forged_fraction=0.0, legit=0, bounces=0, inbox=0)  # keeps coming
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident_id)
    assert (incident.state, incident.monitor_round) == (State.MONITORING, 1), incident.failure
    assert [r.status for r in incident.steps if r.step == "restart_postfix"] == ["done"]
    assert queue_size(clean_lab) >= 40
    clock.advance(minutes=6)
    incident = Upkeep(runbook).tick(incident_id)
    assert incident.state == State.AWAITING_REBOOT_APPROVAL
    incident = runbook.approve(incident_id, actor=DIRECTOR)  # the lab's "reboot" restarts its daemons
    assert (incident.state, incident.monitor_round) == (State.MONITORING, 2), incident.failure
    assert Upkeep(runbook).tick(incident_id).checks[-1].postfix_running


def test_a_server_that_does_not_come_back_fails_the_incident_for_a_human(clean_lab, escalation):
    make, clock, notifier = escalation
    runbook = make(reboot_command="/usr/sbin/postfix stop", reboot_deadline_seconds=6)
    incident_id = contained_and_cleaned(clean_lab, runbook)
    flood(clean_lab, login="alice", count=60, forged_fraction=0.0, legit=0, bounces=0, inbox=0)
    for minutes in (16, 6):
        clock.advance(minutes=minutes)
        Upkeep(runbook).tick(incident_id)
    incident = runbook.approve(incident_id, actor=DIRECTOR)
    assert incident.state == State.FAILED
    assert "needs a human: lab did not come back after the reboot" in incident.failure
    assert any(":sos:" in text for _, text in notifier.logs)
    clean_lab.run(["/usr/sbin/postfix", "start"])
