"""What the bot needs besides a valid mailfix.toml: the secrets of its mode and each server's host key.

`mailfix check-config` reports all of it at once; `serve` and `socket` refuse to start on the same
secret problems. Nothing here connects anywhere: the host key is looked up in known_hosts only.
"""

from __future__ import annotations

from bot.config import Config, Secrets, ServerConfig, parse_config, read_toml, server_key, valid_servers
from bot.core.vault import Vault
from bot.errors import ConfigError
from bot.i18n import N_, _

MODES = ("http", "socket", "terminal")
# (variable, Secrets attribute, prefix, what it is and where Slack shows it: translated where said)
_BOT = ("SLACK_BOT_TOKEN", "slack_bot_token", "xoxb-", N_("the bot token, xoxb-…, OAuth & Permissions"))
_SIGNING = ("SLACK_SIGNING_SECRET", "slack_signing_secret", "", N_("Basic Information → App Credentials"))
_APP = (
    "SLACK_APP_TOKEN",
    "slack_app_token",
    "xapp-",
    N_(
        "Socket Mode needs an app-level token (xapp-…) with the connections:write scope; "
        "or run `mailfix serve` for HTTP mode"
    ),
)
NEEDS = {"http": (_BOT, _SIGNING), "socket": (_BOT, _APP), "terminal": ()}


def default_mode(secrets: Secrets) -> str:
    """Return the mode the environment is set up for: socket, http, or terminal when no Slack secret is set."""
    if secrets.slack_app_token and not secrets.slack_signing_secret:
        return "socket"
    return "http" if secrets.slack_signing_secret or secrets.slack_bot_token else "terminal"


def is_placeholder(value: str) -> bool:
    """Return whether `value` is still an example's stand-in (`xoxb-...`, `…`, `<token>`), not a secret."""
    return "..." in value or "…" in value or (value.startswith("<") and value.endswith(">"))


def secret_problems(secrets: Secrets, mode: str) -> list[str]:
    """Return one line per missing or malformed secret that `mode` needs (never quoting a secret)."""
    problems = [problem] if (problem := Vault(secrets.secret_key).problem) else []
    for variable, attribute, prefix, about in NEEDS[mode]:
        value: str = getattr(secrets, attribute)
        what = _(about)
        if not value:
            unset = _("{variable} is not set: {what}") if prefix == "xapp-" else _("{variable} is not set ({what})")
            problems.append(unset.format(variable=variable, what=what))
        elif is_placeholder(value):
            placeholder = _("{variable} is still the placeholder from .env.example: put the real value there ({what})")
            problems.append(placeholder.format(variable=variable, what=what))
        elif not value.startswith(prefix):
            problems.append(
                _("{variable} does not start with {prefix} ({what})").format(
                    variable=variable, prefix=prefix, what=what
                )
            )
    return problems


def known_hosts_problem(server: ServerConfig) -> str | None:
    """Return why SSH would refuse `server` for its known_hosts file, or None when it holds the server's key."""
    # Imported here: only check-config reads host keys outside bot.mail, and the rest of bot/ loads no SSH library.
    from paramiko import HostKeys, SSHException
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

    file = server.known_hosts
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        return _("cannot read {file}: {reason}").format(file=file, reason=exc.strerror)
    except UnicodeDecodeError:
        return _("{file} is not a known_hosts file (not text)").format(file=file)
    keys = HostKeys()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = HostKeyEntry.from_line(line.strip())
        except (SSHException, InvalidHostKey):
            entry = None
        if entry is None:
            unreadable = _("{file} line {number} is not a host key paramiko can read (host key-type base64-key)")
            return unreadable.format(file=file, number=number)
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    entry_name = server.host if server.port == 22 else f"[{server.host}]:{server.port}"
    add = _("add it with `ssh-keyscan -p {port} {host} >> {file}` (check its fingerprint on the server)").format(
        port=server.port, host=server.host, file=file
    )
    if not keys.keys():
        return _("{file} holds no host keys: {add}").format(file=file, add=add)
    if keys.lookup(entry_name) is None:
        return _("{file} holds no key for {entry}: {add}").format(file=file, entry=entry_name, add=add)
    return None


def check_config(secrets: Secrets, mode: str) -> Config:
    """Return the configuration when everything `mode` needs is in order; else raise ConfigError listing it all."""
    path, problems = secrets.config_path, []
    config, raw = None, {}
    try:
        raw = read_toml(path)
        config = parse_config(raw, path)
    except ConfigError as exc:
        problems += exc.problems
    for i, server in valid_servers(raw, path):
        if problem := known_hosts_problem(server):
            problems.append(f"{path}: {server_key(i, raw)}.known_hosts: {problem}")
    problems += secret_problems(secrets, mode)
    if problems or config is None:
        raise ConfigError(problems)
    return config
