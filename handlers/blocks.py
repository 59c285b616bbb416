"""Pure functions from incidents (and outcomes) to Slack messages: Block Kit plus a plain-text fallback.

Blocks are built with slack_sdk's models, which refuse texts over Slack's limits; `check_limits`
checks what the models don't (50 blocks per message, unique action_ids). Anything that came from
the mail queue (addresses, subjects) is escaped, so spam cannot ping `@channel` or fake a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ConfirmObject,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core.labels import state_label
from bot.core.notifier import STAMP_RE
from bot.core.steps import SYSTEM_ACTOR
from bot.core.table import State
from bot.i18n import N_, _
from handlers.ids import COMMAND
from storage.models import Incident

USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")  # what a Slack user ID looks like: nothing else becomes a mention
MENTION = re.compile(r"<@([A-Z0-9]+)>")
LEADING_MENTIONS = re.compile(r"(?::[a-z0-9_+-]+: )?(?:<@[A-Z0-9]+> ?)+")  # ":raised_hand: <@U1> <@U2> "
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_BUTTON_LABEL = 75
MAX_OPTION_VALUE = 150
MAX_RESPONSE_TEXT = 3900  # what we let a plain-text response grow to before cutting it

STATE_EMOJI: Mapping[str, str] = {
    State.OPENED: ":new:",
    State.DIAGNOSING: ":mag:",
    State.AWAITING_APPROVAL: ":raised_hand:",
    State.RELEASING: ":leftwards_arrow_with_hook:",
    State.CONTAINING: ":shield:",
    State.CLEANING_UP: ":broom:",
    State.PURGING_MAILBOX: ":wastebasket:",
    State.NOTIFYING_USER: ":speech_balloon:",
    State.MONITORING: ":eyes:",
    State.RESTARTING: ":arrows_counterclockwise:",
    State.AWAITING_REBOOT_APPROVAL: ":raised_hand:",
    State.REBOOTING: ":arrows_counterclockwise:",
    State.RESOLVED: ":white_check_mark:",
    State.ABORTED: ":no_entry_sign:",
    State.FAILED: ":x:",
}


# The slash command's verbs (never translated) and what each does (translated where shown: `usage`).
USAGE_LINES: tuple[tuple[str, str], ...] = (
    ("help", N_("this help")),
    ("start [server]", N_("open an incident and contain the flood (server optional when only one)")),
    ("status [id]", N_("one incident, or every open one")),
    ("list", N_("recent incidents")),
    ("abort <id>", N_("stop an incident")),
    ("renew <id>", N_("ask the directors again after an approval expired")),
    ("report <id>", N_("the incident's timeline")),
)


def usage() -> str:
    """Return the usage of the slash command, one line per verb, in the current language."""
    return "\n".join(f"`{COMMAND} {syntax}` {_(text)}" for syntax, text in USAGE_LINES)


@dataclass(frozen=True)
class Message:
    """A Slack message: the fallback `text` (notifications, screen readers) and its blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


def when(at: datetime, *, seconds: bool = False) -> str:
    """Return `at` as a Slack date, which each reader sees in their own time zone ("today 03:10"); UTC as fallback."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    token = "{date_short_pretty} {time_secs}" if seconds else "{date_short_pretty} {time}"
    return f"<!date^{int(at.timestamp())}^{token}|{at:%Y-%m-%d %H:%M{':%S' if seconds else ''}} UTC>"


def person(user_id: str | None) -> str:
    """Return a Slack user as a mention (Slack shows their name); mailfix itself by name."""
    if not user_id or user_id == SYSTEM_ACTOR:
        return "mailfix"
    return f"<@{user_id}>" if USER_ID.fullmatch(user_id) else escape(user_id)


def escape(text: object) -> str:
    """Return `text` safe inside mrkdwn: Slack's three control characters escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def thread_text(text: str, directors: Iterable[str]) -> str:
    """Return a step's text for the thread: escaped (it quotes queue data a spammer controls), except the
    director mentions mailfix puts at its very start, which stay mentions; its stamped times become Slack dates."""
    lead = LEADING_MENTIONS.match(text)
    kept = ""
    if lead and set(MENTION.findall(lead[0])) <= set(directors):
        kept, text = lead[0], text[lead.end() :]
    safe = kept + escape(text)
    return STAMP_RE.sub(lambda m: when(datetime.strptime(m[1], "%Y-%m-%d %H:%M")), safe)


def to_message(text: str, blocks: Iterable[Block]) -> Message:
    return Message(text=text[:MAX_RESPONSE_TEXT], blocks=[block.to_dict() for block in blocks])


def section(text: str, block_id: str | None = None) -> SectionBlock:
    if len(text) > MAX_SECTION:
        text = text[: MAX_SECTION - 1] + "…"
    return SectionBlock(text=MarkdownTextObject(text=text), block_id=block_id)


def button(
    label: str, action_id: str, value: str, *, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement:
    return ButtonElement(
        text=clip(label, MAX_BUTTON_LABEL), action_id=action_id, value=value, style=style, confirm=confirm
    )


def confirm(title: str, text: str, yes: str) -> ConfirmObject:
    return ConfirmObject(title=clip(title, 100), text=clip(text, 300), confirm=yes, deny=_("Cancel"))


# -- replies to commands ----------------------------------------------------------------------


def help_message() -> Message:
    """Return the usage of the slash command."""
    text = _("Usage:\n{usage}").format(usage=usage())
    body = _("*mailfix* recovers a mail server flooded with spam.\n{usage}").format(usage=usage())
    return to_message(text, [section(body)])


def error_message(text: str, hint: str = "") -> Message:
    """Return a short ephemeral error, with what to type instead."""
    body = f":warning: {text}" + (f"\n{hint}" if hint else "")
    return to_message(body, [section(body)])


def started_message(incident: Incident, channel: str) -> Message:
    """Return the reply to `start` once the incident is open and diagnosed."""
    text = _("Incident #{id} on {server}: {state}. Follow it in <#{channel}>, or `{command} status {id}`.").format(
        id=incident.id, server=incident.server, state=state_label(incident.state), channel=channel, command=COMMAND
    )
    return to_message(text, [section(text)])


def done_message(incident: Incident, what: str) -> Message:
    """Return a short confirmation that `what` happened to the incident."""
    text = _("Incident #{id} on {server}: {what}; now {state}.").format(
        id=incident.id, server=incident.server, what=what, state=state_label(incident.state)
    )
    return to_message(text, [section(text)])


def incident_list(incidents: Sequence[Incident], *, title: str, now: datetime) -> Message:
    """Return one line per incident."""
    if not incidents:
        return to_message(_("{title}: none").format(title=title), [section(_("*{title}:* none").format(title=title))])
    lines = [incident_line(i) for i in incidents]
    return to_message(f"{title}:\n" + "\n".join(lines), [section(f"*{title}:*\n" + "\n".join(lines))])


def incident_line(incident: Incident) -> str:
    """Return a one-line summary of an incident."""
    account = f" · `{escape(incident.suspect_address)}`" if incident.suspect_address else ""
    opened = _("opened {when}").format(when=when(incident.opened_at))
    emoji, state = STATE_EMOJI.get(incident.state, ""), state_label(incident.state)
    return f"{emoji} #{incident.id} {incident.server} · {state}{account} · {opened}"


def report_message(incident: Incident, markdown: str) -> Message:
    """Return the report as preformatted text (Slack renders no Markdown tables), cut to fit one message."""
    body = markdown if len(markdown) <= MAX_RESPONSE_TEXT - 10 else markdown[: MAX_RESPONSE_TEXT - 12] + "…"
    return Message(text=f"```{escape(body)}```")


def report_summary(incident: Incident, report: Mapping[str, Any]) -> str:
    """Return the report's head as Slack text: who, when, how fast, what was touched (the file has the timeline)."""
    head, counts = report["incident"], report["counts"]
    account = f"`{escape(head['account'])}`" if head["account"] else _("no account identified")
    escalations = ", ".join(report["escalations"])  # the audit's event names, as the report file has them
    lines = [
        _("*Report of incident #{id} on {server}: {state}* · {account}").format(
            id=incident.id, server=escape(incident.server), state=state_label(incident.state), account=account
        ),
        _("• Opened by {person} {when}").format(person=person(incident.opened_by), when=when(incident.opened_at)),
        _("• Contained after {contained} · closed after {closed}").format(
            contained=_seconds(head["seconds_to_containment"]), closed=_seconds(head["seconds_to_resolution"])
        ),
        _("• Queued messages held {held} · released {released} · deleted {deleted}").format(
            held=f"{counts['held']:,}", released=f"{counts['released']:,}", deleted=f"{counts['deleted']:,}"
        ),
        _("• Escalations: {escalations}").format(escalations=escalations) if escalations else _("• Escalations: none"),
    ]
    if head["inbox_archive"]:
        archive = escape(head["inbox_archive"])
        lines.append(_("• INBOX archived before it was emptied: `{archive}`").format(archive=archive))
    if head["failure"]:
        lines.append(_("• Failure: {failure}").format(failure=escape(head["failure"])))
    return "\n".join(lines)


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else duration(timedelta(seconds=seconds))


# -- limits -----------------------------------------------------------------------------------


def check_limits(message: Message) -> list[str]:
    """Return every way `message` breaks Slack's limits (empty when it is fine to send)."""
    problems = []
    if not message.text:
        problems.append("no plain-text fallback")
    if len(message.blocks) > MAX_BLOCKS:
        problems.append(f"{len(message.blocks)} blocks > {MAX_BLOCKS}")
    action_ids: list[str] = []
    for block in message.blocks:
        text = (block.get("text") or {}).get("text", "")
        if block["type"] == "section" and len(text) > MAX_SECTION:
            problems.append(f"section {block.get('block_id')} has {len(text)} characters")
        for element in block.get("elements", []) + ([block["accessory"]] if "accessory" in block else []):
            if "action_id" in element:
                action_ids.append(element["action_id"])
            if element.get("type") == "button" and len(element["text"]["text"]) > MAX_BUTTON_LABEL:
                problems.append(f"button label {element['text']['text']!r} too long")
    duplicates = {a for a in action_ids if action_ids.count(a) > 1}
    if duplicates:
        problems.append(f"duplicate action_ids {sorted(duplicates)}")
    return problems


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return _("{seconds} s").format(seconds=seconds)
    if seconds < 3600:
        return _("{minutes} min {seconds} s").format(minutes=seconds // 60, seconds=seconds % 60)
    return _("{hours} h {minutes} min").format(hours=seconds // 3600, minutes=seconds % 3600 // 60)
