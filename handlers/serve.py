"""`mailfix serve` (Slack's HTTP requests on gunicorn) and `mailfix socket` (Socket Mode)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import Config, Secrets
from bot.config_check import secret_problems
from bot.core.runbook import Runbook
from bot.core.scheduler import Periodic, start_scheduler
from bot.core.watch import start_watch
from bot.errors import ConfigError
from bot.i18n import _
from bot.wiring import build_runbook
from handlers.app import build_app, slack_client, wsgi_app
from handlers.health import socket_health, start_health_server
from handlers.notifier import SlackNotifier
from storage.db import make_engine
from storage.outbox import Outbox
from storage.repository import Repository

log = logging.getLogger(__name__)
THREADS = 16  # HTTP threads: each only waits for a listener's ack, never for a runbook step
PING_SECONDS = 5.0  # Socket Mode pings Slack this often: a dead link is replaced within about 6 pings


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Add `mailfix serve` and `mailfix socket` to the terminal's verbs (entry point `mailfix.frontends`)."""
    http = sub.add_parser("serve", help=_("run the Slack bot in HTTP mode (POST /slack/events, GET /healthz)"))
    http.add_argument("--host", help=_("address to listen on (default: $HOST, else 0.0.0.0)"))
    http.add_argument("--port", type=int, help=_("port to listen on (default: $PORT, else 3000)"))
    http.set_defaults(frontend=lambda args, secrets, config: serve(secrets, config, args.host, args.port))
    socket = sub.add_parser("socket", help=_("run the Slack bot in Socket Mode (needs SLACK_APP_TOKEN; GET /healthz)"))
    socket.add_argument("--health-host", help=_("address of GET /healthz (default: 127.0.0.1)"))
    socket.add_argument("--health-port", type=int, help=_("port of GET /healthz (default: $PORT, else 3000)"))
    socket.set_defaults(
        frontend=lambda args, secrets, config: socket_mode(secrets, config, args.health_host, args.health_port)
    )


def check_secrets(secrets: Secrets, *, http: bool) -> None:
    """Raise ConfigError naming every missing Slack secret, and a missing or malformed MAILFIX_SECRET_KEY."""
    if problems := secret_problems(secrets, "http" if http else "socket"):
        raise ConfigError(problems)


# The bot scopes of app.yaml (a test holds the two equal). An app installed before a scope was added
# lacks it until it is reinstalled: found at start-up, not when a director approves a cleanup.
NEEDED_SCOPES = frozenset(
    {"channels:history", "chat:write", "commands", "files:write", "groups:history", "im:history", "im:write"}
    | {"users:read", "users:read.email"}
)


def check_token(client: WebClient) -> None:
    """Raise ConfigError unless Slack accepts the bot token and it has every scope mailfix uses."""
    try:
        answer = client.auth_test()
        header = answer.headers.get("x-oauth-scopes") or ""
        granted = {s.strip() for s in (header if isinstance(header, str) else ",".join(header)).split(",") if s.strip()}
        if granted and (missing := NEEDED_SCOPES - granted):
            lacks = _("the Slack app lacks the scopes {scopes}: add them (app.yaml) and reinstall it")
            raise ConfigError([lacks.format(scopes=", ".join(sorted(missing)))])
    except SlackApiError as exc:
        refused = _("SLACK_BOT_TOKEN was refused by Slack: {error}")
        raise ConfigError([refused.format(error=exc.response.get("error"))]) from None
    except (SlackClientError, OSError) as exc:
        unreachable = _("Slack's Web API at {url} is unreachable: {error}")
        raise ConfigError([unreachable.format(url=client.base_url, error=type(exc).__name__)]) from None


def assemble(secrets: Secrets, config: Config, *, http: bool) -> tuple[Runbook, App]:
    """Return the runbook (telling Slack) and the Bolt app driving it."""
    client = slack_client(secrets)
    # What Slack must show is kept in the database until it does (its own engine: the runbook's comes later).
    outbox = Outbox(Repository(make_engine(secrets.database_url)))
    runbook = build_runbook(secrets, SlackNotifier(client, config, outbox), config)
    return runbook, build_app(secrets, config, runbook, client=client, http=http)


def watch(secrets: Secrets, config: Config, runbook: Runbook) -> Periodic | None:
    """Start the flood watch beside the scheduler when `watch_interval_seconds` > 0 (the runbook's server pool)."""
    notifier = SlackNotifier(slack_client(secrets), config, Outbox(runbook.repo))
    return start_watch(config, runbook.repo, runbook.servers, notifier)


def serve(secrets: Secrets, config: Config, host: str | None = None, port: int | None = None) -> int:
    """Run the bot in HTTP mode on gunicorn until it is stopped; return the exit code.

    `host`/`port` default to $HOST/$PORT, else 0.0.0.0:3000 (all interfaces: the container case).
    """
    host = host or os.environ.get("HOST") or "0.0.0.0"  # noqa: S104 - Slack must reach the bot
    port = port or int(os.environ.get("PORT") or 3000)
    check_secrets(secrets, http=True)
    check_token(slack_client(secrets))

    def load() -> Callable[..., Any]:
        # Runs in the worker process after the fork: threads (scheduler, pools) start here.
        runbook, app = assemble(secrets, config, http=True)
        start_scheduler(runbook)
        watch(secrets, config, runbook)
        return wsgi_app(app, runbook, secrets.slack_signing_secret)

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    _Gunicorn(
        load,
        {
            "bind": bind,
            # One worker process: the scheduler and the in-process bookkeeping stay single; threads serve Slack.
            "workers": 1,
            "worker_class": "gthread",
            "threads": THREADS,
            "timeout": 60,
            "graceful_timeout": 20,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "mailfix",
        },
    ).run()
    return 0


def socket_mode(
    secrets: Secrets, config: Config, health_host: str | None = None, health_port: int | None = None
) -> int:
    """Run the bot over Socket Mode (no inbound HTTPS) until it is stopped; return the exit code.

    GET /healthz on `health_host`:`health_port` (127.0.0.1 and $PORT, else 3000) tells whether it is connected.
    """
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    check_secrets(secrets, http=False)
    ping = ping_seconds()
    check_token(slack_client(secrets))
    runbook, app = assemble(secrets, config, http=False)
    handler = SocketModeHandler(app, secrets.slack_app_token, ping_interval=ping)
    health_port = int(os.environ.get("PORT") or 3000) if health_port is None else health_port
    try:
        probe = start_health_server(
            lambda: socket_health(runbook, handler.client.is_connected), health_host or "127.0.0.1", health_port
        )
    except ConfigError:
        handler.close()
        runbook.close()
        raise
    scheduler = start_scheduler(runbook)
    watch_loop = watch(secrets, config, runbook)
    try:
        handler.start()
    except SlackApiError as exc:  # apps.connections.open refused the app token: one line, not a traceback
        refused = _("SLACK_APP_TOKEN was refused by Slack: {error}")
        raise ConfigError([refused.format(error=exc.response.get("error"))]) from None
    finally:
        handler.close()
        probe.shutdown()
        scheduler.stop()
        if watch_loop is not None:
            watch_loop.stop()
        runbook.close()
    return 0


def ping_seconds() -> float:
    """Return $MAILFIX_SOCKET_PING_SECONDS (default PING_SECONDS); ConfigError unless it is a positive number."""
    raw = os.environ.get("MAILFIX_SOCKET_PING_SECONDS") or str(PING_SECONDS)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 300:
        problem = _("MAILFIX_SOCKET_PING_SECONDS must be a number of seconds in (0, 300], not {value}")
        raise ConfigError([problem.format(value=repr(raw))])
    return seconds


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn run from code: our options, our WSGI app, no command line of its own."""

    def __init__(self, load: Callable[[], Callable[..., Any]], options: dict[str, Any]) -> None:
        self._load, self._options = load, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Any]:
        return self._load()
