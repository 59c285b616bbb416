"""How the Slack client rides out a busy or broken Slack: slack_sdk's retry handlers, bounded, and what they lack.

slack_sdk retries 429 (RateLimitErrorRetryHandler, sleeping Retry-After), 500 and 503
(ServerErrorRetryHandler) and URLError, ConnectionResetError and RemoteDisconnected
(ConnectionErrorRetryHandler). It misses a socket timeout while waiting for the answer (urllib raises
TimeoutError there, not URLError) and 502/504 from a proxy; it also repeats a post whose answer was lost,
which doubles the message when Slack did post it (python-slack-sdk#1013). Here a call is repeated only
when repeating it is harmless: after a 429 (Slack did nothing), after a failed connect or send (the request
never arrived), or for calls that do the same thing twice (updates, look-ups). A post whose outcome is
unknown is left to the caller, which looks for it (message metadata) before posting again.

Bounds: TIMEOUT per attempt, RETRIES repeats, a Retry-After longer than MAX_RETRY_AFTER is not waited
for: one call blocks at most 3 × 7 + 2 × 5 = 31 seconds.
"""

from __future__ import annotations

from http.client import RemoteDisconnected
from urllib.error import URLError

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

TIMEOUT = 7  # seconds per attempt
RETRIES = 2
MAX_RETRY_AFTER = 5  # seconds; a longer wait is left to the next round (the scheduler's catch-up)
# Posting twice shows the message twice; every other method the bot calls does no harm repeated.
NOT_REPEATABLE = frozenset({"chat.postMessage", "chat.postEphemeral"})


def repeatable(request: HttpRequest) -> bool:
    """True when calling the request's method twice does no harm."""
    return request.url.split("?", 1)[0].rsplit("/", 1)[-1] not in NOT_REPEATABLE


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """429: Slack did nothing, so any call is repeated after Retry-After — unless that is too long to wait."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        assert response is not None  # a 429 is a response
        wait = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), ["1"])
        try:
            return int(wait[0]) <= MAX_RETRY_AFTER
        except ValueError:
            return False


class RepeatableServerErrorRetryHandler(ServerErrorRetryHandler):
    """Any 5xx (the built-in takes 500 and 503 only), for calls that are harmless to repeat."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and 500 <= response.status_code < 600 and repeatable(request)


class RepeatableConnectionErrorRetryHandler(ConnectionErrorRetryHandler):
    """The built-in errors plus TimeoutError; a post only when it never arrived (URLError: connect or send)."""

    def __init__(self, max_retry_count: int) -> None:
        super().__init__(
            max_retry_count, error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError]
        )

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        return repeatable(request) or isinstance(error, URLError)


def retry_handlers() -> list[RetryHandler]:
    """Return the Web API client's retry handlers (they share one count of repeats per call)."""
    return [
        BoundedRateLimitRetryHandler(max_retry_count=RETRIES),
        RepeatableServerErrorRetryHandler(max_retry_count=RETRIES),
        RepeatableConnectionErrorRetryHandler(max_retry_count=RETRIES),
    ]
