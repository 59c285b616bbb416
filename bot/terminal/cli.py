# PYTHON_ARGCOMPLETE_OK (shell completion: argcomplete's global hook completes `mailfix` too)
"""The `mailfix` command: the terminal front-end of the runbook, for the day Slack is unreachable.

`main(argv)` returns an exit code (bot.terminal.args.EXIT_CODES: 0 ok, 1 error, 2 bad usage, 3 found,
4 a server unreachable) so tests call it directly; an expected failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pwd
import sys
import time
from collections.abc import Sequence
from typing import TextIO, cast

import argcomplete
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from bot import i18n
from bot.config import Config, Secrets, load_config
from bot.config_check import check_config, default_mode
from bot.core.mailserver import validate_account
from bot.core.requests import Request
from bot.core.runbook import Runbook
from bot.core.table import Event
from bot.core.upkeep import Upkeep
from bot.errors import ConfigError, ExecutorError, MailfixError, NotAuthorized
from bot.i18n import _, ngettext
from bot.terminal import reading
from bot.terminal.args import ERROR, OK, UNREACHABLE, build_parser, speak_configured_language
from bot.terminal.environment import load_environment
from bot.terminal.notifier import TerminalNotifier
from bot.terminal.progressbar import ProgressBar
from bot.terminal.status import describe
from bot.terminal.text import PrintableOut, plain
from bot.wiring import CONNECT_ERRORS, build_runbook
from storage.db import upgrade

log = logging.getLogger("mailfix")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one verb; return its exit code (see EXIT_CODES): every expected failure is one line on stderr."""
    printable = PrintableOut(out or sys.stdout)
    out = cast(TextIO, printable)  # queue data never reaches the terminal as escapes
    load_environment()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    speak_configured_language()  # the help is built before the config is read
    parser = build_parser()
    # Shell completion (argcomplete): answers the shell and exits when it asks; a no-op otherwise.
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    secrets = Secrets.from_env()
    try:
        code = _dispatch(args, secrets, out)
    except ConfigError as exc:
        return _fail("\n".join(exc.problems))
    except ExecutorError as exc:
        return _fail(_error(str(exc)), UNREACHABLE if isinstance(exc, CONNECT_ERRORS) else ERROR)
    except MailfixError as exc:
        return _fail(_error(str(exc)))
    except OperationalError as exc:
        return _fail(_error(database_problem(secrets.database_url, exc)))
    except ArgumentError:  # its message quotes the URL, password included
        return _fail(
            _error(_("MAILFIX_DATABASE_URL is not a database URL mailfix can use (e.g. sqlite:///mailfix.db)"))
        )
    except KeyboardInterrupt:
        return _fail(_("interrupted"), 130)
    printable.flush()
    if printable.closed:  # `| head`: what was done is recorded, the rest of the output is lost
        return _fail(_error(_("the output was closed before mailfix finished writing (broken pipe)")))
    return code


def _error(reason: str) -> str:
    return _("error: {reason}").format(reason=reason)


def _fail(line: str, code: int = ERROR) -> int:
    with contextlib.suppress(BrokenPipeError):  # `2>&1 | head`: nowhere left to say it
        print(line, file=sys.stderr, flush=True)
    return code


def database_problem(url: str, exc: OperationalError) -> str:
    """Return one line saying which database failed and why, never its password."""
    parsed = make_url(url)
    text = str(exc.orig or exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    url_shown = parsed.render_as_string(hide_password=True)
    return _("the database {url} cannot be used: {reason}").format(url=url_shown, reason=reason)


def _dispatch(args: argparse.Namespace, secrets: Secrets, out: TextIO) -> int:
    command = args.command
    if command == "check-config":
        mode = args.mode or default_mode(secrets)
        config = check_config(secrets, mode)  # raises ConfigError listing every problem
        ok = _("{path}: ok ({count} servers; {mode} mode)")
        print(ok.format(path=secrets.config_path, count=len(config.servers), mode=mode), file=out)
        return 0
    if command == "db":
        upgrade(secrets.database_url)
        print(_("database is up to date"), file=out)
        return 0
    if hasattr(args, "frontend"):  # a verb a front-end added (`serve`, `socket`)
        return int(args.frontend(args, secrets, load_config(secrets.config_path)))
    config = load_config(secrets.config_path)
    if getattr(args, "json", False) or getattr(args, "format", None) == "json":
        # JSON is for scripts: it stays English, data made on other threads (a diagnosis' warnings) too.
        i18n.use("en")
    if command == "diagnose":
        return reading.diagnose(config, args.server, out, as_json=args.json)
    if command == "dnsbl":
        return reading.dnsbl(config, args.server, out, as_json=args.json)
    if command == "watch":
        return reading.watch(config, secrets, out, once=args.once, as_json=args.json)
    unreachable: set[str] = set()
    notifier = TerminalNotifier(out, reading.names_of(config), bar=ProgressBar.on_stderr())
    runbook = build_runbook(secrets, notifier, config, unreachable)
    try:
        code = _incident_command(runbook, args, out)
    finally:
        runbook.close()
    return UNREACHABLE if unreachable and code == OK else code  # the step failed; the incident says why


def _incident_command(runbook: Runbook, args: argparse.Namespace, out: TextIO) -> int:
    command, config = args.command, runbook.config
    if command in ("list", "status", "report"):
        runbook.may_read(cli_actor(config))
    names = reading.names_of(config)
    if command in ("list", "status"):
        ids = [args.id] if command == "status" and args.id else None
        listed = ids or [i.id for i in runbook.repo.list_incidents(open_only=command == "status")]
        incidents = [runbook.get(n) for n in listed]
        return reading.show_incidents(incidents, out, as_json=args.json, full=command == "status", names=names)
    if command == "report":
        return reading.show_report(runbook, args.id, out, fmt=args.format, names=names)
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
        restored_text = ngettext(
            "#{id}: {count} message restored to the INBOX", "#{id}: {count} messages restored to the INBOX", restored
        )
        print(restored_text.format(id=args.id, count=restored), file=out)
        return 0
    else:
        incident = runbook.act(_request(args), actor=actor)
    print(plain(describe(runbook.get(incident.id)), names), file=out)
    return OK


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
        reason = _("local user {login} is not in cli_users of {path}").format(login=repr(login), path=config.path)
        raise NotAuthorized(login, "use mailfix", reason)
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
        raise NotAuthorized(actor, "read the password", _("only operators or directors may read the new password"))
    incident = runbook.get(incident_id)
    if incident.password_ciphertext is None:
        print(_("no password is waiting: it was delivered (and erased) already, or none was set"), file=out)
        return 1
    password = runbook.vault.decrypt(incident.password_ciphertext)
    shown = _("New password for {address}: {password}").format(
        address=incident.suspect_address, password=password.reveal()
    )
    print(shown, file=out)
    print(
        _("It is now erased from mailfix: tell the user, and not to open attachments from unknown senders."), file=out
    )
    runbook.withdraw_password(incident, actor, "password_revealed")  # read once at the terminal: gone
    return 0


def _run(runbook: Runbook, *, once: bool) -> int:
    interval, upkeep = min(runbook.config.check_interval_seconds, 5.0), Upkeep(runbook)
    while True:
        upkeep.run_due()
        if once or not any(upkeep.has_work(i) for i in runbook.repo.list_incidents(open_only=True)):
            return OK
        time.sleep(interval)
