"""Builds the runbook from the environment and mailfix.toml: the one place parts are assembled."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from bot.config import Config, Secrets, ServerConfig, load_config
from bot.core.mailserver import MailServer
from bot.core.notifier import Notifier
from bot.core.pool import ServerPool
from bot.core.runbook import Runbook
from bot.core.vault import Vault
from bot.errors import AuthFailed, HostKeyMismatch, HostUnreachable
from bot.mail.dnsbl import blocklist_report
from storage.db import make_engine, upgrade
from storage.repository import Repository

# "module:callable" taking a ServerConfig: plugs in another mail-server implementation (the tests'
# file-backed fake, for example). Unset: Postfix and Dovecot over SSH.
MAILSERVER_ENV = "MAILFIX_MAILSERVER"
# Why a server "could not be reached": no connection, or SSH refused the key or the host key.
CONNECT_ERRORS = (HostUnreachable, AuthFailed, HostKeyMismatch)


def server_factory(config: Config, unreachable: set[str] | None = None) -> Callable[[str], MailServer]:
    """Return a function that connects to a configured server by name.

    A server that cannot be reached (refused, timed out, unknown host key, refused key) is added to
    `unreachable`, so that the terminal can say so in its exit code.
    """
    target = os.environ.get(MAILSERVER_ENV, "bot.mail.postfix:connect")
    module_name, _, attr = target.partition(":")
    connect: Callable[[ServerConfig], MailServer] = getattr(importlib.import_module(module_name), attr)

    def open_server(name: str) -> MailServer:
        try:
            return connect(config.server(name))
        except CONNECT_ERRORS:
            if unreachable is not None:
                unreachable.add(name)
            raise

    return open_server


def open_repository(secrets: Secrets) -> Repository:
    """Upgrade the database schema and return a repository on it."""
    upgrade(secrets.database_url)
    return Repository(make_engine(secrets.database_url))


def build_runbook(
    secrets: Secrets, notifier: Notifier, config: Config | None = None, unreachable: set[str] | None = None
) -> Runbook:
    """Return a runbook wired to the configured servers (one pool, shared with the flood watch), the database
    and `notifier`; servers it cannot reach are added to `unreachable`."""
    config = config or load_config(secrets.config_path)
    return Runbook(
        config=config,
        repository=open_repository(secrets),
        servers=ServerPool(server_factory(config, unreachable)),
        notifier=notifier,
        vault=Vault(secrets.secret_key),
        blocklists=lambda name: blocklist_report(config, config.server(name)),
    )
