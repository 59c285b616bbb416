"""Which failures the scheduler retries by itself: passing faults only, Slack's among them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.core.table import AUTO_RETRY_BACKOFF, auto_retry_after
from bot.errors import AuthFailed, CommandFailed, CommandTimeout, DeliveryDelayed, HostUnreachable
from handlers.notifier import SlackDeliveryFailed, delivery_failed


def slack_error(status: int, error: str) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="x",
        req_args={},
        data={"ok": False, "error": error},
        headers={},
        status_code=status,
    )
    return SlackApiError("refused", response)


@pytest.mark.parametrize(
    ("exc", "passing"),
    [
        (slack_error(429, "ratelimited"), True),
        (slack_error(500, "internal_error"), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (slack_error(200, "channel_not_found"), False),
        (slack_error(200, "not_authed"), False),
    ],
)
def test_a_busy_or_silent_slack_is_a_passing_fault_and_a_refusal_is_not(exc, passing):
    error = delivery_failed("DM victim@example.org", exc)
    assert isinstance(error, SlackDeliveryFailed)
    assert isinstance(error, DeliveryDelayed) is passing
    assert (auto_retry_after("notifying_user", error, 0) == AUTO_RETRY_BACKOFF[0]) is passing


@pytest.mark.parametrize(
    ("error", "pause"),
    [
        (HostUnreachable("mail1", "no route"), AUTO_RETRY_BACKOFF[0]),
        (CommandTimeout("mail1", "timed out"), AUTO_RETRY_BACKOFF[0]),
        (AuthFailed("mail1", "key refused"), None),
        (CommandFailed("mail1", "postsuper: fatal"), None),
    ],
)
def test_only_passing_faults_are_retried_by_the_scheduler(error, pause):
    assert auto_retry_after("cleaning_up", error, 0) == pause
    assert auto_retry_after("cleaning_up", error, len(AUTO_RETRY_BACKOFF)) is None  # then a person decides
    assert pause is None or pause >= timedelta(seconds=30)
