"""The `mailfix` command line: every verb, its arguments with their help, an example per verb, the exit codes."""

from __future__ import annotations

import argparse
import os
import tomllib
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

from bot import i18n
from bot.config_check import MODES
from bot.core.requests import BadRequest, parse_id
from bot.i18n import N_, _

FRONTENDS = "mailfix.frontends"  # entry-point group: a callable that adds verbs to the subparsers

# Exit codes, for scripts (`mailfix diagnose || page-someone`).
OK, ERROR, USAGE, FOUND, UNREACHABLE = 0, 1, 2, 3, 4
EXIT_CODES = N_(
    """\
exit codes:
  0  done (diagnose, watch --once: no flood; dnsbl: listed nowhere)
  1  error, said in one line on stderr (bad config, database unreachable, refused, closed output)
  2  bad usage (unknown verb, missing or malformed argument)
  3  found: a flood (diagnose; watch --once: one no incident handles yet); a blocklist listing (dnsbl)
  4  a mail server could not be reached (diagnose, watch --once, run --once, start and the other
     incident verbs; the incident records the failure and offers `mailfix retry`)

environment: .env in the current directory (or the nearest parent) is read first; variables already
set in the environment win over it. NO_COLOR turns colour off (colour is only used on a terminal)."""
)

# One example per verb, shown under its --help: commands, never translated; a note after one is (NOTES).
EXAMPLES = {
    "start": "mailfix start mail1",
    "status": "mailfix status 12\n  mailfix status --json | jq '.incidents[].state'",
    "list": "mailfix list\n  mailfix list --json",
    "abort": "mailfix abort 12",
    "retry": "mailfix retry 12",
    "resolve": "mailfix resolve 12",
    "password": "mailfix password 12",
    "restore-inbox": "mailfix restore-inbox 12",
    "approve": "mailfix approve 12 --account victim@example.org\n  mailfix approve 12 --reboot",
    "renew": "mailfix renew 12 --account victim@example.org\n  mailfix renew 12 --reboot",
    "contain": "mailfix contain 12 bob@example.org",
    "reject": "mailfix reject 12 --account victim@example.org --pick bob@example.org",
    "report": "mailfix report 12 > incident-12.md\n  mailfix report 12 --format json",
    "diagnose": "mailfix diagnose mail1\n  mailfix diagnose mail1 --json | jq .suspect",
    "watch": "mailfix watch\n  mailfix watch --once --json",
    "dnsbl": "mailfix dnsbl mail1 --json",
    "run": "mailfix run --once",
    "check-config": "MAILFIX_CONFIG=/etc/mailfix/mailfix.toml mailfix check-config",
    "db": "mailfix db upgrade",
    "serve": "PORT=8080 mailfix serve --host 127.0.0.1",
    "socket": "mailfix socket",
}
NOTES = {"watch": N_("cron: exit 3 when a flood is found")}  # shown after the example's last command
ID_HELP = N_("the incident number, e.g. 12 (see `mailfix list`)")
SERVER_HELP = N_("a server name from mailfix.toml (may be left out when only one is configured)")
JSON_HELP = N_("print JSON instead of text (a stable schema, see README)")


# argparse's own words, which Python ships no Spanish for: in our catalogs, and argparse looks them up
# through our gettext (it calls the module's `_` each time it writes help or an error).
ARGPARSE_WORDS = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("expected one argument"),
    N_("invalid %(type)s value: %(value)r"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"),
    N_("ignored explicit argument %r"),
)
argparse._ = i18n._  # type: ignore[attr-defined]
argparse.ngettext = i18n.ngettext  # type: ignore[attr-defined]


def speak_configured_language(env: dict[str, str] | None = None) -> None:
    """Speak the `language` of mailfix.toml before the parser is built (its help is read before the config is).

    Read cheaply (MAILFIX_CONFIG, default ./mailfix.toml); on any problem (unreadable, not TOML, not a
    shipped language) mailfix speaks English: the config is validated, and its problems reported, later.
    """
    env = dict(os.environ) if env is None else env
    try:
        raw = tomllib.loads(Path(env.get("MAILFIX_CONFIG", "mailfix.toml")).read_bytes().decode())
        language = raw.get("language", "en")
        i18n.use(language if isinstance(language, str) else "en")
    except Exception:  # anything at all: the help stays in English
        i18n.use("en")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every verb, front-ends' verbs (`serve`, `socket`) included."""
    parser = argparse.ArgumentParser(
        prog="mailfix",
        description=_("The terminal front-end of mailfix's runbook, for the day Slack is unreachable."),
        epilog=_(EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"mailfix {_version()}", help=_("show program's version number and exit")
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    _incident_verbs(sub)
    _read_verbs(sub)
    run = sub.add_parser("run", help=_("resume unfinished steps and run monitoring until nothing is due"))
    run.add_argument("--once", action="store_true", help=_("one pass only (for cron); exit 4 if a server was down"))
    check = sub.add_parser("check-config", help=_("validate mailfix.toml, the secrets and known_hosts: every problem"))
    check.add_argument(
        "--mode", choices=MODES, help=_("whose secrets to check (default: from the Slack variables set)")
    )
    db = sub.add_parser("db", help=_("database maintenance"))
    db.add_argument("action", choices=("upgrade",), help=_("upgrade: bring the schema up to date"))
    # Front-ends that serve people elsewhere (Slack's `serve` and `socket`) add their verbs here: they
    # import the core, never the other way round.
    for entry in entry_points(group=FRONTENDS):
        entry.load()(sub)
    for name, verb in sub.choices.items():
        verb.formatter_class = argparse.RawDescriptionHelpFormatter
        verb.epilog = verb.epilog or (_example(name) if name in EXAMPLES else None)
    return parser


def _example(verb: str) -> str:
    """Return the epilog of `verb`'s --help: its example, and the note after it."""
    example = EXAMPLES[verb]
    if verb in NOTES:
        example += "   # " + _(NOTES[verb])
    return _("example:\n  {example}").format(example=example)


def _incident_verbs(sub: argparse._SubParsersAction) -> None:
    start = sub.add_parser("start", help=_("open an incident on a server and contain the flood"))
    start.add_argument("server", nargs="?", help=_(SERVER_HELP))
    for name, text in (
        ("abort", _("abort an incident")),
        ("retry", _("retry the step that failed")),
        ("resolve", _("resolve a monitored incident now (its last check was normal)")),
        ("password", _("show the new password once, to tell the user by phone, then erase it")),
        ("restore-inbox", _("put back the INBOX that the incident's cleanup archived and emptied (directors)")),
    ):
        sub.add_parser(name, help=text).add_argument("id", type=incident_id, help=_(ID_HELP))
    approve = sub.add_parser("approve", help=_("approve the pending cleanup of ACCOUNT, or the reboot (directors)"))
    approve.add_argument("id", type=incident_id, help=_(ID_HELP))
    target = approve.add_mutually_exclusive_group(required=True)
    target.add_argument("--account", metavar="ADDRESS", help=_("the account whose cleanup you approve"))
    target.add_argument("--reboot", action="store_true", help=_("approve the pending reboot of the server"))
    renew = sub.add_parser("renew", help=_("ask the directors again after an approval expired"))
    renew.add_argument("id", type=incident_id, help=_(ID_HELP))
    asked = renew.add_mutually_exclusive_group(required=True)
    asked.add_argument("--account", metavar="ADDRESS", help=_("the account whose cleanup approval expired"))
    asked.add_argument("--reboot", action="store_true", help=_("the reboot approval expired"))
    contain = sub.add_parser("contain", help=_("contain another account whose flood appeared while monitoring"))
    contain.add_argument("id", type=incident_id, help=_(ID_HELP))
    contain.add_argument("account", help=_("the account the latest check found flooding, e.g. bob@example.org"))
    reject = sub.add_parser("reject", help=_('"not this account": release it and look again (directors)'))
    reject.add_argument("id", type=incident_id, help=_(ID_HELP))
    reject.add_argument("--account", metavar="ADDRESS", required=True, help=_("the suspect you say it is not"))
    reject.add_argument("--pick", metavar="ACCOUNT", help=_("contain this account instead (one the diagnosis offered)"))


def _read_verbs(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help=_("show one incident, or the open ones"))
    status.add_argument(
        "id",
        nargs="?",
        type=incident_id,
        help=_("the incident number, e.g. 12 (see `mailfix list`); left out: every open incident"),
    )
    status.add_argument("--json", action="store_true", help=_(JSON_HELP))
    listing = sub.add_parser("list", help=_("list recent incidents"))
    listing.add_argument("--json", action="store_true", help=_(JSON_HELP))
    report = sub.add_parser("report", help=_("the incident report"))
    report.add_argument("id", type=incident_id, help=_(ID_HELP))
    report.add_argument("--format", choices=("md", "json"), default="md", help=_("md (plain Markdown) or json"))
    diagnose = sub.add_parser("diagnose", help=_("read-only diagnosis of a server's queue (no incident)"))
    diagnose.add_argument("server", nargs="?", help=_(SERVER_HELP))
    diagnose.add_argument("--json", action="store_true", help=_(JSON_HELP))
    watch = sub.add_parser("watch", help=_("poll every server and alert on floods and unreachable servers"))
    watch.add_argument("--once", action="store_true", help=_("one poll only; the exit code tells what it found"))
    watch.add_argument("--json", action="store_true", help=_("one JSON object per alert and line (JSON Lines)"))
    dnsbl = sub.add_parser("dnsbl", help=_("check a server's public_ip on the DNS blocklists"))
    dnsbl.add_argument("server", nargs="?", help=_(SERVER_HELP))
    dnsbl.add_argument("--json", action="store_true", help=_(JSON_HELP))


def incident_id(text: str) -> int:
    """argparse type: an incident number (ASCII digits, bounded)."""
    try:
        return parse_id(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version() -> str:
    try:
        return version("mailfix")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return _("unknown (not installed)")
