"""Which smtpd services consult the check_sasl_access map that blocks a login, from the effective Postfix settings.

Postfix decides per smtpd service: main.cf gives every service its defaults, and master.cf's
`-o name=value` overrides them for one service (submission usually sets its own
smtpd_recipient_restrictions there). A value may name another parameter (`$mua_recipient_restrictions`,
`${name}`, `$(name)`) or a restriction class (smtpd_restriction_classes). So the server sends, in one
command, `postconf` (every main.cf parameter as Postfix sees it), `postconf -M` (the services) and
`postconf -P` (their overrides), and each smtpd service's restriction lists are worked out here.

A list consults the map when `check_sasl_access TYPE:PATH` names the configured path before anything
that lets every logged-in client through (`permit`, `permit_sasl_authenticated`). Only a service that
accepts SASL logins (smtpd_sasl_auth_enable, as it is for that service) needs to consult it.
postconf's output is data: it is parsed here and nothing of it goes back to a shell.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.i18n import _
from bot.mail.commands import command_failed, reblocked
from bot.mail.executor import SSHExecutor

log = logging.getLogger(__name__)

POSTCONF = "/usr/sbin/postconf"
RESTRICTION_LISTS = tuple(
    f"smtpd_{stage}_restrictions" for stage in ("client", "helo", "sender", "relay", "recipient", "data", "end_of_data")
)
# Section markers between the three outputs: postconf never prints a line starting with `#`.
_SERVICES, _OVERRIDES = "#mailfix: postconf -M", "#mailfix: postconf -P"
_SCRIPT = f'"$1" && echo "{_SERVICES}" && "$1" -M && echo "{_OVERRIDES}" && "$1" -P'
_SETTING_RE = re.compile(r"([A-Za-z0-9_]+)\s*=\s*(.*)")
_OVERRIDE_RE = re.compile(r"(\S+/(?:inet|unix|unix-dgram|fifo|pass))/([A-Za-z0-9_]+)\s*=\s*(.*)")
# $name, ${name}, $(name), and the conditional ${name?text} / ${name:text}.
_REFERENCE_RE = re.compile(r"\$(?:([A-Za-z0-9_]+)|\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)\))")
_SEPARATORS = re.compile(r"[\s,]+")
_LETS_LOGINS_THROUGH = frozenset({"permit", "permit_sasl_authenticated"})
_MAX_DEPTH = 10  # references and classes nested deeper than this are a loop


@dataclass(frozen=True)
class Service:
    """One smtpd service of master.cf and what its effective settings say about the map."""

    name: str  # service/type, e.g. "submission/inet"
    sasl: bool  # accepts SASL logins
    consults: bool  # a restriction list checks the map before letting logged-in clients through


@dataclass(frozen=True)
class Blocking:
    """Where a login block in the map takes effect: the smtpd services that do and do not consult it."""

    path: str
    kind: str  # the map's table type, for postmap (hash when no service names it)
    services: tuple[Service, ...] = ()
    error: str = ""  # the configuration could not be read

    @property
    def unprotected(self) -> tuple[str, ...]:
        """Return the services that accept SASL logins but do not consult the map."""
        return tuple(s.name for s in self.services if s.sasl and not s.consults)

    @property
    def warning(self) -> str:
        """Return the warning a person must see ('' when every service that takes logins consults the map)."""
        target = f"check_sasl_access {self.kind}:{self.path}"
        if self.error:
            return _("could not tell whether Postfix consults {target} ({error})").format(
                target=target, error=self.error
            )
        if not self.services:  # an empty or unreadable master.cf: no reason to think blocking works
            return _("postconf -M lists no smtpd service: could not tell whether Postfix consults {target}").format(
                target=target
            )
        if not any(s.sasl for s in self.services):
            return ""
        if self.unprotected:
            return _(
                "{services} accept SASL logins but do not consult {target}: a blocked login can still send through them"
            ).format(services=", ".join(self.unprotected), target=target)
        return ""

    def describe(self) -> str:
        """Return one line saying which smtpd services consult the map and which do not."""
        if self.error:
            return _("Warning: {warning}").format(warning=self.warning)
        consulting = ", ".join(s.name for s in self.services if s.consults)
        others = ", ".join(_takes_logins(s) for s in self.services if not s.consults)
        if consulting and others:
            text = _("{target} is consulted by {services}; not by {others}")
        elif consulting:
            text = _("{target} is consulted by {services}")
        elif others:
            text = _("{target} is consulted by no smtpd service; not by {others}")
        else:
            text = _("{target} is consulted by no smtpd service")
        text = text.format(target=f"check_sasl_access {self.kind}:{self.path}", services=consulting, others=others)
        if self.warning:
            text += ". " + _("Warning: {warning}").format(warning=self.warning)
        return text


def _takes_logins(service: Service) -> str:
    """Return a service's name and whether it accepts SASL logins, as people read it."""
    if service.sasl:
        return _("{service} (accepts SASL logins)").format(service=service.name)
    return _("{service} (takes no SASL logins)").format(service=service.name)


def parse_settings(text: str) -> dict[str, str]:
    """Return `name = value` lines as a dict; continuation lines (leading space) join, comments and junk are skipped."""
    settings: dict[str, str] = {}
    for line in _logical_lines(text):
        match = _SETTING_RE.fullmatch(line)
        if match:
            settings[match[1]] = match[2].strip()
    return settings


def parse_overrides(text: str) -> dict[str, dict[str, str]]:
    """Return `postconf -P` output (`service/type/name = value`) as service/type -> {name: value}."""
    overrides: dict[str, dict[str, str]] = {}
    for line in _logical_lines(text):
        match = _OVERRIDE_RE.fullmatch(line)
        if match:
            overrides.setdefault(match[1], {})[match[2]] = match[3].strip()
    return overrides


def parse_smtpd_services(text: str) -> list[str]:
    """Return the service/type of every `postconf -M` entry whose command is smtpd, in master.cf order."""
    services = []
    for line in _logical_lines(text):
        fields = line.split()
        if len(fields) >= 8 and fields[7] == "smtpd":
            services.append(f"{fields[0]}/{fields[1]}")
    return services


def assess(
    path: str, main: Mapping[str, str], services: list[str], overrides: Mapping[str, Mapping[str, str]]
) -> Blocking:
    """Return, for each smtpd service, whether it accepts SASL logins and consults `path`'s map."""
    found: list[Service] = []
    kinds: list[str] = []
    for name in services:
        params = {**main, **overrides.get(name, {})}
        service_kinds = [kind for stage in RESTRICTION_LISTS if (kind := _consulted(path, stage, params))]
        sasl = _expand(params.get("smtpd_sasl_auth_enable", "no"), params).strip().lower() in ("yes", "true")
        found.append(Service(name, sasl=sasl, consults=bool(service_kinds)))
        kinds.extend(service_kinds)
    return Blocking(path=path, kind=kinds[0] if kinds else "hash", services=tuple(found))


def read_blocking(executor: SSHExecutor, path: str) -> Blocking:
    """Read the server's effective Postfix settings (one command) and return where the map is consulted."""
    compress = executor.compresses()
    process = executor.start(reblocked(["sh", "-c", _SCRIPT, "sh", POSTCONF], gzip=compress), gunzip=compress)
    try:
        process.close_stdin()
        text = b"".join(process.blocks()).decode("utf-8", "replace")
        result = process.wait(check=False)
    finally:
        process.close()
    if not result.ok:
        return Blocking(path=path, kind="hash", error=str(command_failed(executor.host, result)))
    return parse_postconf(path, text)


def parse_postconf(path: str, text: str) -> Blocking:
    """Return where `path`'s map is consulted, from the output of the command read_blocking runs."""
    sections: dict[str, list[str]] = {"": [], _SERVICES: [], _OVERRIDES: []}
    current = ""
    for line in text.splitlines():
        if line in sections:
            current = line
        else:
            sections[current].append(line)
    main, services, overrides = ("\n".join(lines) for lines in sections.values())
    return assess(path, parse_settings(main), parse_smtpd_services(services), parse_overrides(overrides))


def _logical_lines(text: str) -> list[str]:
    """Return the lines of `text` with continuation lines joined, without blank and comment lines."""
    lines: list[str] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and lines:
            lines[-1] += " " + raw.strip()
        elif not raw[0].isspace():
            lines.append(raw.rstrip())
    return lines


def _consulted(path: str, stage: str, params: Mapping[str, str]) -> str:
    """Return the map's table type when the restriction list `stage` consults `path` in time ('' if not)."""
    words = _restrictions(params.get(stage, ""), params, depth=0)
    for i, word in enumerate(words):
        if word in _LETS_LOGINS_THROUGH:
            return ""
        if word == "check_sasl_access" and i + 1 < len(words):
            kind = _kind_of(words[i + 1], path)
            if kind:
                return kind
    return ""


def _restrictions(value: str, params: Mapping[str, str], *, depth: int) -> list[str]:
    """Return the words of a restriction list, with references expanded and restriction classes inlined."""
    if depth > _MAX_DEPTH:
        return []
    classes = set(_SEPARATORS.split(_expand(params.get("smtpd_restriction_classes", ""), params)))
    words: list[str] = []
    for word in _SEPARATORS.split(_expand(value, params)):
        if word in classes and word in params:
            words.extend(_restrictions(params[word], params, depth=depth + 1))
        elif word:
            words.append(word)
    return words


def _expand(value: str, params: Mapping[str, str], depth: int = 0) -> str:
    """Return `value` with `$name` references replaced by the parameters' values (unknown: empty)."""
    if depth > _MAX_DEPTH or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[5]
        found = _expand(params.get(name, ""), params, depth + 1)
        if match[3] == "?":
            return match[4] if found else ""
        if match[3] == ":":
            return "" if found else match[4]
        return found

    return _REFERENCE_RE.sub(replace, value)


def _kind_of(table: str, path: str) -> str:
    """Return the table type of `table` (`hash:/etc/postfix/sasl_access`, `proxy:lmdb:...`) if it is `path`."""
    kind, __, name = table.removeprefix("proxy:").partition(":")
    return kind if name == path and kind else ""
