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
from bot.mail.dnsbl import blocklist_report
from storage.db import make_engine, upgrade
from storage.repository import Repository

# "module:callable" taking a ServerConfig: plugs in another mail-server implementation (the tests'
# file-backed fake, for example). Unset: Postfix and Dovecot over SSH.
MAILSERVER_ENV = "MAILFIX_MAILSERVER"


def server_factory(config: Config) -> Callable[[str], MailServer]:
    """Return a function that connects to a configured server by name."""
    target = os.environ.get(MAILSERVER_ENV, "bot.mail.postfix:connect")
    module_name, _, attr = target.partition(":")
    connect: Callable[[ServerConfig], MailServer] = getattr(importlib.import_module(module_name), attr)
    return lambda name: connect(config.server(name))


def open_repository(secrets: Secrets) -> Repository:
    """Upgrade the database schema and return a repository on it."""
    upgrade(secrets.database_url)
    return Repository(make_engine(secrets.database_url))


def build_runbook(secrets: Secrets, notifier: Notifier, config: Config | None = None) -> Runbook:
    """Return a runbook wired to the configured servers (one pool, shared with the flood watch), the database
    and `notifier`."""
    config = config or load_config(secrets.config_path)
    return Runbook(
        config=config,
        repository=open_repository(secrets),
        servers=ServerPool(server_factory(config)),
        notifier=notifier,
        vault=Vault(secrets.secret_key),
        blocklists=lambda name: blocklist_report(config, config.server(name)),
    )
