"""The flood watch against the real lab: a flood sent through SMTP AUTH raises one alert, and a server
that does not answer raises one alert."""

from __future__ import annotations

import dataclasses

import pytest

from bot.core.watch import Watcher, alert_text
from bot.mail.postfix import connect
from tests.conftest import make_config
from tests.integration.flood import flood
from tests.test_watch import RecordingAlerts


@pytest.fixture
def alerts() -> RecordingAlerts:
    return RecordingAlerts()


def test_a_real_flood_raises_exactly_one_alert_and_its_end_updates_it(clean_lab, tmp_path, repo, alerts, clock):
    lab = clean_lab
    server = lab.server_config(user="mailfixop")  # through sudo, like production
    config = make_config(tmp_path, servers=(server,), flood_threshold=150)
    watcher = Watcher(config, repo, lambda name: connect(config.server(name)), alerts, clock)
    try:
        assert watcher.poll_once() == []  # an empty queue: nothing to say

        flood(lab, login="victim", count=300, forged_fraction=0.2, legit=9, bounces=6, inbox=0)
        [alert] = watcher.poll_once()
        assert (alert.server, alert.kind, alert.account) == ("lab", "flood", "victim@lab.test")
        details = alerts.raised[0].details
        assert details["login"] == "victim" and details["queued_by_login"] == 300
        assert details["queued_from"] == 240 and details["queued_to"] == 6 and details["queue_total"] == 315
        assert watcher.poll_once() == []
        assert len(alerts.raised) == 1 and alerts.changed == []

        lab.run(["postsuper", "-d", "ALL"])  # the flood goes away without an incident
        assert watcher.poll_once() == []
        [ended] = alerts.changed
        assert alert_text(ended) == "Flood from victim@lab.test (login victim) on lab is over (ended on its own)"
    finally:
        watcher.close()


def test_a_server_on_a_closed_port_raises_one_unreachable_alert(lab, tmp_path, repo, alerts, clock):
    server = dataclasses.replace(lab.server_config(), port=lab.closed_port, connect_timeout_seconds=2.0)
    config = make_config(tmp_path, servers=(server,))
    watcher = Watcher(config, repo, lambda name: connect(config.server(name)), alerts, clock)
    try:
        [alert] = watcher.poll_once()
        assert alert.kind == "unreachable" and alert.server == "lab"
        assert alert_text(alerts.raised[0]).startswith("lab cannot be reached: 127.0.0.1")
        assert watcher.poll_once() == [] and watcher.poll_once() == []
        assert len(alerts.raised) == 1
    finally:
        watcher.close()
