"""Escalation by cause, against the fake server: another account's flood gets "Contain X too", never a restart."""

from __future__ import annotations

from typing import Any

from bot.core.mailserver import Ranked
from bot.core.monitoring import restart_helps
from bot.core.table import Event, State, person_events
from bot.core.upkeep import Upkeep
from handlers.incident_blocks import incident_message
from tests.conftest import DIRECTOR, OPERATOR, make_config


def buttons(incident: Any, now: Any) -> list[str]:
    """Return the labels of the incident message's buttons, as Slack shows them."""
    labels = []
    for block in incident_message(incident, now=now).blocks:
        for element in block.get("elements", ()):
            if element.get("type") == "button":
                labels.append(element["text"]["text"])
    return labels


def monitored(runbook, server):
    """Return an incident being monitored after the first account's cleanup."""
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == State.MONITORING
    return incident


def test_a_restart_helps_only_when_postfix_is_down_or_the_queue_does_not_drain_apart_from_the_flood(tmp_path):
    config = make_config(tmp_path)  # normal_queue_size 50
    flood = Ranked("mallory", 150)
    assert not restart_helps(postfix_running=True, queue_size=160, flood=flood, config=config)
    assert restart_helps(postfix_running=False, queue_size=160, flood=flood, config=config)
    assert restart_helps(postfix_running=True, queue_size=200, flood=flood, config=config)  # 50 more stuck
    assert restart_helps(postfix_running=True, queue_size=160, flood=None, config=config)


def test_another_accounts_flood_is_offered_for_containment_and_never_restarts_postfix(
    runbook, server, repo, notifier, clock
):
    incident = monitored(runbook, server)
    server.flood("mallory", 150)
    for round_ in range(2):  # the deadline passes twice: still no restart, still offered
        clock.advance(minutes=16)
        incident = Upkeep(runbook).tick(incident.id)
        assert (incident.state, incident.monitor_round) == (State.MONITORING, 0), round_
        assert incident.monitor_deadline > clock()  # watched again
        assert server.calls_to("restart") == []
        assert "Contain mallory too" in buttons(incident, clock())
    said = [text for _, text in notifier.logs if "No Postfix restart" in text]
    assert len(said) == 2 and "only because mallory floods (150 queued)" in said[0]
    assert all(text.startswith(runbook.directors_mention() + " ") for text in said)  # asked each round
    assert [e.action for e in repo.audit_events(incident_id=incident.id)][-2:] == [Event.OTHER_FLOOD] * 2
    incident = runbook.contain(incident.id, actor=OPERATOR, account="mallory")
    assert (incident.state, incident.suspect_login) == (State.AWAITING_APPROVAL, "mallory")
    assert "mallory" in server.blocked


def test_postfix_down_restarts_even_while_another_account_floods(runbook, server, clock):
    incident = monitored(runbook, server)
    server.flood("mallory", 150)
    server.postfix_running = False
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident.id)
    assert server.calls_to("restart") == [""]
    assert (incident.state, incident.monitor_round) == (State.MONITORING, 1)


def test_a_queue_stuck_apart_from_the_flood_restarts_then_reboot_approval_keeps_offering_containment(
    runbook, server, clock
):
    incident = monitored(runbook, server)
    server.flood("bob", 80)  # under the flood threshold: mail that does not drain
    server.flood("mallory", 150)
    clock.advance(minutes=16)
    incident = Upkeep(runbook).tick(incident.id)
    assert server.calls_to("restart") == [""]
    clock.advance(minutes=6)
    incident = Upkeep(runbook).tick(incident.id)
    assert incident.state == State.AWAITING_REBOOT_APPROVAL
    assert Event.CONTAIN in person_events(incident.state)
    assert {"Approve reboot", "Contain mallory too"} <= set(buttons(incident, clock()))
    clock.advance(minutes=31)  # the reboot request expires: containing still applies
    assert {"Ask the directors again", "Contain mallory too"} <= set(buttons(runbook.get(incident.id), clock()))
    incident = runbook.contain(incident.id, actor=OPERATOR, account="mallory")
    assert (incident.state, incident.suspect_login) == (State.AWAITING_APPROVAL, "mallory")
    reboot = [a for a in incident.approvals if a.what == "reboot"]
    assert [a.decision for a in reboot] == ["withdrawn"]
    assert server.calls_to("reboot") == []
