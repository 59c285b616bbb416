"""The Bolt app: Slack's requests in, the runbook's methods called on worker threads, errors shown to users.

Every listener acks first (Slack gives 3 seconds) and hands the runbook call to `handlers.worker.Worker`,
a thread pool of its own, so a slow step never delays the next request's ack.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

import handlers
from bot.config import Config, Secrets
from bot.core.runbook import Runbook
from bot.errors import ConfigError
from handlers.replies import report_error
from handlers.worker import Worker

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"

# slack_sdk and Bolt log request and response bodies at DEBUG; those bodies carry the new
# password (the DM, the confirm click's payload), so they never log below INFO.
for _name in ("slack_sdk", "slack_bolt"):
    logging.getLogger(_name).setLevel(max(logging.getLogger(_name).level, logging.INFO))


def slack_client(secrets: Secrets) -> WebClient:
    """Return the Web API client, aimed at SLACK_API_URL when it is set."""
    base_url = secrets.slack_api_url or WebClient.BASE_URL
    return WebClient(
        token=secrets.slack_bot_token,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        timeout=15,
        # Monitoring updates the message every check: ride out rate limits and dropped connections.
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=3)],
    )


class Redeliveries:
    """Remembers the requests seen lately, so a retry of one already acked is acked and dropped."""

    def __init__(self, size: int = 2000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Record `key`; return False if it was seen before."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


def _request_key(body: Mapping[str, Any]) -> str | None:
    # trigger_id is unique per slash command and per click; event_id per event.
    key = body.get("trigger_id") or body.get("event_id")
    return str(key) if key else None


def build_app(
    secrets: Secrets, config: Config, runbook: Runbook, *, client: WebClient | None = None, http: bool = True
) -> App:
    """Return the Bolt app with every listener registered and the runbook in each listener's context."""
    if http and not secrets.slack_signing_secret:
        raise ConfigError(["SLACK_SIGNING_SECRET is not set: Slack's requests could not be verified"])
    client = client or slack_client(secrets)
    worker = Worker(client)
    app = App(
        client=client,  # carries the bot token and SLACK_API_URL
        signing_secret=secrets.slack_signing_secret or None,
        # Socket Mode requests arrive over the authenticated WebSocket: there is no signature to check.
        request_verification_enabled=http,
        # serve/socket check the token once at start-up; Bolt still calls auth.test on the first request.
        token_verification_enabled=False,
        # Answer Slack as soon as a listener calls ack(); listeners only ack and hand over to `worker`.
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="mailfix-listener"),
    )
    redeliveries = Redeliveries()

    @app.middleware
    def drop_redelivered(body: dict, request: Any, next: Callable[[], None]) -> BoltResponse | None:
        # Slack retries (X-Slack-Retry-Num) what it thinks went unanswered. A retry of a request this
        # process has seen is acked and dropped; one it has not seen (another replica, a restart)
        # runs, and the runbook's persisted transitions make its steps run once anyway.
        key = _request_key(body)
        first = redeliveries.first_time(key) if key else True
        if not first and request.headers.get("x-slack-retry-num"):
            return BoltResponse(status=200, body="")
        next()
        return None

    @app.middleware
    def provide_runbook(context: dict, next: Callable[[], None]) -> None:
        context["runbook"] = runbook
        context["worker"] = worker
        next()

    @app.error
    def handle_unexpected_error(error: Exception, body: dict) -> None:
        report_error(error, body, client)

    handlers.register(app)
    return app


def health(runbook: Runbook) -> tuple[int, str]:
    """Return the HTTP status and body of /healthz: 200 when the database answers."""
    try:
        ok = runbook.repo.ping()
    except Exception as exc:  # any failure to reach the database is "unhealthy", not a crash
        log.warning("health check failed: %s", type(exc).__name__)
        ok = False
    return (200, "ok\n") if ok else (503, "database unreachable\n")


def wsgi_app(app: App, runbook: Runbook) -> Callable[[dict, Callable], Iterable[bytes]]:
    """Return the WSGI application: Bolt on POST /slack/events, the health check on GET /healthz."""
    bolt = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status, text = health(runbook)
            reason = "OK" if status == 200 else "Service Unavailable"
            start_response(f"{status} {reason}", [("Content-Type", "text/plain; charset=utf-8")])
            return [text.encode()]
        return bolt(environ, start_response)

    return application
