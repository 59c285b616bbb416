"""The read verbs of `mailfix`: list, status, report, diagnose, dnsbl, watch; text for people, --json for scripts.

Text is plain: Slack's emoji codes and mentions become words and names (`plain`); JSON follows the
versioned schemas of bot/terminal/jsonout.py and bot/core/diagnosis.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from bot.config import Config, Secrets
from bot.core import diagnosis as diagnosis_codec
from bot.core.pool import ServerPool
from bot.core.progress import Reporter
from bot.core.report import report_json, report_markdown
from bot.core.runbook import Runbook
from bot.core.watch import FLOOD, UNREACHABLE, Watcher, find_flood
from bot.errors import ConfigError
from bot.i18n import _
from bot.terminal.alerts import TerminalAlerts
from bot.terminal.args import FOUND, OK
from bot.terminal.args import UNREACHABLE as UNREACHABLE_EXIT
from bot.terminal.diagnosis import render_diagnosis, suspect_line
from bot.terminal.jsonout import dnsbl_json, incidents_json
from bot.terminal.progressbar import ProgressBar
from bot.terminal.status import describe, one_line
from bot.terminal.text import PrintableOut, paint, plain
from bot.wiring import open_repository, server_factory
from storage.models import Incident


def names_of(config: Config) -> dict[str, str]:
    """Return Slack user ID -> local login, from `cli_users`: the names the terminal knows people by."""
    names: dict[str, str] = {}
    for login, slack_id in sorted(config.cli_users.items()):
        names.setdefault(slack_id, login)
    return names


def show_incidents(
    incidents: Sequence[Incident], out: TextIO, *, as_json: bool, full: bool, names: Mapping[str, str]
) -> int:
    """Print incidents (loaded whole): one line each, or `full` with steps and next commands; or JSON."""
    if as_json:
        _dump(incidents_json(incidents), out)
        return OK
    for incident in incidents:
        print(plain(describe(incident) if full else one_line(incident), names), file=out)
    if full and not incidents:
        print(_("no open incidents"), file=out)
    return OK


def show_report(runbook: Runbook, incident_id: int, out: TextIO, *, fmt: str, names: Mapping[str, str]) -> int:
    incident = runbook.get(incident_id)
    audit = runbook.repo.audit_events(incident_id=incident.id)
    if fmt == "json":
        _dump(report_json(incident, audit), out)
    else:
        print(plain(report_markdown(incident, audit), names), file=out)
    return OK


def diagnose(config: Config, server_name: str | None, out: TextIO, *, as_json: bool) -> int:
    """Print a server's diagnosis; return FOUND when it holds a flood."""
    server = server_factory(config)(config.server(server_name).name)
    try:
        bar = ProgressBar.on_stderr()
        with Reporter(bar.show if bar else lambda shown: None, _("reading the queue")) as progress:
            diagnosis = server.diagnose(flood_threshold=config.flood_threshold, progress=progress)
    finally:
        server.close()
    if as_json:
        _dump(diagnosis_codec.to_json(diagnosis), out)
    else:
        suspect = suspect_line(diagnosis)
        for line in render_diagnosis(diagnosis).splitlines():
            if suspect and line == suspect:
                paint(out, line, "red")
                line = ""
            print(line, file=out)
    return FOUND if find_flood(diagnosis, config.flood_threshold) else OK


def dnsbl(config: Config, server_name: str | None, out: TextIO, *, as_json: bool) -> int:
    """Print the blocklist verdicts of a server's public_ip; return FOUND when a zone lists it."""
    from bot.mail.dnsbl import check_listings, render

    server = config.server(server_name)
    if not server.public_ip or not config.dnsbl_zones:
        problem = _("nothing to check: set public_ip of {server} and dnsbl_zones in {path}")
        raise ConfigError([problem.format(server=server.name, path=config.path)])
    try:
        listings = check_listings(
            server.public_ip, config.dnsbl_zones, servers=config.dns_servers, timeout=config.dns_timeout_seconds
        )
    except ValueError as exc:  # a bad public_ip or dns_servers entry
        raise ConfigError([f"{config.path}: {exc}"]) from None
    if as_json:
        _dump(dnsbl_json(server.name, server.public_ip, listings), out)
    else:
        print(plain(render(server.public_ip, listings)), file=out)
    return FOUND if any(x.listed for x in listings) else OK


def watch(config: Config, secrets: Secrets, out: TextIO, *, once: bool, as_json: bool) -> int:
    """Poll every server until interrupted (or once); with `once`, return what the poll found."""
    servers = ServerPool(server_factory(config))
    repo = open_repository(secrets)
    watcher = Watcher(config, repo, servers, TerminalAlerts(out, as_json=as_json))
    interval = config.watch_interval_seconds or 60  # 0 turns the watch off inside serve, not here
    try:
        while True:
            watcher.poll_once()
            if once:
                alerts = repo.open_alerts()
                if any(a.kind == FLOOD and not a.details.get("incident_id") for a in alerts):
                    return FOUND
                return UNREACHABLE_EXIT if any(a.kind == UNREACHABLE for a in alerts) else OK
            if isinstance(out, PrintableOut) and out.closed:  # `mailfix watch | grep …` ended
                return OK
            time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C is how a terminal watch ends
        return OK
    finally:
        servers.close()


def _dump(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2, default=str), file=out)
