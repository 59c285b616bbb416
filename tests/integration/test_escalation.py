"""Monitoring and escalation against the real lab: restart, reboot approval, a reboot that never returns,
and another account's flood, which gets "Contain X too" instead of a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.runbook import Runbook
from bot.core.table import State
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.mail.postfix import PostfixServer
from handlers.incident_blocks import incident_message
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


def buttons(incident, now) -> list[str]:
    """Return the labels of the incident message's buttons, as Slack shows them."""
    blocks = incident_message(incident, now=now).blocks
    return [e["text"]["text"] for b in blocks for e in b.get("elements", ()) if e.get("type") == "button"]


def test_another_accounts_flood_while_monitoring_offers_containment_and_restarts_nothing(clean_lab, escalation):
    make, clock, notifier = escalation
    runbook = make()
    incident_id = contained_and_cleaned(clean_lab, runbook)
    flood(clean_lab, login="alice", count=200, forged_fraction=0.0, legit=0, bounces=0, inbox=0)  # over 150
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident_id)
    assert (incident.state, incident.monitor_round) == (State.MONITORING, 0), incident.failure
    assert not any(r.step == "restart_postfix" for r in incident.steps)
    assert "Contain alice too" in buttons(incident, clock())
    assert any("No Postfix restart: mail is not normal only because alice floods" in t for _, t in notifier.logs)
    incident = runbook.contain(incident_id, actor=OPERATOR, account="alice")
    assert (incident.state, incident.suspect_login) == (State.AWAITING_APPROVAL, "alice"), incident.failure
    assert "alice REJECT" in Path(clean_lab.sasl_access_map).read_text()


def test_postfix_stopped_is_restarted_and_reboot_approval_still_offers_to_contain_the_flood(clean_lab, escalation):
    make, clock, _ = escalation
    runbook = make()
    incident_id = contained_and_cleaned(clean_lab, runbook)
    flood(clean_lab, login="alice", count=200, forged_fraction=0.0, legit=0, bounces=0, inbox=0)  # a flood
    flood(clean_lab, login="bob", count=60, forged_fraction=0.0, legit=0, bounces=0, inbox=0)  # mail that stays
    clean_lab.run(["/usr/sbin/postfix", "stop"])
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident_id)
    assert [r.status for r in incident.steps if r.step == "restart_postfix"] == ["done"]
    assert (incident.state, incident.monitor_round) == (State.MONITORING, 1), incident.failure
    clock.advance(minutes=6)
    incident = Upkeep(runbook).tick(incident_id)  # 60 of bob's stay queued besides alice's flood
    assert incident.state == State.AWAITING_REBOOT_APPROVAL, incident.failure
    assert {"Approve reboot", "Contain alice too"} <= set(buttons(incident, clock()))
    incident = runbook.contain(incident_id, actor=OPERATOR, account="alice")
    assert (incident.state, incident.suspect_login) == (State.AWAITING_APPROVAL, "alice"), incident.failure
    assert [a.decision for a in incident.approvals if a.what == "reboot"] == ["withdrawn"]
    assert not any(r.step == "reboot" for r in incident.steps)
