"""mailfix.toml and the environment, read and validated in one place.

The dataclasses below are the schema: each field's type says what the file may hold (pydantic checks
it when the file is loaded; code and tests that build a `Config` directly are not re-checked).
`load_config` reports every problem at once, each naming the file, the key and what is wrong.
Only the entry point reads `.env`; everything below takes a `Config` and a `Secrets`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic import ValidationInfo as Info
from pydantic_core import ErrorDetails, PydanticCustomError

from bot import i18n
from bot.errors import ConfigError, UnknownServer
from bot.i18n import N_, _

SLACK_ID_RE = re.compile(r"[UW][A-Z0-9]{2,20}")
CHANNEL_ID_RE = re.compile(r"[CG][A-Z0-9]{2,20}")
SERVER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
PASSWORD_BACKENDS = ("chpasswd", "doveadm-passwd-file", "command")
COMPRESSION = ("auto", "always", "never")
DEFAULT_PROTECTED = ("root", "postmaster", "abuse", "mailer-daemon")
ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}(?:@[A-Za-z0-9.-]{1,253})?")
USER_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,63}")  # the SSH login
DOMAIN_RE = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
HOST_RE = re.compile(r"[A-Za-z0-9.:_\[\]-]{1,253}")  # a name or an address, nothing a shell or URL would split
SERVER_PATH_RE = re.compile(r"/[^\x00-\x1f\x7f]*")  # absolute on the server, one line


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("mailfix", "{message}", {"message": message})


def _got(value: object) -> str:
    """Return `value` as the file wrote it (true, not True), cut short."""
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _matching(pattern: re.Pattern[str], message: str) -> AfterValidator:
    """A check that the string matches `pattern`; `message` (marked with N_) may name what it got as {got}."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise _fail(_(message).format(got=_got(value)))
        return value

    return AfterValidator(check)


def _choice(choices: tuple[str, ...], legacy: Callable[[bool], str] | None = None) -> PlainValidator:
    """One of `choices`; with `legacy`, a TOML boolean too (mapped to a choice)."""

    def check(value: Any) -> str:
        if legacy is not None and isinstance(value, bool):
            return legacy(value)
        if isinstance(value, str) and value in choices:
            return value
        if legacy is not None:
            message = _("must be one of {choices} (or true/false), got {got}")
        else:
            message = _("must be one of {choices}, got {got}")
        raise _fail(message.format(choices=", ".join(choices), got=_got(value)))

    return PlainValidator(check)


def _language(value: Any) -> str:
    """A language mailfix ships a catalog for, as a locale (`es-MX`, `es`, `en`): its catalog's name."""
    found = i18n.language_of(value) if isinstance(value, str) else None
    if found is None:
        raise _fail(_("must be one of {choices}, got {got}").format(choices="en, es-MX", got=_got(value)))
    return found


def _local_file(value: Any, info: Info) -> Path:
    """A file on this machine, relative to the config's folder unless absolute (~ expanded)."""
    if not isinstance(value, str) or not value:
        raise _fail(_("must be a file name (a non-empty string), got {got}").format(got=_got(value)))
    file = (info.context or {}).get("base", Path()) / Path(value).expanduser()
    if not file.is_file():
        raise _fail(_("file not found: {file}").format(file=file))
    return file


def _account(value: str) -> str:
    # Compared lower-cased with account names, never sent to a server: a plain name check is enough here.
    if not ACCOUNT_NAME_RE.fullmatch(value):
        raise _fail(_("expected an account name (user or user@domain), got {got}").format(got=_got(value)))
    return value.lower()


def _ipv4(value: Any) -> str:
    """An IPv4 address, or "" for none."""
    try:
        if isinstance(value, str) and (value == "" or ipaddress.IPv4Address(value)):
            return value
    except ValueError:
        pass
    raise _fail(_("must be an IPv4 address, got {got}").format(got=_got(value)))


def _dns_server(value: str) -> str:
    host = value.rsplit(":", 1)[0].strip("[]") if value.count(":") == 1 or "]:" in value else value
    try:
        ipaddress.ip_address(host)
    except ValueError:
        message = _("expected an IP address ('host' or 'host:port'), got {got}")
        raise _fail(message.format(got=_got(value))) from None
    return value


def _some(what: str) -> AfterValidator:
    """A check that the list is not empty (after its items passed theirs); `what` (marked with N_) it should hold."""

    def check(value: Any) -> Any:
        if not value:
            raise _fail(_("expected {what}").format(what=_(what)))
        return value

    return AfterValidator(check)


def _range(*, le: float, gt: float | None = None, ge: float | None = None) -> Any:
    """A finite number, a TOML integer or float (never a string or a boolean), in range."""
    return Field(strict=True, gt=gt, ge=ge, le=le, allow_inf_nan=False)


# What a key may hold. Strict: a boolean is a TOML boolean, a number a TOML number, a string a string.
Text = Annotated[str, Strict(), Field(min_length=1)]
SlackUser = Annotated[
    str, Strict(), _matching(SLACK_ID_RE, N_("malformed Slack user ID {got} (expected like U0123ABCD)"))
]
Channel = Annotated[
    str, Strict(), _matching(CHANNEL_ID_RE, N_("expected a Slack channel ID like C0123ABCD, got {got}"))
]
Domain = Annotated[str, Strict(), _matching(DOMAIN_RE, N_("expected a domain name like example.org, got {got}"))]
ServerPath = Annotated[
    str, Strict(), _matching(SERVER_PATH_RE, N_("must be an absolute path on the server, got {got}"))
]
LocalFile = Annotated[Path, PlainValidator(_local_file)]
Flag = Annotated[bool, Strict()]
Count = Annotated[int, Field(strict=True, ge=1, le=10**9)]
MINUTES = _range(gt=0, le=7 * 24 * 60)  # a week: more overflows nothing but is surely a typo
SECONDS = _range(gt=0, le=24 * 3600)


@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True)
class ServerConfig:
    """One `[[servers]]` table: how to reach a mail server and how to act on it."""

    name: Annotated[str, Strict(), _matching(SERVER_NAME_RE, N_("use lower-case letters, digits, '.', '_' and '-'"))]
    host: Annotated[str, Strict(), _matching(HOST_RE, N_("expected a host name or an IP address, got {got}"))]
    user: Annotated[str, Strict(), _matching(USER_RE, N_("expected a login name, got {got}"))]
    key_file: LocalFile
    known_hosts: LocalFile
    mail_domain: Domain
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 22
    postfix_log: ServerPath = "/var/log/mail.log"
    password_backend: Annotated[str, _choice(PASSWORD_BACKENDS)] = "chpasswd"
    passwd_file: ServerPath = "/etc/dovecot/users"  # for doveadm-passwd-file
    password_command: Annotated[str, Strict()] = ""  # for command: reads "user password" on stdin
    sasl_access_map: ServerPath = "/etc/postfix/sasl_access"
    archive_before_purge: Flag = True  # a wrong cleanup can be undone: `mailfix restore-inbox`
    archive_dir: ServerPath = "/var/backups/mailfix"
    restart_command: Text = "postfix stop; postfix start"
    reboot_command: Text = "/sbin/reboot"
    reboot_deadline_seconds: Annotated[int, Field(strict=True, ge=1, le=24 * 3600)] = 900
    connect_timeout_seconds: Annotated[float, _range(gt=0, le=600)] = 10.0
    command_timeout_seconds: Annotated[float, SECONDS] = 300.0
    # Large outputs (the queue listing, the log lines) travel gzip'ed: "auto" when the link's round
    # trip is 5 ms or more (not a LAN), "always" or "never"; true/false in the file mean always/never.
    compression: Annotated[str, _choice(COMPRESSION, lambda on: "always" if on else "never")] = "auto"
    public_ip: Annotated[str, PlainValidator(_ipv4)] = ""
    # Never named, offered, picked or contained; mailfix adds the SSH user and, with chpasswd, every
    # system account (uid below 1000) that the server has.
    protected_accounts: tuple[Annotated[str, Strict(), AfterValidator(_account)], ...] = DEFAULT_PROTECTED


@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True)
class Config:
    """Everything in mailfix.toml."""

    channel: Channel
    directors: Annotated[frozenset[SlackUser], _some(N_("a non-empty list of Slack user IDs"))]
    operators: Annotated[frozenset[SlackUser], _some(N_("a non-empty list of Slack user IDs"))]
    servers: Annotated[tuple[ServerConfig, ...], _some(N_("at least one [[servers]] table"))]
    readers: frozenset[SlackUser] = frozenset()  # may read status, list and reports, besides operators and directors
    cli_users: dict[str, SlackUser] = field(default_factory=dict)
    flood_threshold: Count = 500
    normal_queue_size: Count = 200
    hold_before_approval: Flag = True
    monitor_minutes: Annotated[float, MINUTES] = 15
    restart_monitor_minutes: Annotated[float, MINUTES] = 5
    check_interval_seconds: Annotated[float, SECONDS] = 30
    approval_timeout_minutes: Annotated[float, MINUTES] = 30
    allow_self_approval: Flag = False
    password_message_minutes: Annotated[float, MINUTES] = 60
    watch_interval_seconds: Annotated[float, _range(ge=0, le=24 * 3600)] = 0  # 0: no flood watch inside serve/socket
    dnsbl_zones: tuple[Domain, ...] = ()
    dns_servers: tuple[Annotated[str, Strict(), AfterValidator(_dns_server)], ...] = ()  # empty: the system resolver
    dns_timeout_seconds: Annotated[float, _range(gt=0, le=60)] = 2.0
    language: Annotated[str, PlainValidator(_language)] = "en"  # the team's: messages, buttons, CLI, report
    path: Path = Path("mailfix.toml")  # where it was read from: not a key of the file

    def server(self, name: str | None) -> ServerConfig:
        """Return the named server, or the only one when `name` is None."""
        if name is None and len(self.servers) == 1:
            return self.servers[0]
        for server in self.servers:
            if server.name == name:
                return server
        raise UnknownServer(name or _("(none given)"), [s.name for s in self.servers])


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


_CONFIG = TypeAdapter(Config)
_SERVER = TypeAdapter(ServerConfig)


def read_toml(path: Path) -> dict[str, Any]:
    """Return the TOML in `path`; raise ConfigError saying why it cannot be read."""
    try:
        return tomllib.loads(path.read_bytes().decode())
    except FileNotFoundError:
        raise ConfigError([_("{path}: file not found (copy mailfix.example.toml)").format(path=path)]) from None
    except OSError as exc:
        raise ConfigError([_("{path}: cannot read: {reason}").format(path=path, reason=exc.strerror)]) from None
    except UnicodeDecodeError:
        raise ConfigError([_("{path}: not UTF-8 text").format(path=path)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_("{path}: not valid TOML: {error}").format(path=path, error=exc)]) from None


def load_config(path: Path) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem. The process speaks its language."""
    config = parse_config(read_toml(path), path)
    i18n.use(config.language)
    return config


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    """Return the Config `raw` describes; raise ConfigError listing every problem, each naming its key."""
    problems = []
    values = {k: v for k, v in raw.items() if k != "path"}
    try:
        config = _CONFIG.validate_python(values, context={"base": path.parent})
    except ValidationError as exc:
        problems = [f"{path}: {_key(error['loc'], raw)}: {_say(error)}" for error in exc.errors()]
    problems += [f"{path}: {key}: {what}" for key, what in _across_keys(raw)]
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, path=path)


def valid_servers(raw: dict[str, Any], path: Path) -> list[tuple[int, ServerConfig]]:
    """Return the `[[servers]]` tables of `raw` that are valid on their own, with their index."""
    tables = raw.get("servers")
    found = []
    for i, table in enumerate(tables if isinstance(tables, list) else []):
        try:
            found.append((i, _SERVER.validate_python(table, context={"base": path.parent})))
        except ValidationError:
            continue  # parse_config names what is wrong with it
    return found


def server_key(i: int, raw: dict[str, Any]) -> str:
    """Return how problems name the i-th server: `servers[0] (mail1)`."""
    tables = raw.get("servers")
    table = tables[i] if isinstance(tables, list) and i < len(tables) else None
    name = table.get("name") if isinstance(table, dict) else None
    return f"servers[{i}] ({name})" if isinstance(name, str) and name else f"servers[{i}]"


def _across_keys(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the problems no single key's type can show: duplicate names, a backend without its command."""
    found = [("path", _("unknown key"))] if "path" in raw else []
    tables = raw.get("servers")
    seen: set[str] = set()
    for i, table in enumerate(tables if isinstance(tables, list) else []):
        if not isinstance(table, dict):
            continue
        name = table.get("name")
        if isinstance(name, str) and name in seen:
            found.append((f"{server_key(i, raw)}.name", _("duplicate server name {name}").format(name=repr(name))))
        if isinstance(name, str):
            seen.add(name)
        if table.get("password_backend") == "command" and not table.get("password_command"):
            required = _("required when password_backend = 'command'")
            found.append((f"{server_key(i, raw)}.password_command", required))
    return found


def _key(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """Return the key path an error's location names: `servers[0] (mail1).port`, `directors[1]`."""
    key = ""
    for part in loc:
        if isinstance(part, int):
            key = server_key(part, raw) if key == "servers" else f"{key}[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


# What a failed check means, in the words of the file (TOML), not of Python (translated where said: `_say`).
_MEANS = {
    "missing": N_("missing (required)"),
    "unexpected_keyword_argument": N_("unknown key"),
    "bool_type": N_("must be true or false"),
    "string_type": N_("must be a string"),
    "int_type": N_("must be a whole number"),
    "float_type": N_("must be a number"),
    "finite_number": N_("must be a finite number"),
    "list_type": N_("must be a list"),
    "tuple_type": N_("must be a list"),
    "frozen_set_type": N_("must be a list"),
    "dict_type": N_("must be a table"),
    "dataclass_type": N_("must be a table"),
    "string_too_short": N_("must not be empty"),
}
_BOUNDS = {
    "greater_than": N_("must be greater than {gt}"),
    "greater_than_equal": N_("must be at least {ge}"),
    "less_than_equal": N_("must be at most {le}"),
}


def _number(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _say(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "mailfix":
        return str(ctx["message"])
    if kind in ("missing", "unexpected_keyword_argument"):
        return _(_MEANS[kind])
    if kind in _BOUNDS:
        means = _(_BOUNDS[kind]).format(**{k: _number(v) for k, v in ctx.items()})
    elif kind in _MEANS:
        means = _(_MEANS[kind])
    else:  # pydantic's own words, in English
        means = error["msg"].replace("Input should be", "must be")
    return _("{means}, got {got}").format(means=means, got=_got(error["input"]))
