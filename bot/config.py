"""mailfix.toml and the environment, read and validated in one place.

`load_config` reports every problem at once, each naming the file, the key and what is wrong.
Only the entry point reads `.env`; everything below takes a `Config` and a `Secrets`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, UnknownServer

SLACK_ID_RE = re.compile(r"[UW][A-Z0-9]{2,20}")
CHANNEL_ID_RE = re.compile(r"[CG][A-Z0-9]{2,20}")
SERVER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
PASSWORD_BACKENDS = ("chpasswd", "doveadm-passwd-file", "command")
COMPRESSION = ("auto", "always", "never")
DEFAULT_PROTECTED = ("root", "postmaster", "abuse", "mailer-daemon")
ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}(?:@[A-Za-z0-9.-]{1,253})?")


@dataclass(frozen=True)
class ServerConfig:
    """One `[[servers]]` table: how to reach a mail server and how to act on it."""

    name: str
    host: str
    user: str
    key_file: Path
    known_hosts: Path
    mail_domain: str
    port: int = 22
    postfix_log: str = "/var/log/mail.log"
    password_backend: str = "chpasswd"
    passwd_file: str = "/etc/dovecot/users"  # for doveadm-passwd-file
    password_command: str = ""  # for command: reads "user password" on stdin
    sasl_access_map: str = "/etc/postfix/sasl_access"
    archive_before_purge: bool = True  # a wrong cleanup can be undone: `mailfix restore-inbox`
    archive_dir: str = "/var/backups/mailfix"
    restart_command: str = "postfix stop; postfix start"
    reboot_command: str = "/sbin/reboot"
    reboot_deadline_seconds: int = 900
    connect_timeout_seconds: float = 10.0
    command_timeout_seconds: float = 300.0
    # Large outputs (the queue listing, the log lines) travel gzip'ed: "auto" when the link's round
    # trip is 5 ms or more (not a LAN), "always" or "never"; true/false in the file mean always/never.
    compression: str = "auto"
    public_ip: str = ""
    # Never named, offered, picked or contained; mailfix adds the SSH user and, with chpasswd, every
    # system account (uid below 1000) that the server has.
    protected_accounts: tuple[str, ...] = DEFAULT_PROTECTED


@dataclass(frozen=True)
class Config:
    """Everything in mailfix.toml."""

    channel: str
    directors: frozenset[str]
    operators: frozenset[str]
    servers: tuple[ServerConfig, ...]
    readers: frozenset[str] = frozenset()  # may read status, list and reports, besides operators and directors
    cli_users: dict[str, str] = field(default_factory=dict)
    flood_threshold: int = 500
    normal_queue_size: int = 200
    hold_before_approval: bool = True
    monitor_minutes: float = 15
    restart_monitor_minutes: float = 5
    check_interval_seconds: float = 30
    approval_timeout_minutes: float = 30
    allow_self_approval: bool = False
    password_message_minutes: float = 60
    watch_interval_seconds: float = 0  # 0: no flood watch inside serve/socket
    dnsbl_zones: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()  # "host" or "host:port"; empty: the system resolver
    dns_timeout_seconds: float = 2.0
    path: Path = Path("mailfix.toml")

    def server(self, name: str | None) -> ServerConfig:
        """Return the named server, or the only one when `name` is None."""
        if name is None and len(self.servers) == 1:
            return self.servers[0]
        for server in self.servers:
            if server.name == name:
                return server
        raise UnknownServer(name or "(none given)", [s.name for s in self.servers])


@dataclass(frozen=True)
class Secrets:
    """What comes from the environment; repr hides the secret values."""

    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_app_token: str = field(default="", repr=False)
    slack_api_url: str = ""
    config_path: Path = Path("mailfix.toml")
    database_url: str = "sqlite:///mailfix.db"
    secret_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Secrets:
        env = dict(os.environ) if env is None else env
        return cls(
            slack_bot_token=env.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
            slack_app_token=env.get("SLACK_APP_TOKEN", ""),
            slack_api_url=env.get("SLACK_API_URL", ""),
            config_path=Path(env.get("MAILFIX_CONFIG", "mailfix.toml")),
            database_url=env.get("MAILFIX_DATABASE_URL", "sqlite:///mailfix.db"),
            secret_key=env.get("MAILFIX_SECRET_KEY", ""),
        )


_TOP_KEYS = {f.name for f in fields(Config)} - {"path"}
_SERVER_KEYS = {f.name for f in fields(ServerConfig)}
_SERVER_REQUIRED = ("name", "host", "user", "key_file", "known_hosts", "mail_domain")
_POSITIVE = (
    "flood_threshold",
    "normal_queue_size",
    "monitor_minutes",
    "restart_monitor_minutes",
    "check_interval_seconds",
    "approval_timeout_minutes",
    "password_message_minutes",
    "dns_timeout_seconds",
)


def load_config(path: Path) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (copy mailfix.example.toml)"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    problems = _Problems(path)
    bad = problems.add

    for key in sorted(set(raw) - _TOP_KEYS):
        bad(key, "unknown key")
    defaults = Config(channel="", directors=frozenset(), operators=frozenset(), servers=())

    channel = raw.get("channel")
    if not isinstance(channel, str) or not CHANNEL_ID_RE.fullmatch(channel):
        bad("channel", f"expected a Slack channel ID like C0123ABCD, got {channel!r}")

    people: dict[str, frozenset[str]] = {}
    for key in ("directors", "operators", "readers"):
        value = raw.get(key, [] if key == "readers" else None)
        if key == "readers" and value == []:
            people[key] = frozenset()
            continue
        if not isinstance(value, list) or not value:
            bad(key, "expected a non-empty list of Slack user IDs")
            people[key] = frozenset()
            continue
        for i, uid in enumerate(value):
            if not isinstance(uid, str) or not SLACK_ID_RE.fullmatch(uid):
                bad(f"{key}[{i}]", f"malformed Slack user ID {uid!r} (expected like U0123ABCD)")
        people[key] = frozenset(u for u in value if isinstance(u, str))

    cli_users = raw.get("cli_users", {})
    if not isinstance(cli_users, dict):
        bad("cli_users", "expected a table of login = Slack user ID")
        cli_users = {}
    for login, uid in cli_users.items():
        if not isinstance(uid, str) or not SLACK_ID_RE.fullmatch(uid):
            bad(f"cli_users.{login}", f"malformed Slack user ID {uid!r}")

    numbers: dict[str, Any] = {}
    for key in _POSITIVE:
        value = raw.get(key, getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            bad(key, f"must be a positive number, got {value!r}")
        numbers[key] = value
    for key in ("hold_before_approval", "allow_self_approval"):
        value = raw.get(key, getattr(defaults, key))
        if not isinstance(value, bool):
            bad(key, f"must be true or false, got {value!r}")
        numbers[key] = value

    numbers["watch_interval_seconds"] = raw.get("watch_interval_seconds", 0)
    if (
        isinstance(numbers["watch_interval_seconds"], bool)
        or not isinstance(numbers["watch_interval_seconds"], int | float)
        or numbers["watch_interval_seconds"] < 0
    ):
        bad("watch_interval_seconds", "must be 0 (off) or a positive number of seconds")
    for key in ("dnsbl_zones", "dns_servers"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            bad(key, "expected a list of strings")
            value = []
        numbers[key] = tuple(value)
    for server in numbers["dns_servers"]:
        host = server.rsplit(":", 1)[0].strip("[]") if server.count(":") == 1 or "]:" in server else server
        try:
            ipaddress.ip_address(host)
        except ValueError:
            bad("dns_servers", f"expected IP addresses ('host' or 'host:port'), got {server!r}")
    servers = _parse_servers(raw.get("servers"), path, problems)
    if problems:
        raise ConfigError(problems)
    return Config(
        channel=str(channel),
        directors=people["directors"],
        operators=people["operators"],
        readers=people["readers"],
        servers=servers,
        cli_users=dict(cli_users),
        path=path,
        **numbers,
    )


def _is_account(value: object) -> bool:
    # Compared lower-cased with account names, never sent to a server: a plain name check is enough here.
    return isinstance(value, str) and ACCOUNT_NAME_RE.fullmatch(value) is not None


def _relative_to(base: Path, file: str) -> Path:
    """Return `file` with ~ expanded, relative to the config's folder unless absolute."""
    return base / Path(file).expanduser()


class _Problems(list[str]):
    """Problems found so far, each prefixed with the file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def add(self, key: str, what: str) -> None:
        self.append(f"{self.path}: {key}: {what}")


def _parse_servers(value: Any, path: Path, problems: _Problems) -> tuple[ServerConfig, ...]:
    bad = problems.add
    if not isinstance(value, list) or not value:
        bad("servers", "expected at least one [[servers]] table")
        return ()
    servers: list[ServerConfig] = []
    seen: set[str] = set()
    base = path.parent
    for i, table in enumerate(value):
        where = f"servers[{i}]"
        if not isinstance(table, dict):
            bad(where, "expected a table")
            continue
        name = table.get("name", "")
        if isinstance(name, str) and name:
            where = f"servers[{i}] ({name})"
        before = len(problems)
        for key in sorted(set(table) - _SERVER_KEYS):
            bad(f"{where}.{key}", "unknown key")
        for key in _SERVER_REQUIRED:
            if not isinstance(table.get(key), str) or not table.get(key):
                bad(f"{where}.{key}", "missing (a non-empty string is required)")
        if isinstance(name, str) and name:
            if not SERVER_NAME_RE.fullmatch(name):
                bad(f"{where}.name", "use lower-case letters, digits, '.', '_' and '-'")
            if name in seen:
                bad(f"{where}.name", f"duplicate server name {name!r}")
            seen.add(name)
        for key in ("key_file", "known_hosts"):
            file = table.get(key)
            if isinstance(file, str) and file and not _relative_to(base, file).is_file():
                bad(f"{where}.{key}", f"file not found: {_relative_to(base, file)}")
        port = table.get("port", 22)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            bad(f"{where}.port", f"must be a TCP port, got {port!r}")
        backend = table.get("password_backend", "chpasswd")
        if backend not in PASSWORD_BACKENDS:
            bad(f"{where}.password_backend", f"must be one of {', '.join(PASSWORD_BACKENDS)}, got {backend!r}")
        if backend == "command" and not table.get("password_command"):
            bad(f"{where}.password_command", "required when password_backend = 'command'")
        for key in ("reboot_deadline_seconds", "connect_timeout_seconds", "command_timeout_seconds"):
            number = table.get(key, 1)
            if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
                bad(f"{where}.{key}", f"must be a positive number, got {number!r}")
        compression = table.get("compression", "auto")
        if compression not in COMPRESSION and not isinstance(compression, bool):
            bad(f"{where}.compression", f"must be one of {', '.join(COMPRESSION)} (or true/false), got {compression!r}")
        if not isinstance(table.get("archive_before_purge", True), bool):
            bad(f"{where}.archive_before_purge", f"must be true or false, got {table['archive_before_purge']!r}")
        protected = table.get("protected_accounts", list(DEFAULT_PROTECTED))
        if not isinstance(protected, list) or not all(_is_account(a) for a in protected):
            bad(f"{where}.protected_accounts", "expected a list of account names (user or user@domain)")
        public_ip = table.get("public_ip", "")
        if public_ip:
            try:
                ipaddress.IPv4Address(public_ip)
            except (ValueError, TypeError):
                bad(f"{where}.public_ip", f"must be an IPv4 address, got {public_ip!r}")
        if len(problems) > before:
            continue
        values = {k: table[k] for k in table if k in _SERVER_KEYS}
        values["key_file"] = _relative_to(base, table["key_file"])
        values["known_hosts"] = _relative_to(base, table["known_hosts"])
        values["protected_accounts"] = tuple(a.lower() for a in protected)
        if isinstance(compression, bool):
            values["compression"] = "always" if compression else "never"
        servers.append(ServerConfig(**values))
    return tuple(servers)
