"""Only requests signed with the signing secret, within five minutes, reach the runbook."""

from __future__ import annotations

import time
import urllib.request

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
