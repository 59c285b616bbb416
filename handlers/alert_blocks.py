"""The flood watch's channel messages: a flood or an unreachable server, and a "Start incident" button."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, HeaderBlock

from bot.core.watch import UNREACHABLE, alert_text
from handlers.blocks import Message, button, clip, confirm, escape, person, section, to_message, when
from handlers.ids import ActionId, BlockId
from storage.models import FloodAlert


def alert_message(alert: FloodAlert) -> Message:
    """Return the channel message of a flood watch alert; an open flood alert has a "Start incident" button."""
    d, closed = alert.details, alert.closed_at is not None
    if alert.kind == UNREACHABLE:
        title = f"{alert.server} is reachable again" if closed else f"{alert.server} cannot be reached"
        emoji = ":white_check_mark:" if closed else ":electric_plug:"
        body = f"*Error:* `{escape(clip(str(d.get('error', '')), 500))}`"
        since = f"Unreachable since {when(alert.opened_at)}" + (
            f", reachable again {when(alert.closed_at)}" if alert.closed_at else ""
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
            f"Seen {when(alert.opened_at)} by the flood watch",
        ]
        if d.get("incident_id"):
            lines.append(f":eyes: Incident #{d['incident_id']} opened by {person(d.get('incident_opened_by'))}")
        elif alert.closed_at is not None:
            lines.append(f":white_check_mark: Ended on its own {when(alert.closed_at)}, no incident opened")
    blocks: list[Block] = [
        HeaderBlock(text=clip(title, 150), block_id=BlockId.ALERT_HEADER),
        section(f"{emoji} " + "\n".join(lines), BlockId.ALERT_FACTS),
    ]
    if alert.kind != UNREACHABLE and not closed and not d.get("incident_id"):
        question = confirm(
            f"Start an incident on {alert.server}?",
            "mailfix diagnoses the queue, then holds the suspect's queued mail, blocks its login and closes its"
            " sessions at once (all reversible). Its cleanup waits for a director.",
            "Start",
        )
        start = button(
            f"Start incident on {alert.server}",
            ActionId.START_INCIDENT,
            alert.server,
            style="primary",
            confirm=question,
        )
        blocks.append(ActionsBlock(elements=[start], block_id=BlockId.ALERT_ACTIONS))
    # The account can come from a forged sender: escaped, like everything else that came from the queue.
    return to_message(escape(alert_text(alert)), blocks)
