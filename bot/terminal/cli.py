"""The `mailfix` command: the terminal front-end of the runbook, for the day Slack is unreachable.

`main(argv)` returns an exit code (0 ok, 1 a mailfix error, 2 bad usage) so tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import TextIO, cast

from dotenv import load_dotenv

from bot.config import Config, Secrets, load_config
from bot.core import diagnosis as diagnosis_codec
from bot.core.mailserver import validate_account
from bot.core.pool import ServerPool
from bot.core.report import report_json, report_markdown
from bot.core.requests import BadRequest, Request, parse_id
from bot.core.runbook import Runbook
from bot.core.table import Event
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.errors import ConfigError, MailfixError, NotAuthorized
from bot.terminal.diagnosis import render_diagnosis
from bot.terminal.notifier import TerminalNotifier
from bot.terminal.status import describe, one_line
from bot.terminal.text import PrintableOut
from bot.wiring import build_runbook, open_repository, server_factory
from storage.db import upgrade

log = logging.getLogger("mailfix")
FRONTENDS = "mailfix.frontends"  # entry-point group: a callable that adds verbs to the subparsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailfix", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="open an incident on a server and contain the flood").add_argument("server", nargs="?")
    sub.add_parser("status", help="show one incident, or the open ones").add_argument("id", nargs="?", type=incident_id)
    sub.add_parser("list", help="list recent incidents")
    for name, text in (
        ("abort", "abort an incident"),
        ("retry", "retry the step that failed"),
        ("resolve", "resolve a monitored incident now (its last check was normal)"),
        ("password", "show the new password once, to tell the user by phone, then erase it"),
        ("restore-inbox", "put back the INBOX that the incident's cleanup archived and emptied (directors)"),
    ):
        sub.add_parser(name, help=text).add_argument("id", type=incident_id)
    approve = sub.add_parser("approve", help="approve the pending cleanup of ACCOUNT, or the reboot (directors)")
    approve.add_argument("id", type=incident_id)
    target = approve.add_mutually_exclusive_group(required=True)
    target.add_argument("--account", metavar="ADDRESS", help="the account whose cleanup you approve")
    target.add_argument("--reboot", action="store_true", help="approve the pending reboot of the server")
    renew = sub.add_parser("renew", help="ask the directors again after an approval expired")
    renew.add_argument("id", type=incident_id)
    asked = renew.add_mutually_exclusive_group(required=True)
    asked.add_argument("--account", metavar="ADDRESS", help="the account whose cleanup approval expired")
    asked.add_argument("--reboot", action="store_true", help="the reboot approval expired")
    contain = sub.add_parser("contain", help="contain another account whose flood appeared while monitoring")
    contain.add_argument("id", type=incident_id)
    contain.add_argument("account")
    reject = sub.add_parser("reject", help='"not this account": release it and look again (directors)')
    reject.add_argument("id", type=incident_id)
    reject.add_argument("--account", metavar="ADDRESS", required=True, help="the suspect you say it is not")
    reject.add_argument("--pick", metavar="ACCOUNT", help="contain this account instead")
    report = sub.add_parser("report", help="the incident report")
    report.add_argument("id", type=incident_id)
    report.add_argument("--format", choices=("md", "json"), default="md")
    diagnose = sub.add_parser("diagnose", help="read-only diagnosis of a server's queue (no incident)")
    diagnose.add_argument("server", nargs="?")
    diagnose.add_argument("--json", action="store_true")
    watch = sub.add_parser("watch", help="poll every server and alert on floods and unreachable servers")
    watch.add_argument("--once", action="store_true", help="one poll only")
    sub.add_parser("dnsbl", help="check a server's public_ip on the DNS blocklists").add_argument("server", nargs="?")
    run = sub.add_parser("run", help="resume unfinished steps and run monitoring until nothing is due")
    run.add_argument("--once", action="store_true", help="one pass only")
    sub.add_parser("check-config", help="validate mailfix.toml and report every problem")
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=("upgrade",))
    # Front-ends that serve people elsewhere (Slack's `serve` and `socket`) add their verbs here: they
    # import the core, never the other way round.
    for entry in entry_points(group=FRONTENDS):
        entry.load()(sub)
    return parser


def incident_id(text: str) -> int:
    """argparse type: an incident number (ASCII digits, bounded)."""
    try:
        return parse_id(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = cast(TextIO, PrintableOut(out or sys.stdout))  # queue data never reaches the terminal as escapes
    load_dotenv()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    secrets = Secrets.from_env()
    try:
        return _dispatch(args, secrets, out)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    except MailfixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, secrets: Secrets, out: TextIO) -> int:
    command = args.command
    if command == "check-config":
        config = load_config(secrets.config_path)
        print(f"{secrets.config_path}: ok ({len(config.servers)} servers)", file=out)
        if problem := Vault(secrets.secret_key).problem:
            print(f"warning: {problem}", file=out)
        return 0
    if command == "db":
        upgrade(secrets.database_url)
        print("database is up to date", file=out)
        return 0
    if hasattr(args, "frontend"):  # a verb a front-end added (`serve`, `socket`)
        return int(args.frontend(args, secrets, load_config(secrets.config_path)))
    config = load_config(secrets.config_path)
    if command == "diagnose":
        return _diagnose(config, args, out)
    if command == "dnsbl":
        return _dnsbl(config, args.server, out)
    if command == "watch":
        return _watch(config, secrets, once=args.once, out=out)
    runbook = build_runbook(secrets, TerminalNotifier(out), config)
    try:
        return _incident_command(runbook, args, out)
    finally:
        runbook.close()


def _incident_command(runbook: Runbook, args: argparse.Namespace, out: TextIO) -> int:
    command, config = args.command, runbook.config
    if command in ("list", "status", "report"):
        runbook.may_read(cli_actor(config))
    if command == "list":
        for incident in runbook.repo.list_incidents():
            print(one_line(incident), file=out)
        return 0
    if command == "status":
        incidents = [runbook.get(args.id)] if args.id else runbook.repo.list_incidents(open_only=True)
        for incident in incidents:
            print(describe(runbook.get(incident.id)), file=out)
        if not incidents:
            print("no open incidents", file=out)
        return 0
    if command == "report":
        incident = runbook.get(args.id)
        audit = runbook.repo.audit_events(incident_id=incident.id)
        if args.format == "json":
            print(json.dumps(report_json(incident, audit), indent=2), file=out)
        else:
            print(report_markdown(incident, audit), file=out)
        return 0
    if command == "run":
        if runbook.vault.problem:  # a 3 a.m. cleanup must not be the first to find out
            raise ConfigError([runbook.vault.problem])
        return _run(runbook, once=args.once)
    actor = cli_actor(config)
    if command == "start":
        incident = runbook.start(server=args.server, actor=actor)
    elif command == "password":
        return _reveal_password(runbook, args.id, actor, out)
    elif command == "restore-inbox":
        restored = runbook.restore_inbox(args.id, actor=actor)
        print(f"#{args.id}: {restored} messages restored to the INBOX", file=out)
        return 0
    else:
        incident = runbook.act(_request(args), actor=actor)
    print(describe(runbook.get(incident.id)), file=out)
    return 0


def _request(args: argparse.Namespace) -> Request:
    """Return what the command asks, bound to the account or reboot it names."""
    if args.command == "approve":
        event = Event.APPROVE_REBOOT if args.reboot else Event.APPROVE
        return Request(args.id, event, account=validate_account(args.account) if args.account else None)
    if args.command == "reject":
        pick = validate_account(args.pick) if args.pick else None
        return Request(args.id, Event.PICK if pick else Event.REJECT, account=validate_account(args.account), pick=pick)
    if args.command == "contain":
        return Request(args.id, Event.CONTAIN, pick=validate_account(args.account))
    if args.command == "renew":
        account = validate_account(args.account) if args.account else None
        return Request(args.id, Event.RENEW, account=account, reboot=args.reboot)
    events = {"abort": Event.ABORT, "retry": Event.RETRY, "resolve": Event.RESOLVE_NOW}
    return Request(args.id, events[args.command])


def cli_actor(config: Config) -> str:
    """Return the Slack ID of the person at the terminal, from `cli_users`."""
    login = local_login()
    actor = config.cli_users.get(login)
    if actor is None:
        raise NotAuthorized(login, "use mailfix", f"local user {login!r} is not in cli_users of {config.path}")
    return actor


def local_login() -> str:
    """Return who is at the terminal: the account running mailfix, or for root the sudo caller.

    Environment variables such as USER are not trusted: anyone could set them to a director's name.
    """
    login = pwd.getpwuid(os.getuid()).pw_name
    if login == "root" and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]  # root can do anything anyway; sudo tells who asked
    return login


def _reveal_password(runbook: Runbook, incident_id: int, actor: str, out: TextIO) -> int:
    config = runbook.config
    if actor not in config.operators | config.directors:
        raise NotAuthorized(actor, "read the password", "only operators or directors may read the new password")
    incident = runbook.get(incident_id)
    if incident.password_ciphertext is None:
        print("no password is waiting: it was delivered (and erased) already, or none was set", file=out)
        return 1
    password = runbook.vault.decrypt(incident.password_ciphertext)
    print(f"New password for {incident.suspect_address}: {password.reveal()}", file=out)
    print(
        "It is now erased from mailfix: tell the user, and not to open attachments from unknown senders.",
        file=out,
    )
    runbook.withdraw_password(incident, actor, "password_revealed")  # read once at the terminal: gone
    return 0


def _run(runbook: Runbook, *, once: bool) -> int:
    interval, upkeep = min(runbook.config.check_interval_seconds, 5.0), Upkeep(runbook)
    while True:
        upkeep.run_due()
        if once or not any(upkeep.has_work(i) for i in runbook.repo.list_incidents(open_only=True)):
            return 0
        time.sleep(interval)


def _diagnose(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    server = server_factory(config)(config.server(args.server).name)
    try:
        diagnosis = server.diagnose(flood_threshold=config.flood_threshold)
    finally:
        server.close()
    print(
        json.dumps(diagnosis_codec.to_json(diagnosis), indent=2) if args.json else render_diagnosis(diagnosis),
        file=out,
    )
    return 0


def _dnsbl(config: Config, server_name: str | None, out: TextIO) -> int:
    from bot.mail.dnsbl import blocklist_report

    server = config.server(server_name)
    report = blocklist_report(config, server)
    if report is None:
        print(f"nothing to check: set public_ip of {server.name} and dnsbl_zones in {config.path}", file=out)
        return 1
    print(report, file=out)
    return 0


def _watch(config: Config, secrets: Secrets, *, once: bool, out: TextIO) -> int:
    from bot.core.watch import Watcher
    from bot.terminal.alerts import TerminalAlerts

    servers = ServerPool(server_factory(config))
    watcher = Watcher(config, open_repository(secrets), servers, TerminalAlerts(out))
    interval = config.watch_interval_seconds or 60  # 0 turns the watch off inside serve, not here
    try:
        while True:
            watcher.poll_once()
            if once:
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C is how a terminal watch ends
        return 0
    finally:
        servers.close()
