"""`/mailfix help | start [server] | status [id] | list | abort <id> | renew <id> | report <id>`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core.report import report_json, report_markdown
from bot.core.requests import BadRequest, Request, parse_id
from bot.core.runbook import Runbook
from bot.core.table import Event
from bot.i18n import _
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
        return Command(verb, problem=_("Unknown command `{verb}`.").format(verb=blocks.escape(verb[:40])))
    fewest, most = VERBS[verb]
    if not fewest <= len(args) <= most:
        return Command(verb, problem=_takes(fewest, most).format(verb=verb))
    arg = args[0] if args else None
    if arg is None or verb == "start":
        return Command(verb, arg)
    try:
        return Command(verb, str(parse_id(arg)))
    except BadRequest:
        problem = _("`{value}` is not an incident number, like `12`.").format(value=blocks.escape(arg[:40]))
        return Command(verb, problem=problem)


def _takes(fewest: int, most: int) -> str:
    """The problem of a wrong count of arguments, with a {verb} field."""
    if most == 0:
        return _("`{verb}` takes no argument.")
    return _("`{verb}` takes one argument.") if fewest == most else _("`{verb}` takes at most one argument.")


def handle_mailfix_command(ack: Ack, body: dict, respond: Respond, runbook: Runbook, worker: Worker) -> None:
    """Ack at once (usage and errors go in the ack itself); run the rest in the background."""
    command = parse_command(body.get("text", ""))
    if command.problem:
        ack(**blocks.error_message(command.problem, _("Usage:\n{usage}").format(usage=blocks.usage())).as_kwargs())
        return
    if command.verb == "help":
        ack(**blocks.help_message().as_kwargs())
        return
    if command.verb == "start":
        if command.arg:
            opening = _(":hourglass_flowing_sand: Opening an incident on {server}…").format(
                server=blocks.escape(command.arg)
            )
        else:
            opening = _(":hourglass_flowing_sand: Opening an incident on the mail server…")
        ack(text=opening)
    else:
        ack()
    actor = body["user_id"]
    run = partial(_report, client=worker.client) if command.verb == "report" else RUN[command.verb]
    worker.run(body, lambda: respond(**run(runbook, command.arg, actor).as_kwargs()))


def _start(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    incident = runbook.start(server=arg, actor=actor)
    return blocks.started_message(incident, runbook.config.channel)


def _status(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    runbook.may_read(actor)
    now = runbook.now()
    if arg is not None:
        return incident_blocks.incident_message(runbook.get(int(arg)), now=now, interactive=False)
    return blocks.incident_list(runbook.repo.list_incidents(open_only=True), title=_("Open incidents"), now=now)


def _list(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    runbook.may_read(actor)
    incidents = runbook.repo.list_incidents(limit=20)
    return blocks.incident_list(incidents, title=_("Recent incidents"), now=runbook.now())


def _abort(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    return blocks.done_message(runbook.act(Request(int(arg or 0), Event.ABORT), actor=actor), _("aborted"))


def _renew(runbook: Runbook, arg: str | None, actor: str) -> blocks.Message:
    incident = runbook.act(Request(int(arg or 0), Event.RENEW), actor=actor)
    return blocks.done_message(incident, _("the directors were asked again"))


def _report(runbook: Runbook, arg: str | None, actor: str, *, client: WebClient) -> blocks.Message:
    """Share the whole report as a file in the incident's thread, its summary as the file's comment."""
    runbook.may_read(actor)
    incident = runbook.get(int(arg or 0))
    audit = runbook.repo.audit_events(incident_id=incident.id)
    markdown, summary = report_markdown(incident, audit), blocks.report_summary(incident, report_json(incident, audit))
    try:
        client.files_upload_v2(
            channel=incident.slack_channel or runbook.config.channel,
            thread_ts=incident.slack_ts,  # None: an incident run from the terminal has no thread
            content=markdown,
            filename=f"mailfix-incident-{incident.id}-report.md",
            title=report_title(incident.id),
            initial_comment=summary,
        )
    except (SlackApiError, SlackClientError) as exc:
        # Only the error code: Slack's answer could echo the upload. The requester still gets the report, cut.
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        cut = blocks.report_message(incident, markdown)
        failed = _(":warning: could not share the report as a file (Slack said {error})").format(error=error)
        return blocks.Message(text=f"{failed}\n{cut.text}")
    shared = _("The full report ({count} lines) is in the incident's thread.")
    text = f"{summary}\n" + shared.format(count=len(markdown.splitlines()))
    return blocks.to_message(text, [blocks.section(text)])


def report_title(incident_id: int) -> str:
    return _("mailfix incident #{id} report").format(id=incident_id)


RUN: Mapping[str, Callable[[Runbook, str | None, str], blocks.Message]] = {
    "start": _start,
    "status": _status,
    "list": _list,
    "abort": _abort,
    "renew": _renew,
}


def register(app: App) -> None:
    for name in COMMANDS:
        app.command(name)(handle_mailfix_command)
