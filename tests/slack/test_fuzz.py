"""Property-based fuzz of what Slack can send: `/mailfix` texts and button payloads of every shape, as
signed HTTP requests to a real `mailfix serve`. Whatever arrives, the bot answers, logs no unhandled
error, shows no traceback in Slack, and runs nothing on the mail server."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from handlers.ids import ActionId
from tests.slack.conftest import CHANNEL, Bot

PEOPLE = ("UOPERATOR1", "UDIRECTOR1", "UDIRECTOR2", "USTRANGER1")
VERBS = ("help", "status", "list", "abort", "renew", "report", "retry", "approve", "start", "restore", "")
# Values that look like what mailfix reads: ids, accounts, button values, server names, JSON.
LOOKALIKES = st.sampled_from(
    [
        "1",
        "#1",
        "²",
        "١",
        "9" * 30,
        "-1",
        "0",
        "1:victim@example.org",
        "1|victim@example.org|7",
        '{"incident": 1, "approval": 1}',
        "victim@example.org",
        "root@example.org",
        "victim@exa\u202emple.org",
        "mail2",
        "null",
        "<@UDIRECTOR1>",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=50),  # control characters
    st.text(min_size=3000, max_size=40_000),  # huge
    st.builds(
        lambda v, rest: f"{v} {rest}".strip(), st.sampled_from(VERBS), st.one_of(LOOKALIKES, st.text(max_size=80))
    ),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | LOOKALIKES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def is_a_real_start(user: str, words: list[str]) -> bool:
    """True for a well-formed start by someone allowed to start: that one really reaches the server."""
    return user != "USTRANGER1" and bool(words) and words[0].casefold() == "start" and len(words) <= 2


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, str]:
    user, text = draw(st.sampled_from(PEOPLE)), draw(TEXTS)
    return ("USTRANGER1" if is_a_real_start(user, text.split()) else user), text


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A block_actions payload with any action id and value, wrong types, and fields left out."""
    action_id = draw(st.sampled_from([*ActionId, "no_such_action"]))
    value = draw(st.one_of(LOOKALIKES, TEXTS.map(lambda t: t[:2000]), JSON_VALUES))
    action: dict[str, Any] = {"action_id": action_id, "block_id": "incident_actions", "type": "button"}
    action |= draw(
        st.sampled_from([{"value": value}, {"selected_option": {"value": value}}, {"selected_option": value}])
    )
    user = draw(st.sampled_from(PEOPLE))
    if action_id == ActionId.START_INCIDENT and isinstance(value, str) and value.strip().casefold() == "mail1":
        user = "USTRANGER1"  # a start from the alert by an operator would really reach the server
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0TEAM"},
        "api_app_id": "A0MAILFIX",
        "trigger_id": "fuzz",
        "team": {"id": "T0TEAM"},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL},
        "actions": [action],
    }
    for key in draw(st.lists(st.sampled_from(["user", "channel", "container", "actions", "team"]), max_size=2)):
        payload.pop(key, None)  # missing fields
    for key in draw(st.lists(st.sampled_from(["user", "actions", "container"]), max_size=1)):
        payload[key] = draw(JSON_VALUES)  # the wrong JSON type
    return payload


FUZZ = settings(max_examples=120, deadline=None)
# Each request its own trigger: one Slack sent again (the same trigger) is dropped before any handler.
TRIGGERS = itertools.count()


@FUZZ
@given(command=commands(), signed=st.booleans())
def fuzz_commands(bot: Bot, command: tuple[str, str], signed: bool) -> None:
    user, text = command
    body = bot.sender.command_body(text, user, f"fuzz{next(TRIGGERS)}")
    answer = bot.sender.send(body) if signed else bot.sender.send(body, signature="v0=" + "0" * 64)
    assert (200 <= answer.status < 300) if signed else answer.status == 401, answer
    assert "Traceback" not in answer.body


# Found by this test: the alert's "Start incident" with a select's option instead of a value.
START_WITHOUT_VALUE = {
    "type": "block_actions", "user": {"id": "UOPERATOR1", "team_id": "T0TEAM"}, "api_app_id": "A0MAILFIX",
    "team": {"id": "T0TEAM"}, "channel": {"id": CHANNEL},
    "container": {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL},
    "actions": [
        {"action_id": ActionId.START_INCIDENT.value, "block_id": "b", "type": "button", "selected_option": "mail1"}
    ],
}  # fmt: skip


@FUZZ
@given(payload=payloads(), signed=st.booleans())
@example(payload=START_WITHOUT_VALUE, signed=True)
def fuzz_payloads(bot: Bot, payload: dict[str, Any], signed: bool) -> None:
    payload = {**payload, "trigger_id": f"fuzz{next(TRIGGERS)}"}
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    answer = bot.sender.send(body) if signed else bot.sender.send(body, signature="v0=" + "0" * 64)
    if not signed:
        assert answer.status == 401, answer
    elif 200 <= answer.status < 300:
        pass
    else:
        # Slack never sends these: a wrong shape is refused in one line, an action no listener has is
        # answered "unhandled" by Bolt; nothing runs either way.
        assert (answer.status, answer.body.split(":")[0]) in ((400, "malformed request"), (404, '{"error"')), answer
    assert "Traceback" not in answer.body


def assert_nothing_leaked(bot: Bot) -> None:
    """Nothing reached the mail server, no unhandled error was logged, no traceback reached Slack."""
    time.sleep(2)  # the background work of the last requests
    log = bot.log()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
    assert bot.mail().calls == []  # not even a diagnosis
    # The bot still works after all that: a plain `status` is answered through its response_url.
    trigger = f"fuzz{next(TRIGGERS)}"
    assert bot.sender.send(bot.sender.command_body("status", "UOPERATOR1", trigger)).status == 200
    bot.slack.wait_for(lambda f: f.responses_to(trigger), 20, "the status answer")
    said = json.dumps([call.params for call in bot.slack.calls], default=str)
    assert "Traceback" not in said and "Something went wrong" not in said
    assert bot.repo.list_incidents() == []


def test_any_mailfix_text_is_answered_with_no_traceback_and_no_server_command(bot: Bot) -> None:
    fuzz_commands(bot)
    assert_nothing_leaked(bot)


def test_any_button_payload_is_answered_with_no_traceback_and_no_server_command(bot: Bot) -> None:
    fuzz_payloads(bot)
    assert_nothing_leaked(bot)
