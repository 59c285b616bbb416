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
from typing import TextIO

from dotenv import load_dotenv

from bot.config import Config, Secrets, load_config
from bot.core import monitoring
from bot.core.mailserver import Account, Password
from bot.core.notifier import Delivery, MessageRef
from bot.core.report import report_json, report_markdown
from bot.core.runbook import Runbook, State
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.errors import ConfigError, MailfixError, NotAuthorized
from bot.wiring import build_runbook, open_repository, server_factory
from storage.db import upgrade
from storage.models import Incident

log = logging.getLogger("mailfix")


class TerminalNotifier:
    """Prints progress to the terminal; the password is never printed here (see `mailfix password`)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def incident_changed(self, incident: Incident) -> MessageRef | None:
        print(f"#{incident.id} {incident.server}: {incident.state.replace('_', ' ')}", file=self.out, flush=True)
        return None

    def step_logged(self, incident: Incident, text: str) -> None:
        print(f"#{incident.id}   {text}", file=self.out, flush=True)

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        note = f"tell {account.address} by phone: run `mailfix password {incident.id}` to read the new password once"
        return Delivery(via="terminal", confirmed=False, note=note)

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        print(f"#{incident.id}   the new password is erased from mailfix", file=self.out, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailfix", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="open an incident on a server and contain the flood").add_argument("server", nargs="?")
    sub.add_parser("status", help="show one incident, or the open ones").add_argument("id", nargs="?", type=int)
    sub.add_parser("list", help="list recent incidents")
    for name, text in (
        ("approve", "approve the pending cleanup or reboot (directors)"),
        ("abort", "abort an incident"),
        ("retry", "retry the step that failed"),
        ("resolve", "resolve a monitored incident now (its last check was normal)"),
        ("password", "show the new password once, to tell the user by phone, then erase it"),
    ):
        sub.add_parser(name, help=text).add_argument("id", type=int)
    contain = sub.add_parser("contain", help="contain another account whose flood appeared while monitoring")
    contain.add_argument("id", type=int)
    contain.add_argument("account")
    reject = sub.add_parser("reject", help='"not this account": release it and look again (directors)')
    reject.add_argument("id", type=int)
    reject.add_argument("--pick", metavar="ACCOUNT", help="contain this account instead")
    report = sub.add_parser("report", help="the incident report")
    report.add_argument("id", type=int)
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
    serve = sub.add_parser("serve", help="run the Slack bot in HTTP mode (POST /slack/events, GET /healthz)")
    serve.add_argument("--host", help="address to listen on (default: $HOST, else 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 3000)")
    sub.add_parser("socket", help="run the Slack bot in Socket Mode (needs SLACK_APP_TOKEN)")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
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
        if not Vault(secrets.secret_key).ready:
            print("warning: MAILFIX_SECRET_KEY is not set: passwords cannot be changed", file=out)
        return 0
    if command == "db":
        upgrade(secrets.database_url)
        print("database is up to date", file=out)
        return 0
    if command in ("serve", "socket"):
        from handlers import serve

        config = load_config(secrets.config_path)
        if command == "serve":
            return serve.serve(secrets, config, args.host, args.port)
        return serve.socket_mode(secrets, config)
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
    if command == "list":
        for incident in runbook.repo.list_incidents():
            print(_one_line(incident), file=out)
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
        return _run(runbook, once=args.once)
    actor = cli_actor(config)
    if command == "start":
        incident = runbook.start(server=args.server, actor=actor)
    elif command == "approve":
        incident = runbook.approve(args.id, actor=actor)
    elif command == "reject":
        incident = runbook.reject(args.id, actor=actor, pick=args.pick)
    elif command == "contain":
        incident = runbook.contain(args.id, actor=actor, account=args.account)
    elif command == "abort":
        incident = runbook.abort(args.id, actor=actor)
    elif command == "retry":
        incident = runbook.retry(args.id, actor=actor)
    elif command == "resolve":
        incident = runbook.resolve_now(args.id, actor=actor)
    elif command == "password":
        return _reveal_password(runbook, args.id, actor, out)
    print(describe(runbook.get(incident.id)), file=out)
    return 0


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
    runbook.confirm_password(incident_id, actor=actor)
    return 0


def _run(runbook: Runbook, *, once: bool) -> int:
    interval, upkeep = min(runbook.config.check_interval_seconds, 5.0), Upkeep(runbook)
    while True:
        upkeep.run_due()
        if once or not any(upkeep.has_work(i) for i in runbook.repo.list_incidents(open_only=True)):
            return 0
        time.sleep(interval)


def _diagnose(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    from bot.mail.diagnosis import diagnosis_to_json, render_diagnosis

    server = server_factory(config)(config.server(args.server).name)
    try:
        diagnosis = server.diagnose(flood_threshold=config.flood_threshold)
    finally:
        server.close()
    print(
        json.dumps(diagnosis_to_json(diagnosis), indent=2) if args.json else render_diagnosis(diagnosis),
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
    from bot.core.watch import TerminalAlerts, Watcher

    watcher = Watcher(config, open_repository(secrets), server_factory(config), TerminalAlerts(out))
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
        watcher.close()


def _one_line(incident: Incident) -> str:
    account, opened = incident.suspect_address or "-", f"{incident.opened_at:%Y-%m-%d %H:%M}"
    return f"#{incident.id:<4} {incident.server:<12} {incident.state:<26} {account:<30} {opened}"


def describe(incident: Incident) -> str:
    """Return a multi-line status of an incident for the terminal."""
    lines = [_one_line(incident)]
    suspect = (incident.diagnosis or {}).get("suspect") or {}
    if suspect:
        lines.append(
            f"  queued from it {suspect['queued_from']}, to it {suspect['queued_to']}, "
            f"by its login {suspect['queued_by_login']}"
        )
    for approval in incident.approvals:
        decision = approval.decision or f"pending (expires {approval.expires_at:%H:%M})"
        lines.append(f"  {approval.what} approval: {decision} {approval.decided_by or ''}".rstrip())
    for run in incident.steps:
        lines.append(f"  step {run.step:<18} {run.status:<8} {_summary(run.summary)}")
    checks = [c.queue_size for c in incident.checks if c.queue_size >= 0]
    if checks:
        lines.append(f"  queue trend {monitoring.sparkline(checks[-20:])} last {checks[-1]}")
    if incident.failure:
        lines.append(f"  failure: {incident.failure}")
    n = incident.id
    hints = {
        State.AWAITING_APPROVAL: f"next: a director runs `mailfix approve {n}` or `mailfix reject {n}`",
        State.AWAITING_REBOOT_APPROVAL: f"next: a director runs `mailfix approve {incident.id}` to reboot",
        State.FAILED: f"next: `mailfix retry {incident.id}` or `mailfix abort {incident.id}`",
        State.MONITORING: "next: `mailfix run` follows the monitoring to its end",
    }
    if incident.state in hints:
        lines.append(f"  {hints[State(incident.state)]}")
    return "\n".join(lines)


def _summary(summary: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict | list) and v is not None)
