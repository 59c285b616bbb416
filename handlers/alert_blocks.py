"""The flood watch's channel messages: a flood or an unreachable server, and a "Start incident" button."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, HeaderBlock

from bot.core.watch import UNREACHABLE, alert_text
from bot.i18n import _
from handlers.blocks import Message, button, clip, confirm, escape, person, section, to_message, when
from handlers.ids import ActionId, BlockId
from storage.models import FloodAlert


def alert_message(alert: FloodAlert) -> Message:
    """Return the channel message of a flood watch alert; an open flood alert has a "Start incident" button."""
    d, closed = alert.details, alert.closed_at is not None
    if alert.kind == UNREACHABLE:
        title = (_("{server} is reachable again") if closed else _("{server} cannot be reached")).format(
            server=alert.server
        )
        emoji = ":white_check_mark:" if closed else ":electric_plug:"
        body = _("*Error:* `{error}`").format(error=escape(clip(str(d.get("error", "")), 500)))
        if alert.closed_at:
            since = _("Unreachable since {since}, reachable again {again}").format(
                since=when(alert.opened_at), again=when(alert.closed_at)
            )
        else:
            since = _("Unreachable since {since}").format(since=when(alert.opened_at))
        lines = [body, since]
    else:
        title = (_("Flood on {server} is over") if closed else _("Flood on {server}")).format(server=alert.server)
        emoji = ":white_check_mark:" if closed else ":rotating_light:"
        account, count, threshold = escape(alert.account), d.get("count", "?"), d.get("threshold", "?")
        if d.get("login"):
            flood = _(
                "*`{account}`* (SASL login `{login}`) has *{count}* queued messages (flood threshold {threshold})"
            )
            flood = flood.format(account=account, login=escape(d["login"]), count=count, threshold=threshold)
        else:
            flood = _("*`{account}`* has *{count}* queued messages (flood threshold {threshold})")
            flood = flood.format(account=account, count=count, threshold=threshold)
        by_queue = ", ".join(f"{q} {n}" for q, n in sorted((d.get("by_queue") or {}).items()))  # Postfix's queue names
        total = d.get("queue_total", "?")
        lines = [
            flood,
            _(
                "• {queued_from} sent from the address · {queued_by_login} by its login · {queued_to} addressed to it"
            ).format(
                queued_from=d.get("queued_from", 0),
                queued_by_login=d.get("queued_by_login", 0),
                queued_to=d.get("queued_to", 0),
            ),
            _("• Queue total {total} ({by_queue})").format(total=total, by_queue=by_queue)
            if by_queue
            else _("• Queue total {total}").format(total=total),
            _("Seen {when} by the flood watch").format(when=when(alert.opened_at)),
        ]
        if d.get("incident_id"):
            lines.append(
                _(":eyes: Incident #{id} opened by {person}").format(
                    id=d["incident_id"], person=person(d.get("incident_opened_by"))
                )
            )
        elif alert.closed_at is not None:
            lines.append(
                _(":white_check_mark: Ended on its own {when}, no incident opened").format(when=when(alert.closed_at))
            )
    blocks: list[Block] = [
        HeaderBlock(text=clip(title, 150), block_id=BlockId.ALERT_HEADER),
        section(f"{emoji} " + "\n".join(lines), BlockId.ALERT_FACTS),
    ]
    if alert.kind != UNREACHABLE and not closed and not d.get("incident_id"):
        question = confirm(
            _("Start an incident on {server}?").format(server=alert.server),
            _(
                "mailfix diagnoses the queue, then holds the suspect's queued mail, blocks its login and closes its"
                " sessions at once (all reversible). Its cleanup waits for a director."
            ),
            _("Start"),
        )
        start = button(
            _("Start incident on {server}").format(server=alert.server),
            ActionId.START_INCIDENT,
            alert.server,
            style="primary",
            confirm=question,
        )
        blocks.append(ActionsBlock(elements=[start], block_id=BlockId.ALERT_ACTIONS))
    # The account can come from a forged sender: escaped, like everything else that came from the queue.
    return to_message(escape(alert_text(alert)), blocks)
