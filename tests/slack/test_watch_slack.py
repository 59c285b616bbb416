"""The flood watch in Slack: one alert with a "Start incident" button, posted by `mailfix serve` on its own; and
the "Contain <account> too" button of a monitored incident, clicked through signed requests."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.table import State
from handlers import alert_blocks, blocks, incident_blocks
from storage.models import Check, FloodAlert
from tests.clitools import write_config
from tests.fakes import FakeMailServer
from tests.slack.conftest import CHANNEL, start_bot, stop_bot
from tests.slack.test_blocks import NOW, action_ids, make_incident
from tests.slack.test_commands import buttons

OPERATOR, DIRECTOR, STRANGER = "UOPERATOR1", "UDIRECTOR1", "USTRANGER1"


def flood_alert(**fields) -> FloodAlert:
    values = dict(
        id=3,
        server="mail1",
        kind="flood",
        account="victim@example.org",
        opened_at=NOW,
        closed_at=None,
        details={
            "login": "victim",
            "count": 300,
            "queued_from": 240,
            "queued_by_login": 300,
            "queued_to": 20,
            "queue_total": 325,
            "by_queue": {"deferred": 325},
            "threshold": 100,
        },
    )
    values.update(fields)
    return FloodAlert(**values)


# -- the blocks ------------------------------------------------------------------------------


def test_an_open_flood_alert_shows_the_figures_and_a_start_button():
    message = alert_blocks.alert_message(flood_alert())
    assert blocks.check_limits(message) == []
    assert message.text == (
        "Flood on mail1: victim@example.org (login victim) has 300 queued messages (queue 325, threshold 100)"
    )
    text = json.dumps(message.blocks)
    for expected in ("*300* queued", "240 sent from the address", "300 by its login", "20 addressed to it"):
        assert expected in text
    assert "Queue total 325 (deferred 325)" in text
    [start] = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert (start["action_id"], start["value"], start["text"]["text"]) == (
        "start_incident",
        "mail1",
        "Start incident on mail1",
    )
    # It holds mail and blocks a login: it asks first, like Approve and Abort.
    assert "blocks its login" in start["confirm"]["text"]["text"] and start["confirm"]["confirm"]["text"] == "Start"


def test_an_ended_alert_or_one_with_an_incident_has_no_button():
    ended = alert_blocks.alert_message(flood_alert(closed_at=NOW + timedelta(minutes=7)))
    ended_at = "Ended on its own <!date^1795749420^{date_short_pretty} {time}|2026-11-27 03:17 UTC>"
    assert action_ids(ended) == [] and ended_at in json.dumps(ended.blocks)
    handled = flood_alert()
    handled.details = {**handled.details, "incident_id": 4, "incident_opened_by": OPERATOR}
    message = alert_blocks.alert_message(handled)
    assert action_ids(message) == [] and "Incident #4 opened by <@UOPERATOR1>" in json.dumps(message.blocks)


def test_an_unreachable_alert_shows_the_error_escaped_and_then_that_it_is_back():
    down = flood_alert(kind="unreachable", account="", details={"error": "127.0.0.1: <refused> & gone"})
    message = alert_blocks.alert_message(down)
    assert action_ids(message) == [] and blocks.check_limits(message) == []
    assert "&lt;refused&gt; &amp; gone" in json.dumps(message.blocks)
    assert message.text == "mail1 cannot be reached: 127.0.0.1: &lt;refused&gt; &amp; gone"
    back = alert_blocks.alert_message(flood_alert(kind="unreachable", account="", details={}, closed_at=NOW))
    assert back.text.startswith("mail1 is reachable again")


def test_a_spammy_sender_name_cannot_ping_the_channel():
    message = alert_blocks.alert_message(flood_alert(account="<!channel>@spam.example"))
    assert "<!channel>" not in json.dumps(message.blocks) and "<!channel>" not in message.text
    assert "&lt;!channel&gt;@spam.example" in message.text


def monitored(new_flood: dict | None):
    incident = make_incident(State.MONITORING)
    details = {"reasons": ["login alice has 150 queued"], **({"new_flood": new_flood} if new_flood else {})}
    incident.checks = [
        Check(at=NOW, monitor_round=0, postfix_running=True, queue_size=20, normal=True, details={}),
        Check(at=NOW, monitor_round=0, postfix_running=True, queue_size=170, normal=False, details=details),
    ]
    return incident


def test_a_new_flood_in_the_latest_check_offers_to_contain_that_account_too():
    message = incident_blocks.incident_message(monitored({"name": "alice", "count": 150}), now=NOW)
    assert action_ids(message) == ["contain_account", "resolve_now", "abort"]
    contain = buttons({"blocks": message.blocks})[0]
    assert (contain["text"]["text"], contain["value"]) == ("Contain alice too", "7:::alice")
    assert "confirm" in contain and blocks.check_limits(message) == []


@pytest.mark.parametrize("new_flood", [None, {"name": "promo <x>@spam", "count": 150}, {"name": "MAILER-DAEMON"}])
def test_no_contain_button_without_a_new_flood_or_for_a_name_that_is_no_account(new_flood):
    assert action_ids(incident_blocks.incident_message(monitored(new_flood), now=NOW)) == ["resolve_now", "abort"]


# -- through `mailfix serve` ---------------------------------------------------------------


def config_dir(tmp_path: Path, **kwargs) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    return write_config(directory, **kwargs)


def is_alert(call) -> bool:
    return any(b.get("block_id") == "alert_header" for b in call.params.get("blocks") or [])


@pytest.fixture
def watching_bot(tmp_path, slack):
    """`mailfix serve` with the flood watch polling every 0.3 s; victim@example.org floods the fake server."""
    config = config_dir(tmp_path, extra="watch_interval_seconds = 0.3")
    bot = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(config))
    try:
        yield bot
    finally:
        stop_bot(bot)


def test_serve_alerts_the_channel_once_and_the_button_starts_the_incident(watching_bot):
    bot = watching_bot
    alert = bot.slack.wait_for(lambda f: next((c for c in f.calls_to("chat.postMessage") if is_alert(c)), None))
    assert alert.params["channel"] == CHANNEL
    assert "victim@example.org (login victim) has 300 queued messages" in alert.params["text"]
    ts = bot.slack.wait_for(
        lambda f: next((a.slack_ts for a in bot.repo.open_alerts() if a.slack_ts), None), what="the alert stored"
    )
    assert bot.slack.message(CHANNEL, ts)["blocks"] == alert.params["blocks"]
    time.sleep(1.5)  # five more polls of the same flood
    assert len([c for c in bot.slack.calls_to("chat.postMessage") if is_alert(c)]) == 1
    assert bot.repo.list_incidents() == []

    ack, trigger = bot.sender.click("start_incident", STRANGER, value="mail1", message_ts=ts)
    assert ack.status == 200 and ack.seconds < 3
    assert "only operators or directors" in bot.slack.wait_response(trigger)["text"]
    assert bot.repo.list_incidents() == []

    ack, trigger = bot.sender.click("start_incident", OPERATOR, value="mail1", message_ts=ts)
    assert ack.status == 200 and ack.seconds < 3
    incident = bot.wait_contained()
    assert incident.opened_by == OPERATOR and incident.suspect_address == "victim@example.org"
    assert "Incident #1 on mail1: awaiting approval" in bot.slack.wait_response(trigger)["text"]

    updated = bot.slack.wait_for(
        lambda f: "incident #1 is open" in f.message(CHANNEL, ts)["text"] and f.message(CHANNEL, ts),
        what="the alert updated with the incident",
    )
    assert buttons(updated) == [] and "Incident #1 opened by <@UOPERATOR1>" in json.dumps(updated["blocks"])

    _, again = bot.sender.click("start_incident", OPERATOR, value="mail1", message_ts=ts)
    assert "already open on mail1 (#1)" in bot.slack.wait_response(again)["text"]
    assert len([c for c in bot.slack.calls_to("chat.postMessage") if is_alert(c)]) == 1


def test_contain_this_account_too_from_the_monitored_incident(tmp_path, slack):
    # mallory floods too, less than victim: the incident cleans victim up, then monitoring sees mallory.
    mail = FakeMailServer(domain="example.org", state_file=tmp_path / "fake.json")
    mail.flood("victim", 300, forged=50, to_account=10)
    mail.flood("mallory", 150)
    mail.inbox["victim"] = 4
    mail._save()
    config = config_dir(tmp_path, monitor_minutes=5)
    bot = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(config))
    try:
        bot.start_incident()
        assert bot.incident().suspect_login == "victim"
        bot.click_button("approve_cleanup", DIRECTOR)
        bot.wait_state("monitoring")

        def contain_button(fake):
            message = bot.incident_message()
            return next((b for b in buttons(message) if b["action_id"] == "contain_account"), None)

        button = bot.slack.wait_for(contain_button, what="the contain button")
        assert (button["text"]["text"], button["value"]) == ("Contain mallory too", "1:::mallory")

        _, trigger = bot.sender.click("contain_account", STRANGER, value="1:::mallory")
        assert "only operators or directors" in bot.slack.wait_response(trigger)["text"]
        ack, _ = bot.sender.click("contain_account", OPERATOR, value="1:::mallory")
        assert ack.status == 200 and ack.seconds < 3

        def contained(i):
            # The containment ran in the `containing` phase just before the one that awaits approval.
            done = {r.step for r in i.steps if r.phase == i.phase - 1 and r.status == "done"}
            return i.state == "awaiting_approval" and i.suspect_login == "mallory" and "record_containment" in done

        incident = bot.wait_incident(contained, "contained mallory")
        assert incident.suspect_address == "mallory@example.org"
        assert bot.mail().blocked == {"mallory"}
        assert all(m.queue == "hold" for m in bot.mail().messages if m.login == "mallory")
    finally:
        stop_bot(bot)


def test_the_watch_is_off_in_serve_by_default(bot):
    time.sleep(1.0)
    assert not any(is_alert(c) for c in bot.slack.calls_to("chat.postMessage"))
    assert bot.repo.open_alerts() == []
