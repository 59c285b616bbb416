"""Odd incident numbers in `/mailfix` (signed requests to a real `mailfix serve`): one clear line, no traceback."""

from __future__ import annotations

import time

OPERATOR = "UOPERATOR1"
ODD = ["²", "١٢", "123456789012345678901234567890", "0x1f", "1e3", "-1", "#"]


def test_an_odd_incident_number_is_answered_in_one_line_and_nothing_runs(bot):
    for verb in ("status", "report", "abort", "renew"):
        for odd in ODD:
            ack, _ = bot.sender.command(f"{verb} {odd}", OPERATOR)
            assert ack.status == 200 and ack.seconds < 3
            text = ack.json()["text"]
            assert "is not an incident number, like `12`" in text.splitlines()[0], (verb, odd, text)
            assert "Something went wrong" not in text
    time.sleep(0.5)  # anything handed to the worker by mistake would have answered by now
    assert bot.slack.calls_to("respond") == [] and bot.slack.calls_to("chat.postMessage") == []
    assert "Traceback" not in bot.log() and "ERROR" not in bot.log()
    assert bot.repo.list_incidents() == []


def test_a_valid_number_still_reaches_the_runbook(bot):
    """The same path with a plain number answers from the runbook: the refusal above is the id's doing."""
    ack, trigger = bot.sender.command("status 7", OPERATOR)
    assert ack.status == 200 and "is not an incident number" not in ack.body
    assert "7" in bot.slack.wait_response(trigger)["text"]
