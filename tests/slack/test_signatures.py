"""Only requests signed with the signing secret, within five minutes, reach the runbook."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from handlers import shape
from tests.slack.conftest import sign


def test_a_bad_signature_gets_401_and_runs_nothing(bot):
    body = bot.sender.command_body("start", "UOPERATOR1", "trigger-bad")
    answer = bot.sender.send(body, signature=sign(body, int(time.time()), secret="not-the-secret"))
    assert answer.status == 401
    assert_nothing_ran(bot)


def test_a_stale_timestamp_gets_401_and_runs_nothing(bot):
    body = bot.sender.command_body("start", "UOPERATOR1", "trigger-stale")
    stale = int(time.time()) - 5 * 60 - 30
    answer = bot.sender.send(body, timestamp=stale, signature=sign(body, stale))
    assert answer.status == 401
    assert_nothing_ran(bot)


def test_a_missing_signature_gets_401_and_runs_nothing(bot):
    answer = bot.sender.send(bot.sender.command_body("start", "UOPERATOR1", "trigger-unsigned"), signed=False)
    assert answer.status == 401
    assert_nothing_ran(bot)


def test_a_body_changed_after_signing_gets_401(bot):
    body = bot.sender.command_body("help", "UOPERATOR1", "trigger-x")
    now = int(time.time())
    answer = bot.sender.send(body.replace(b"help", b"start"), timestamp=now, signature=sign(body, now))
    assert answer.status == 401
    assert_nothing_ran(bot)


def test_healthz_answers_200_while_the_database_answers(bot):
    with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as answer:
        assert answer.status == 200 and answer.read() == b"ok\n"


def assert_nothing_ran(bot):
    assert bot.repo.list_incidents() == []
    assert bot.mail().calls == []
    assert [c.method for c in bot.slack.calls if c.method != "auth.test"] == []


NOT_ACTIONS = "`actions` is not a non-empty list of objects"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"type": "block_actions", "user": False, "actions": []}, "`user` is not an object"),
        ({"type": "block_actions", "user": {"id": "U1"}, "actions": "approve"}, NOT_ACTIONS),
        ({"type": "block_actions", "user": {"id": "U1"}, "actions": []}, NOT_ACTIONS),  # found by test_fuzz
        ({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": 3}]}, "an `action_id` is not text"),
        ({"type": "block_actions", "container": [1]}, "`container` is not an object"),
        ({"type": "block_actions", "actions": []}, "no `user.id`"),
        ({"type": "block_actions", "user": {"id": 7}, "actions": []}, "no `user.id`"),
        ([1, 2], "the payload is not an object"),
    ],
)
def test_a_payload_of_a_shape_slack_never_sends_is_refused_before_bolt_reads_it(payload, problem):
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    assert shape.malformed(body, "application/x-www-form-urlencoded") == problem


def test_what_slack_sends_passes_the_shape_check():
    good = {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "abort", "value": "1"}]}
    form = urllib.parse.urlencode({"payload": json.dumps(good)}).encode()
    assert shape.malformed(form, "application/x-www-form-urlencoded") is None
    command = urllib.parse.urlencode({"command": "/mailfix", "text": "status", "user_id": "U1"}).encode()
    assert shape.malformed(command, "application/x-www-form-urlencoded; charset=utf-8") is None
    assert shape.malformed(b"\xff\xfe", "application/x-www-form-urlencoded") == "the body is not UTF-8"
