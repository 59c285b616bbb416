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
from bot.core.runbook import Runbook
from bot.core.scheduler import Periodic, start_scheduler
from bot.core.vault import Vault
from bot.core.watch import start_watch
from bot.errors import ConfigError
from bot.wiring import build_runbook
from handlers.app import build_app, slack_client, wsgi_app
from handlers.notifier import SlackNotifier

log = logging.getLogger(__name__)
THREADS = 16  # HTTP threads: each only waits for a listener's ack, never for a runbook step


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Add `mailfix serve` and `mailfix socket` to the terminal's verbs (entry point `mailfix.frontends`)."""
    http = sub.add_parser("serve", help="run the Slack bot in HTTP mode (POST /slack/events, GET /healthz)")
    http.add_argument("--host", help="address to listen on (default: $HOST, else 0.0.0.0)")
    http.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 3000)")
    http.set_defaults(frontend=lambda args, secrets, config: serve(secrets, config, args.host, args.port))
    socket = sub.add_parser("socket", help="run the Slack bot in Socket Mode (needs SLACK_APP_TOKEN)")
    socket.set_defaults(frontend=lambda args, secrets, config: socket_mode(secrets, config))


def check_secrets(secrets: Secrets, *, http: bool) -> None:
    """Raise ConfigError naming every missing Slack secret, and a missing or malformed MAILFIX_SECRET_KEY."""
    problems = [problem] if (problem := Vault(secrets.secret_key).problem) else []
    if not secrets.slack_bot_token:
        problems.append("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
    if http and not secrets.slack_signing_secret:
        problems.append("SLACK_SIGNING_SECRET is not set (Basic Information → App Credentials)")
    if not http and not secrets.slack_app_token:
        problems.append(
            "SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token (xapp-…) "
            "with the connections:write scope; or run `mailfix serve` for HTTP mode"
        )
    if problems:
        raise ConfigError(problems)


def check_token(client: WebClient) -> None:
    """Raise ConfigError unless Slack accepts the bot token."""
    try:
        client.auth_test()
    except SlackApiError as exc:
        raise ConfigError([f"SLACK_BOT_TOKEN was refused by Slack: {exc.response.get('error')}"]) from None
    except (SlackClientError, OSError) as exc:
        raise ConfigError([f"Slack's Web API at {client.base_url} is unreachable: {type(exc).__name__}"]) from None


def assemble(secrets: Secrets, config: Config, *, http: bool) -> tuple[Runbook, App]:
    """Return the runbook (telling Slack) and the Bolt app driving it."""
    client = slack_client(secrets)
    runbook = build_runbook(secrets, SlackNotifier(client, config), config)
    return runbook, build_app(secrets, config, runbook, client=client, http=http)


def watch(secrets: Secrets, config: Config, runbook: Runbook) -> Periodic | None:
    """Start the flood watch beside the scheduler when `watch_interval_seconds` > 0 (the runbook's server pool)."""
    return start_watch(config, runbook.repo, runbook.servers, SlackNotifier(slack_client(secrets), config))


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
        return wsgi_app(app, runbook)

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


def socket_mode(secrets: Secrets, config: Config) -> int:
    """Run the bot over Socket Mode (no inbound HTTPS) until it is stopped; return the exit code."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    check_secrets(secrets, http=False)
    check_token(slack_client(secrets))
    runbook, app = assemble(secrets, config, http=False)
    scheduler = start_scheduler(runbook)
    watch_loop = watch(secrets, config, runbook)
    try:
        SocketModeHandler(app, secrets.slack_app_token).start()
    finally:
        scheduler.stop()
        if watch_loop is not None:
            watch_loop.stop()
        runbook.close()
    return 0


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
