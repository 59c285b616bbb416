"""The Bolt app: Slack's requests in, the runbook's methods called on worker threads, errors shown to users.

Every listener acks first (Slack gives 3 seconds) and hands the runbook call to `handlers.worker.Worker`,
a thread pool of its own, so a slow step never delays the next request's ack.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

import handlers
from bot.config import Config, Secrets
from bot.core.runbook import Runbook
from bot.errors import ConfigError
from bot.i18n import _
from handlers import retries, shape
from handlers.replies import report_error
from handlers.worker import Worker
from storage.deliveries import Deliveries
from storage.repository import Repository

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
        timeout=retries.TIMEOUT,
        # Ride out rate limits, 5xx and dropped connections, repeating only what is harmless to repeat.
        retry_handlers=retries.retry_handlers(),
    )


class Redeliveries:
    """The Slack requests any replica has received (kept in the database), so a retry of one runs nowhere again."""

    KEEP = timedelta(days=1)  # Slack retries within minutes and refuses signatures older than 5 minutes
    PRUNE_EVERY = 3600.0  # seconds between deletions of the keys older than KEEP

    def __init__(self, repo: Repository) -> None:
        self._deliveries = Deliveries(repo)
        self._lock = threading.Lock()
        self._next_prune = 0.0  # monotonic time; the first request prunes what a previous run left

    def first_time(self, key: str) -> bool:
        """Record `key`; return False if this or another replica recorded it before."""
        if len(key) > 200:  # the column's width; Slack's ids are far shorter
            key = hashlib.sha256(key.encode()).hexdigest()
        first = self._deliveries.first(key=key)
        with self._lock:
            prune, now = False, time.monotonic()
            if now >= self._next_prune:
                prune, self._next_prune = True, now + self.PRUNE_EVERY
        if prune:
            try:
                self._deliveries.forget(older_than=self.KEEP)
            except Exception:  # pruning is housekeeping: the next hour tries again
                log.exception("could not prune old Slack request keys")
        return first


def _request_key(body: Mapping[str, Any]) -> str | None:
    # trigger_id is unique per slash command and per click; event_id per event.
    key = body.get("trigger_id") or body.get("event_id")
    return str(key) if key else None


def build_app(
    secrets: Secrets, config: Config, runbook: Runbook, *, client: WebClient | None = None, http: bool = True
) -> App:
    """Return the Bolt app with every listener registered and the runbook in each listener's context."""
    if http and not secrets.slack_signing_secret:
        raise ConfigError([_("SLACK_SIGNING_SECRET is not set: Slack's requests could not be verified")])
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
    redeliveries = Redeliveries(runbook.repo)

    @app.middleware
    def drop_redelivered(body: dict, next: Callable[[], None]) -> BoltResponse | None:
        # Slack retries (X-Slack-Retry-Num) what it thinks went unanswered, to whichever replica the load
        # balancer picks. Only signed requests get here (Bolt checks the signature first). The replica
        # that records the request's key first handles it; the same request again, at any replica, is
        # acked and dropped, so the person sees one effect.
        key = _request_key(body)
        if key and not redeliveries.first_time(key):
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


def wsgi_app(app: App, runbook: Runbook, signing_secret: str) -> Callable[[dict, Callable], Iterable[bytes]]:
    """Return the WSGI application: Bolt on POST /slack/events, the health check on GET /healthz."""
    bolt = SlackRequestHandler(app, path=EVENTS_PATH)
    verifier = SignatureVerifier(signing_secret)

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status, text = health(runbook)
            reason = "OK" if status == 200 else "Service Unavailable"
            start_response(f"{status} {reason}", [("Content-Type", "text/plain; charset=utf-8")])
            return [text.encode()]
        if environ.get("REQUEST_METHOD") == "POST":
            # Read the body once, check its shape (Bolt would fail on a wrong one), and hand Bolt a copy.
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            problem = shape.malformed(body, environ.get("CONTENT_TYPE") or "")
            if problem is not None:
                headers = {
                    "x-slack-request-timestamp": environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
                    "x-slack-signature": environ.get("HTTP_X_SLACK_SIGNATURE", ""),
                }
                signed = verifier.is_valid_request(body, headers)
                log.warning("refused a Slack request of the wrong shape (%s, signed: %s)", problem, signed)
                refusal = "400 Bad Request" if signed else "401 Unauthorized"
                start_response(refusal, [("Content-Type", "text/plain; charset=utf-8")])
                return [f"malformed request: {problem}\n".encode() if signed else b"invalid request\n"]
        return bolt(environ, start_response)

    return application
