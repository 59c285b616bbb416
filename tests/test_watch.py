"""The flood watch on the fake mail server: one alert per flood or outage, updated when it ends, kept on restart."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest

from bot.core.notifier import MessageRef
from bot.core.watch import Watcher, alert_text
from bot.errors import HostUnreachable
from bot.terminal import cli
from storage.models import FloodAlert
from storage.repository import DuplicateAlert
from tests.clitools import fake_env
from tests.conftest import OPERATOR, make_config
from tests.fakes import FakeMailServer


@dataclass
class RecordingAlerts:
    """Records what the watcher told; `fail` makes the next N posts raise (Slack down)."""

    raised: list[FloodAlert] = field(default_factory=list)
    changed: list[FloodAlert] = field(default_factory=list)
    fail: int = 0

    def alert_raised(self, alert: FloodAlert) -> MessageRef | None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Slack is down")
        self.raised.append(alert)
        return MessageRef("C0INCIDENT", f"1.{alert.id:06d}")

    def alert_changed(self, alert: FloodAlert) -> None:
        self.changed.append(alert)


@pytest.fixture
def alerts() -> RecordingAlerts:
    return RecordingAlerts()


@pytest.fixture
def make_watcher(tmp_path, repo, server, alerts, clock):
    def make(**overrides) -> Watcher:
        return Watcher(make_config(tmp_path, **overrides), repo, lambda name: server, alerts, clock)

    return make


@pytest.fixture
def watcher(make_watcher) -> Watcher:
    return make_watcher()


def stop_flood(server: FakeMailServer, login: str = "victim") -> None:
    """Remove the flood from the queue, as if it was delivered or expired: mail sent by the login and its bounces."""
    address = f"{login}@{server.domain}"
    server.messages = [m for m in server.messages if m.login != login and address not in m.recipients]


def test_a_flood_raises_exactly_one_alert_with_its_figures(watcher, alerts, repo):
    [alert] = watcher.poll_once()
    assert (alert.server, alert.kind, alert.account) == ("mail1", "flood", "victim@example.org")
    assert [a.id for a in alerts.raised] == [alert.id]
    details = alerts.raised[0].details
    assert details["login"] == "victim" and details["count"] == 300 and details["queued_by_login"] == 300
    assert details["queued_from"] == 240 and details["queued_to"] == 20 and details["queue_total"] == 325
    assert alert_text(alerts.raised[0]) == (
        "Flood on mail1: victim@example.org (login victim) has 300 queued messages (queue 325, threshold 100)"
    )
    stored = repo.get_alert(alert_id=alert.id)
    assert (stored.slack_channel, stored.slack_ts) == ("C0INCIDENT", f"1.{alert.id:06d}") and stored.notified_at

    assert watcher.poll_once() == [] and watcher.poll_once() == []
    assert len(alerts.raised) == 1 and alerts.changed == []


def test_the_alert_is_updated_once_when_the_flood_ends_on_its_own(watcher, alerts, server, repo):
    watcher.poll_once()
    stop_flood(server)
    assert watcher.poll_once() == []
    [ended] = alerts.changed
    assert ended.closed_at is not None and ended.slack_ts == f"1.{ended.id:06d}"
    assert alert_text(ended) == "Flood from victim@example.org (login victim) on mail1 is over (ended on its own)"
    assert ended.details["ended_count"] == 0
    watcher.poll_once()
    assert len(alerts.changed) == 1 and repo.open_alerts() == []


def test_a_flood_wavering_just_under_the_threshold_neither_ends_nor_alerts_again(watcher, alerts, server):
    watcher.poll_once()
    victims = [m for m in server.messages if m.login == "victim"]
    server.messages = [m for m in server.messages if m.login != "victim"] + victims[:90]  # threshold 100
    assert watcher.poll_once() == []
    server.messages += victims[90:]
    assert watcher.poll_once() == []
    assert len(alerts.raised) == 1 and alerts.changed == []


def test_a_flood_that_comes_back_after_it_ended_is_a_new_alert(watcher, alerts, server):
    first = watcher.poll_once()
    stop_flood(server)
    watcher.poll_once()
    server.flood("victim", 150)
    second = watcher.poll_once()
    assert len(second) == 1 and second[0].id != first[0].id and len(alerts.raised) == 2


def test_an_unreachable_server_is_alerted_once_and_updated_when_it_answers_again(tmp_path, repo, alerts, clock):
    server = FakeMailServer()
    connects: list[str] = []

    def connect(name: str) -> FakeMailServer:
        connects.append(name)
        if server.fail_on == "connect":
            raise HostUnreachable("127.0.0.1", "connection refused")
        return server

    watcher = Watcher(make_config(tmp_path), repo, connect, alerts, clock)
    server.fail_on = "connect"
    [alert] = watcher.poll_once()
    assert (alert.kind, alert.account) == ("unreachable", "")
    assert alert_text(alerts.raised[0]) == "mail1 cannot be reached: 127.0.0.1: connection refused"
    assert watcher.poll_once() == [] and len(alerts.raised) == 1

    server.fail_on = "diagnose"  # connected, but the command fails: unreachable all the same
    assert watcher.poll_once() == [] and len(alerts.raised) == 1

    server.fail_on = ""
    clock.advance(minutes=5)
    assert watcher.poll_once() == []
    [back] = alerts.changed
    assert back.closed_at == clock.now and alert_text(back).startswith("mail1 is reachable again")
    assert len(connects) == 4  # a failed connection is never reused: every poll reconnected
    watcher.poll_once()
    assert len(connects) == 4 and len(alerts.changed) == 1


def test_no_alert_while_an_incident_is_open_on_that_server(watcher, runbook, alerts, server):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    diagnoses = len(server.calls_to("diagnose"))
    server.flood("mallory", 400)
    assert watcher.poll_once() == [] and watcher.poll_once() == []
    assert alerts.raised == [] and len(server.calls_to("diagnose")) == diagnoses  # the runbook owns the server
    runbook.abort(incident.id, actor=OPERATOR)
    assert len(watcher.poll_once()) == 1


def test_an_open_alert_learns_of_the_incident_once_and_closes_when_the_flood_is_gone(watcher, runbook, alerts, server):
    [alert] = watcher.poll_once()
    incident = runbook.start(server="mail1", actor=OPERATOR)
    watcher.poll_once()
    watcher.poll_once()
    [told] = alerts.changed
    assert told.closed_at is None and told.details["incident_id"] == incident.id
    assert told.details["incident_opened_by"] == OPERATOR
    assert alert_text(told) == f"Flood from victim@example.org (login victim) on mail1: incident #{incident.id} is open"

    runbook.abort(incident.id, actor=OPERATOR)  # the held flood is still queued: no second alert
    assert watcher.poll_once() == [] and len(alerts.raised) == 1
    stop_flood(server)
    watcher.poll_once()
    assert alert_text(alerts.changed[-1]).endswith(f"is over (handled by incident #{incident.id})")


def test_a_restarted_watcher_does_not_alert_again_and_still_closes_the_alert(make_watcher, alerts, server):
    [alert] = make_watcher().poll_once()
    restarted = make_watcher()
    assert restarted.poll_once() == [] and len(alerts.raised) == 1
    stop_flood(server)
    restarted.poll_once()
    assert [a.id for a in alerts.changed] == [alert.id] and alerts.changed[0].slack_ts == f"1.{alert.id:06d}"


def test_an_alert_slack_could_not_take_is_told_at_the_next_poll(watcher, alerts, repo):
    alerts.fail = 1
    [alert] = watcher.poll_once()
    assert alerts.raised == [] and repo.get_alert(alert_id=alert.id).notified_at is None
    assert watcher.poll_once() == []
    assert [a.id for a in alerts.raised] == [alert.id]
    watcher.poll_once()
    assert len(alerts.raised) == 1


def test_the_database_refuses_a_second_open_alert_for_the_same_flood(repo, clock):
    repo.open_alert(server="mail1", kind="flood", account="victim@example.org", now=clock.now, details={})
    with pytest.raises(DuplicateAlert):
        repo.open_alert(server="mail1", kind="flood", account="victim@example.org", now=clock.now, details={})
    repo.open_alert(server="mail1", kind="flood", account="mallory@example.org", now=clock.now, details={})


def test_a_flood_from_a_forged_foreign_sender_is_alerted_without_a_login(tmp_path, repo, alerts, clock):
    server = FakeMailServer()
    for i in range(150):
        server._add("ceo@bank.example", [f"victim{i}@remote.example"], None, "Wire transfer")
    watcher = Watcher(make_config(tmp_path), repo, lambda name: server, alerts, clock)
    [alert] = watcher.poll_once()
    assert alert.account == "ceo@bank.example" and alert.details["login"] is None
    assert alert.details["queued_from"] == 150


def test_bounces_alone_are_not_a_flood(tmp_path, repo, alerts, clock):
    server = FakeMailServer()
    for i in range(150):
        server._add("MAILER-DAEMON", [f"user{i}@example.org"], None, "Undelivered Mail Returned to Sender")
    watcher = Watcher(make_config(tmp_path), repo, lambda name: server, alerts, clock)
    assert watcher.poll_once() == []


def test_one_server_failing_oddly_does_not_stop_the_watch_of_the_others(tmp_path, repo, alerts, clock, server):
    import dataclasses

    config = make_config(tmp_path)
    other = dataclasses.replace(config.servers[0], name="mail0")
    config = dataclasses.replace(config, servers=(other, config.servers[0]))

    def connect(name: str) -> FakeMailServer:
        if name == "mail0":
            raise RuntimeError("a bug, not an outage")
        return server

    watcher = Watcher(config, repo, connect, alerts, clock)
    assert [a.server for a in watcher.poll_once()] == ["mail1"]


def test_mailfix_watch_once_prints_one_alert_per_flood_across_runs(tmp_path, monkeypatch):
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    assert cli.main(["watch", "--once"], out=out) == 3  # 3: a flood is found
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "ALERT Flood on mail1: victim@example.org (login victim) has 300 queued" in lines[0]
    assert "`mailfix start mail1`" in lines[0]
    again = io.StringIO()
    assert cli.main(["watch", "--once"], out=again) == 3  # still flooded: found again, not printed again
    assert again.getvalue() == ""
