"""`/mailfix help | start [server] | status [id] | list | abort <id> | renew <id> | report <id>`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_bolt import Ack, App, Respond

from bot.core.report import report_markdown
from bot.core.requests import BadRequest, Request, parse_id
from bot.core.runbook import Runbook
from bot.core.table import Event
from handlers import blocks, incident_blocks
from handlers.ids import COMMANDS

if TYPE_CHECKING:
    from handlers.worker import Worker

# verb → (fewest, most) arguments
VERBS: Mapping[str, tuple[int, int]] = {
    "help": (0, 0),
    "start": (0, 1),
    "status": (0, 1),
    "list": (0, 0),
    "abort": (1, 1),
    "renew": (1, 1),
    "report": (1, 1),
}


@dataclass(frozen=True)
class Command:
    """A parsed command line; `problem` says what is wrong with it, if anything."""

    verb: str
    arg: str | None = None
    problem: str = ""


def parse_command(text: str) -> Command:
    """Return the command in `text` (never raises: a bad line comes back with a problem)."""
    words = text.split()
    verb = words[0].lower() if words else "help"
    args = words[1:]
    if verb not in VERBS:
        return Command(verb, problem=f"Unknown command `{blocks.escape(verb[:40])}`.")
    fewest, most = VERBS[verb]
    if not fewest <= len(args) <= most:
        return Command(verb, problem=f"`{verb}` takes {_count(fewest, most)}.")
    arg = args[0] if args else None
    if arg is None or verb == "start":
        return Command(verb, arg)
    try:
        return Command(verb, str(parse_id(arg)))
    except BadRequest:
        return Command(verb, problem=f"`{blocks.escape(arg[:40])}` is not an incident number, like `12`.")


def _count(fewest: int, most: int) -> str:
    if most == 0:
        return "no argument"
    return "one argument" if fewest == most else "at most one argument"


def handle_mailfix_command(ack: Ack, body: dict, respond: Respond, runbook: Runbook, worker: Worker) -> None:
    """Ack at once (usage and errors go in the ack itself); run the rest in the background."""
    command = parse_command(body.get("text", ""))
    if command.problem:
        ack(**blocks.error_message(command.problem, f"Usage:\n{blocks.USAGE}").as_kwargs())
        return
    if command.verb == "help":
        ack(**blocks.help_message().as_kwargs())
        return
    if command.verb == "start":
        ack(text=f":hourglass_flowing_sand: Opening an incident on {blocks.escape(command.arg or 'the mail server')}…")
    else:
        ack()
    actor = body["user_id"]
    run = RUN[command.verb]
    worker.run(body, lambda: respond(**run(runbook, command.arg, actor).as_kwargs()))


def _start(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    incident = runbook.start(server=arg, actor=actor)
    return blocks.started_message(incident, runbook.config.channel)


def _status(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    runbook.may_read(actor)
    now = runbook.now()
    if arg is not None:
        return incident_blocks.incident_message(runbook.get(int(arg)), now=now, interactive=False)
    return blocks.incident_list(runbook.repo.list_incidents(open_only=True), title="Open incidents", now=now)


def _list(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    runbook.may_read(actor)
    return blocks.incident_list(runbook.repo.list_incidents(limit=20), title="Recent incidents", now=runbook.now())


def _abort(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    return blocks.done_message(runbook.act(Request(int(arg or 0), Event.ABORT), actor=actor), "aborted")


def _renew(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    incident = runbook.act(Request(int(arg or 0), Event.RENEW), actor=actor)
    return blocks.done_message(incident, "the directors were asked again")


def _report(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    runbook.may_read(actor)
    incident = runbook.get(int(arg or 0))
    return blocks.report_message(
        incident, report_markdown(incident, runbook.repo.audit_events(incident_id=incident.id))
    )


RUN: Mapping[str, Callable[[Runbook, str | None, str], blocks.Message]] = {
    "start": _start,
    "status": _status,
    "list": _list,
    "abort": _abort,
    "renew": _renew,
    "report": _report,
}


def register(app: App) -> None:
    for name in COMMANDS:
        app.command(name)(handle_mailfix_command)
