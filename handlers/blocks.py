"""Pure functions from incidents (and outcomes) to Slack messages: Block Kit plus a plain-text fallback.

Blocks are built with slack_sdk's models, which refuse texts over Slack's limits; `check_limits`
checks what the models don't (50 blocks per message, unique action_ids). Anything that came from
the mail queue (addresses, subjects) is escaped, so spam cannot ping `@channel` or fake a link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from bot.core import monitoring
from bot.core.mailserver import validate_account
from bot.core.runbook import APPROVAL_FOR, TERMINAL, State
from bot.core.watch import UNREACHABLE, alert_text
from bot.errors import InvalidAccount
from handlers.ids import COMMAND, ActionId, BlockId
from storage.models import Approval, FloodAlert, Incident

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_BUTTON_LABEL = 75
MAX_OPTION_VALUE = 150
NOT_ACCOUNTS = frozenset({"mailer-daemon"})  # how Postfix shows bounces' empty sender: nobody to pick
MAX_RESPONSE_TEXT = 3900  # what we let a plain-text response grow to before cutting it

STATE_EMOJI: Mapping[str, str] = {
    State.OPENED: ":new:",
    State.DIAGNOSING: ":mag:",
    State.AWAITING_APPROVAL: ":raised_hand:",
    State.RELEASING: ":leftwards_arrow_with_hook:",
    State.CONTAINING: ":broom:",
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

USAGE = (
    f"`{COMMAND} help` this help\n"
    f"`{COMMAND} start [server]` open an incident and contain the flood (server optional when only one)\n"
    f"`{COMMAND} status [id]` one incident, or every open one\n"
    f"`{COMMAND} list` recent incidents\n"
    f"`{COMMAND} abort <id>` stop an incident\n"
    f"`{COMMAND} renew <id>` ask the directors again after an approval expired\n"
    f"`{COMMAND} report <id>` the incident's timeline"
)


@dataclass(frozen=True)
class Message:
    """A Slack message: the fallback `text` (notifications, screen readers) and its blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


def escape(text: object) -> str:
    """Return `text` safe inside mrkdwn: Slack's three control characters escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_message(text: str, blocks: Iterable[Block]) -> Message:
    return Message(text=text[:MAX_RESPONSE_TEXT], blocks=[block.to_dict() for block in blocks])


def section(text: str, block_id: str | None = None) -> SectionBlock:
    if len(text) > MAX_SECTION:
        text = text[: MAX_SECTION - 1] + "…"
    return SectionBlock(text=MarkdownTextObject(text=text), block_id=block_id)


# -- the incident message ---------------------------------------------------------------------


def incident_message(incident: Incident, *, now: datetime, interactive: bool = True) -> Message:
    """Return the incident's channel message; `interactive` adds the buttons its state allows."""
    blocks: list[Block] = [
        HeaderBlock(
            text=_clip(f"Incident #{incident.id} · {incident.server} · {_state(incident)}", 150),
            block_id=BlockId.HEADER,
        ),
        SectionBlock(fields=_facts(incident, now), block_id=BlockId.FACTS),
    ]
    suspect = _suspect_text(incident)
    if suspect:
        blocks.append(section(suspect, BlockId.SUSPECT))
    if incident.approvals:
        lines = [_approval_line(a, now) for a in incident.approvals[-5:]]
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=_clip(" · ".join(lines), 2000))], block_id=BlockId.APPROVALS)
        )
    if incident.state == State.FAILED and incident.failure:
        blocks.append(section(f":x: *Failed:* {escape(incident.failure)}", BlockId.FAILURE))
    elements = _actions(incident, now) if interactive else []
    if elements:
        blocks.append(ActionsBlock(elements=elements, block_id=BlockId.ACTIONS))
    return to_message(incident_text(incident), blocks)


def incident_text(incident: Incident) -> str:
    """Return the plain-text fallback of the incident message."""
    account = f": suspect {incident.suspect_address}" if incident.suspect_address else ""
    return f"Incident #{incident.id} on {incident.server} is {_state(incident)}{account}"


def _state(incident: Incident) -> str:
    return str(incident.state).replace("_", " ")


def _facts(incident: Incident, now: datetime) -> list[MarkdownTextObject]:
    snapshot = (incident.diagnosis or {}).get("snapshot") or {}
    sizes = [c.queue_size for c in incident.checks if c.queue_size >= 0]
    queue = f"{sizes[-1]} now" if sizes else (f"{snapshot['total']}" if "total" in snapshot else "not checked yet")
    if sizes:
        queue += f" · {snapshot.get('total', '?')} at diagnosis · {monitoring.sparkline(sizes[-20:])}"
    facts = [
        f"*State*\n{STATE_EMOJI.get(incident.state, '')} {_state(incident)}",
        f"*Opened by*\n<@{incident.opened_by}> at {incident.opened_at:%H:%M} UTC",
        f"*Queue*\n{queue}",
        f"*Elapsed*\n{_duration((incident.closed_at or now) - incident.opened_at)}",
    ]
    if incident.contained_at is not None:
        facts.append(f"*Contained*\n{_duration(incident.contained_at - incident.opened_at)} after opening")
    if incident.state == State.MONITORING and incident.monitor_deadline is not None:
        facts.append(f"*Monitoring until*\n{incident.monitor_deadline:%H:%M:%S} UTC")
    return [MarkdownTextObject(text=_clip(text, 2000)) for text in facts]


def _suspect_text(incident: Incident) -> str:
    if not incident.suspect_address:
        return ""
    suspect = (incident.diagnosis or {}).get("suspect") or {}
    lines = [f"*Suspect account:* `{escape(incident.suspect_address)}` (SASL login `{escape(incident.suspect_login)}`)"]
    if suspect:
        lines.append(
            f"• {suspect.get('queued_from', 0)} queued from it · {suspect.get('queued_to', 0)} queued to it"
            f" · {suspect.get('queued_by_login', 0)} sent by its login"
        )
        subjects = [f"“{escape(_clip(s, 120))}”" for s in suspect.get("sample_subjects", [])[:5]]
        if subjects:
            lines.append("• Sample subjects: " + ", ".join(subjects))
    if incident.rejected_accounts:
        lines.append("• Not this account: " + ", ".join(f"`{escape(a)}`" for a in incident.rejected_accounts))
    return "\n".join(lines)


def _approval_line(approval: Approval, now: datetime) -> str:
    if approval.decision is None and approval.expires_at <= now:
        return f"{approval.what}: expired at {approval.expires_at:%H:%M}"
    if approval.decision is None:
        return f"{approval.what}: waiting for a director (expires {approval.expires_at:%H:%M} UTC)"
    by = f" by <@{approval.decided_by}>" if approval.decided_by and approval.decided_by != "mailfix" else ""
    at = f" at {approval.decided_at:%H:%M}" if approval.decided_at else ""
    return f"{approval.what}: {approval.decision}{by}{at}"


def _actions(incident: Incident, now: datetime) -> list[Any]:
    state, value = State(incident.state), str(incident.id)
    if state in TERMINAL:
        return []
    abort = button(
        "Abort",
        ActionId.ABORT,
        value,
        style="danger",
        confirm=_confirm(
            f"Abort incident #{incident.id}?",
            "mailfix stops here and changes nothing more on the server; what it already did stays done.",
            "Abort",
        ),
    )
    if state in APPROVAL_FOR and _approval_expired(incident, now):
        return [button("Ask the directors again", ActionId.RENEW_APPROVAL, value, style="primary"), abort]
    if state == State.AWAITING_APPROVAL and incident.suspect_address:
        elements: list[Any] = [
            button(
                f"Approve cleanup of {incident.suspect_address}",
                ActionId.APPROVE_CLEANUP,
                value,
                style="primary",
                confirm=_confirm_cleanup(incident),
            ),
            button("Not this account", ActionId.NOT_THIS_ACCOUNT, value),
        ]
        options = _other_accounts(incident)
        if options:
            elements.append(
                StaticSelectElement(
                    placeholder="Pick another account", action_id=ActionId.PICK_ACCOUNT, options=options
                )
            )
        return [*elements, abort]
    if state == State.AWAITING_REBOOT_APPROVAL:
        return [
            button(
                "Approve reboot",
                ActionId.APPROVE_REBOOT,
                value,
                style="primary",
                confirm=_confirm(
                    f"Reboot {incident.server}?",
                    "The server goes down for several minutes; mail waits in the senders' queues.",
                    "Reboot",
                ),
            ),
            abort,
        ]
    if state == State.FAILED:
        return [button("Retry step", ActionId.RETRY_STEP, value, style="primary"), abort]
    if state == State.MONITORING:
        contain = _contain_button(incident)
        return [*([contain] if contain else []), button("Resolve now", ActionId.RESOLVE_NOW, value), abort]
    return [abort]


def _contain_button(incident: Incident) -> ButtonElement | None:
    """Return "Contain <name> too" when the latest check saw a flood from another account."""
    if not incident.checks:
        return None
    name = str(((incident.checks[-1].details or {}).get("new_flood") or {}).get("name") or "")
    try:
        name = validate_account(name)
    except InvalidAccount:
        return None  # nobody a button could contain (a forged sender, bounces)
    value = f"{incident.id}:{name}"
    if name in NOT_ACCOUNTS or len(value) > MAX_OPTION_VALUE:
        return None
    return button(
        f"Contain {name} too",
        ActionId.CONTAIN_ACCOUNT,
        value,
        style="primary",
        confirm=_confirm(
            f"Contain {name} too?",
            f"Hold the mail queued by {name}, block its login and close its sessions (all reversible)."
            " Its cleanup then waits for a director's approval, like the first account's.",
            "Contain",
        ),
    )


def _approval_expired(incident: Incident, now: datetime) -> bool:
    what = APPROVAL_FOR[State(incident.state)]
    current = [a for a in incident.approvals if a.what == what]
    return bool(current) and (
        current[-1].decision == "expired" or (current[-1].decision is None and current[-1].expires_at <= now)
    )


def _confirm_cleanup(incident: Incident) -> ConfirmObject:
    suspect = (incident.diagnosis or {}).get("suspect") or {}
    counts = ""
    if suspect:
        counts = (
            f" deletes the {suspect.get('queued_from', 0) + suspect.get('queued_by_login', 0)} messages queued"
            f" from it and the {suspect.get('queued_to', 0)} addressed to it,"
        )
    text = (
        f"This changes the password of {incident.suspect_address},{counts} empties its INBOX and tells the user."
        " It cannot be undone."
    )
    return _confirm("Approve the cleanup?", text, "Approve")


def _other_accounts(incident: Incident) -> list[Option]:
    """Return select options for the other top senders and logins (valid account names only)."""
    snapshot = (incident.diagnosis or {}).get("snapshot") or {}
    skip = {incident.suspect_address, incident.suspect_login, *incident.rejected_accounts}
    options: dict[str, Option] = {}
    for key in ("top_sasl_logins", "top_senders"):
        for entry in snapshot.get(key, []):
            name, count = str(entry.get("name", "")), entry.get("count", 0)
            try:
                name = validate_account(name)
            except InvalidAccount:
                continue  # not an address or login a director could pick
            value = f"{incident.id}:{name}"
            if name in skip or name in NOT_ACCOUNTS or name in options or len(value) > MAX_OPTION_VALUE:
                continue
            options[name] = Option(value=value, text=_clip(f"{name} ({count} queued)", MAX_BUTTON_LABEL))
    return list(options.values())[:100]


def button(
    label: str, action_id: str, value: str, *, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement:
    return ButtonElement(
        text=_clip(label, MAX_BUTTON_LABEL), action_id=action_id, value=value, style=style, confirm=confirm
    )


def _confirm(title: str, text: str, yes: str) -> ConfirmObject:
    return ConfirmObject(title=_clip(title, 100), text=_clip(text, 300), confirm=yes, deny="Cancel")


# -- flood watch alerts ----------------------------------------------------------------------


def alert_message(alert: FloodAlert) -> Message:
    """Return the channel message of a flood watch alert; an open flood alert has a "Start incident" button."""
    d, closed = alert.details, alert.closed_at is not None
    if alert.kind == UNREACHABLE:
        title = f"{alert.server} is reachable again" if closed else f"{alert.server} cannot be reached"
        emoji = ":white_check_mark:" if closed else ":electric_plug:"
        body = f"*Error:* `{escape(_clip(str(d.get('error', '')), 500))}`"
        since = f"Unreachable since {alert.opened_at:%H:%M} UTC" + (
            f", reachable again at {alert.closed_at:%H:%M} UTC" if alert.closed_at else ""
        )
        lines = [body, since]
    else:
        title = f"Flood on {alert.server} is over" if closed else f"Flood on {alert.server}"
        emoji = ":white_check_mark:" if closed else ":rotating_light:"
        login = f" (SASL login `{escape(d['login'])}`)" if d.get("login") else ""
        by_queue = ", ".join(f"{q} {n}" for q, n in sorted((d.get("by_queue") or {}).items()))
        lines = [
            f"*`{escape(alert.account)}`*{login} has *{d.get('count', '?')}* queued messages"
            f" (flood threshold {d.get('threshold', '?')})",
            f"• {d.get('queued_from', 0)} sent from the address · {d.get('queued_by_login', 0)} by its login"
            f" · {d.get('queued_to', 0)} addressed to it",
            f"• Queue total {d.get('queue_total', '?')}" + (f" ({by_queue})" if by_queue else ""),
            f"Seen at {alert.opened_at:%H:%M} UTC by the flood watch",
        ]
        if d.get("incident_id"):
            lines.append(f":eyes: Incident #{d['incident_id']} opened by <@{d.get('incident_opened_by', '')}>")
        elif alert.closed_at is not None:
            lines.append(f":white_check_mark: Ended on its own at {alert.closed_at:%H:%M} UTC, no incident opened")
    blocks: list[Block] = [
        HeaderBlock(text=_clip(title, 150), block_id=BlockId.ALERT_HEADER),
        section(f"{emoji} " + "\n".join(lines), BlockId.ALERT_FACTS),
    ]
    if alert.kind != UNREACHABLE and not closed and not d.get("incident_id"):
        start = button(f"Start incident on {alert.server}", ActionId.START_INCIDENT, alert.server, style="primary")
        blocks.append(ActionsBlock(elements=[start], block_id=BlockId.ALERT_ACTIONS))
    # The account can come from a forged sender: escaped, like everything else that came from the queue.
    return to_message(escape(alert_text(alert)), blocks)


# -- replies to commands ----------------------------------------------------------------------


def help_message() -> Message:
    """Return the usage of the slash command."""
    return to_message(f"Usage:\n{USAGE}", [section(f"*mailfix* recovers a mail server flooded with spam.\n{USAGE}")])


def error_message(text: str, hint: str = "") -> Message:
    """Return a short ephemeral error, with what to type instead."""
    body = f":warning: {text}" + (f"\n{hint}" if hint else "")
    return to_message(body, [section(body)])


def started_message(incident: Incident, channel: str) -> Message:
    """Return the reply to `start` once the incident is open and diagnosed."""
    text = (
        f"Incident #{incident.id} on {incident.server}: {_state(incident)}. "
        f"Follow it in <#{channel}>, or `{COMMAND} status {incident.id}`."
    )
    return to_message(text, [section(text)])


def done_message(incident: Incident, what: str) -> Message:
    """Return a short confirmation that `what` happened to the incident."""
    text = f"Incident #{incident.id} on {incident.server}: {what}; now {_state(incident)}."
    return to_message(text, [section(text)])


def incident_list(incidents: Sequence[Incident], *, title: str, now: datetime) -> Message:
    """Return one line per incident."""
    if not incidents:
        return to_message(f"{title}: none", [section(f"*{title}:* none")])
    lines = [incident_line(i) for i in incidents]
    return to_message(f"{title}:\n" + "\n".join(lines), [section(f"*{title}:*\n" + "\n".join(lines))])


def incident_line(incident: Incident) -> str:
    """Return a one-line summary of an incident."""
    account = f" · `{escape(incident.suspect_address)}`" if incident.suspect_address else ""
    return (
        f"{STATE_EMOJI.get(incident.state, '')} #{incident.id} {incident.server} · {_state(incident)}{account}"
        f" · opened {incident.opened_at:%Y-%m-%d %H:%M} UTC"
    )


def report_message(incident: Incident, markdown: str) -> Message:
    """Return the report as preformatted text (Slack renders no Markdown tables)."""
    body = markdown if len(markdown) <= MAX_RESPONSE_TEXT - 10 else markdown[: MAX_RESPONSE_TEXT - 12] + "…"
    return Message(text=f"```{escape(body)}```")


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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
