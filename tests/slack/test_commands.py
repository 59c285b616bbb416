"""`/mailfix` through signed HTTP requests: acked at once, slow work in the background, clear errors."""

from __future__ import annotations

from bot.core import requests
from bot.core.requests import Request
from bot.core.table import Event
from tests.slack.conftest import CHANNEL

OPERATOR, DIRECTOR, STRANGER = "UOPERATOR1", "UDIRECTOR1", "USTRANGER1"


def buttons(message):
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def text_of(response):
    return response["text"] + " ".join(str(b) for b in response.get("blocks", []))


def test_help_is_answered_in_the_ack(bot):
    ack, _ = bot.sender.command("help", STRANGER)
    assert ack.status == 200 and ack.seconds < 3
    assert "/mailfix start [server]" in ack.json()["text"]


def test_an_unknown_subcommand_says_what_to_type_instead(bot):
    ack, _ = bot.sender.command("restart mail1", OPERATOR)
    assert ack.status == 200
    reply = ack.json()
    assert "Unknown command `restart`" in reply["text"] and "/mailfix start [server]" in reply["text"]
    assert reply.get("response_type", "ephemeral") == "ephemeral"


def test_a_bad_incident_number_says_what_to_type_instead(bot):
    ack, _ = bot.sender.command("abort mail1", OPERATOR)
    assert "is not an incident number" in ack.json()["text"]


def test_start_posts_the_incident_with_its_suspect_and_buttons(bot):
    ack, trigger = bot.sender.command("start", OPERATOR)
    assert ack.status == 200 and ack.seconds < 3
    assert "Opening an incident" in ack.body
    incident = bot.wait_contained()
    reply = bot.slack.wait_response(trigger)
    assert "Incident #1 on mail1: awaiting approval" in reply["text"]

    posted = bot.slack.calls_to("chat.postMessage")[0]
    assert posted.params["channel"] == CHANNEL and incident.slack_channel == CHANNEL
    message = bot.slack.wait_for(
        lambda f: "awaiting approval" in bot.incident_message()["text"] and bot.incident_message(),
        what="message updated to awaiting approval",
    )
    body = str(message["blocks"])
    assert "victim@example.org" in body and "250 queued from it" in body and "Cheap pills" in body
    assert [b["action_id"] for b in buttons(message)] == [
        "approve_cleanup",
        "not_this_account",
        "pick_account",
        "abort",
    ]
    assert buttons(message)[0]["text"]["text"] == "Approve cleanup of victim@example.org"
    pending = bot.incident().approvals[-1]
    approve, not_this = (
        requests.decode(b["value"], e) for b, e in zip(buttons(message), (Event.APPROVE, Event.REJECT))
    )
    assert approve == Request(1, Event.APPROVE, account="victim@example.org", approval_id=pending.id)
    assert not_this == Request(1, Event.REJECT, account="victim@example.org", approval_id=pending.id)
    assert requests.decode(buttons(message)[-1]["value"], Event.ABORT) == Request(1, Event.ABORT)
    picks = [requests.decode(o["value"], Event.PICK).pick for o in buttons(message)[2]["options"]]
    assert "alice" in picks and "victim" not in picks
    threaded = [c.params["text"] for c in bot.slack.calls_to("chat.postMessage") if c.params.get("thread_ts")]
    assert any("Suspect victim@example.org" in t for t in threaded)
    assert any("Held" in t for t in threaded)


def test_an_unknown_server_is_an_ephemeral_error_naming_the_right_one(bot):
    _, trigger = bot.sender.command("start mail9", OPERATOR)
    reply = bot.slack.wait_response(trigger)
    assert "unknown server 'mail9'" in reply["text"] and "/mailfix start mail1" in reply["text"]
    assert reply["response_type"] == "ephemeral"
    assert bot.repo.list_incidents() == []


def test_a_user_without_the_role_cannot_start(bot):
    _, trigger = bot.sender.command("start", STRANGER)
    reply = bot.slack.wait_response(trigger)
    assert "only operators or directors" in reply["text"] and "Ask an operator" in reply["text"]
    assert bot.repo.list_incidents() == []


def test_a_second_incident_on_a_busy_server_is_refused(bot):
    bot.start_incident()
    _, trigger = bot.sender.command("start mail1", DIRECTOR)
    reply = bot.slack.wait_response(trigger)
    assert "already open on mail1 (#1)" in reply["text"] and "/mailfix status 1" in reply["text"]
    assert len(bot.repo.list_incidents()) == 1


def test_a_retried_start_is_acked_and_runs_once(bot):
    first, trigger = bot.sender.command("start", OPERATOR)
    again, _ = bot.sender.command("start", OPERATOR, retry=1, trigger_id=trigger)
    assert first.status == again.status == 200
    bot.wait_contained()
    assert "Incident #1" in bot.slack.wait_response(trigger)["text"]
    assert len(bot.repo.list_incidents()) == 1
    assert len(bot.mail().calls_to("block_login")) == 1
    assert len(bot.slack.responses_to(trigger)) == 1  # no "already open" error for the retry


def test_status_list_and_report_answer_ephemerally(bot):
    bot.start_incident()
    _, trigger = bot.sender.command("status", OPERATOR)
    assert "#1 mail1 · awaiting approval" in bot.slack.wait_response(trigger)["text"]
    _, trigger = bot.sender.command("status 1", OPERATOR)
    status = bot.slack.wait_response(trigger)
    assert "Incident #1 on mail1 is awaiting approval" in status["text"]
    assert "actions" not in str(status["blocks"])  # a status is to read; the buttons live in the channel
    _, trigger = bot.sender.command("list", OPERATOR)
    assert "victim@example.org" in bot.slack.wait_response(trigger)["text"]
    _, trigger = bot.sender.command("report 1", OPERATOR)
    assert "Report of incident #1 on mail1" in bot.slack.wait_response(trigger)["text"]
    report = bot.slack.uploaded("mailfix incident #1 report")  # the whole report, as a file in the thread
    assert "# Incident #1 on mail1" in report and "step hold_from: done" in report
    _, trigger = bot.sender.command("status 7", OPERATOR)
    assert "no incident #7" in bot.slack.wait_response(trigger)["text"]


def test_abort_closes_the_incident_and_removes_the_buttons(bot):
    bot.start_incident()
    _, trigger = bot.sender.command("abort 1", STRANGER)
    assert "only operators or directors" in bot.slack.wait_response(trigger)["text"]
    _, trigger = bot.sender.command("abort #1", OPERATOR)
    assert "aborted" in bot.slack.wait_response(trigger)["text"]
    bot.wait_state("aborted")
    message = bot.slack.wait_for(lambda f: "aborted" in bot.incident_message()["text"] and bot.incident_message())
    assert buttons(message) == []
