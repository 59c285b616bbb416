"""The messages that carry a new password: the DM to the affected user and the operator's ephemeral note.

The password is only ever in the blocks, never in the fallback text (which push notifications show).
"""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, ContextBlock, MarkdownTextObject

from bot.core import requests
from bot.i18n import _
from handlers.blocks import Message, button, escape, section, to_message
from handlers.ids import ActionId, BlockId


def password_dm(*, incident_id: int, address: str, user_id: str, password: str, keep_minutes: float) -> Message:
    """Return the DM to the affected user; the password is in the blocks only, never in the fallback text."""
    text = _("Your mail account {address} was misused to send spam: its password was changed. Open Slack to read it.")
    text = text.format(address=address)
    blocks: list[Block] = [
        section(_what_happened(address, user_id)),
        section(_("*Your new password:* `{password}`").format(password=password), BlockId.PASSWORD),
        ActionsBlock(
            elements=[
                button(
                    _("I have saved my new password"),
                    ActionId.CONFIRM_PASSWORD,
                    requests.encode(incident_id, account=address),
                    style="primary",
                )
            ],
            block_id=BlockId.PASSWORD_ACTIONS,
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=_("This message loses the password when you click, or after {minutes} minutes.").format(
                        minutes=f"{keep_minutes:g}"
                    )
                )
            ]
        ),
    ]
    return to_message(text, blocks)


def password_dm_withdrawn(*, address: str) -> Message:
    """Return the DM rewritten without the password."""
    text = _("Your mail account {address} was misused to send spam: its password was changed.").format(address=address)
    blocks: list[Block] = [
        section(_what_happened(address, None)),
        section(
            _(":lock: The new password was removed from this message. If you lost it, ask the IT team."),
            BlockId.PASSWORD,
        ),
    ]
    return to_message(text, blocks)


def _what_happened(address: str, user_id: str | None) -> str:
    hello = _("Hello <@{user}>.").format(user=user_id) if user_id else _("Hello.")
    return (
        hello
        + " "
        + _(
            "Someone used your mail account *{address}* to send a flood of spam, so IT stopped it:\n"
            "• the spam still waiting to be sent was deleted\n"
            "• your INBOX was emptied: the messages that were in it are lost\n"
            "• your password was changed: use the new one below in your mail programs and phone\n"
            ":warning: Don't open attachments or links from senders you don't know."
        ).format(address=escape(address))
    )


def password_for_operator(*, incident_id: int, address: str, password: str) -> Message:
    """Return the ephemeral note giving the operator the password to tell the user by phone."""
    text = _("{address} has no Slack account: tell them their new password by phone (shown in Slack only).")
    text = text.format(address=address)
    blocks: list[Block] = [
        section(
            _(
                ":telephone_receiver: *{address}* is not in Slack: tell them by phone that their "
                "account sent spam, that their INBOX was emptied, not to open attachments from unknown senders, "
                "and their new password:"
            ).format(address=escape(address))
        ),
        section(f"`{password}`", BlockId.PASSWORD),
        ActionsBlock(
            elements=[
                button(
                    _("I have told the user"),
                    ActionId.CONFIRM_PASSWORD,
                    requests.encode(incident_id, account=address),
                    style="primary",
                )
            ],
            block_id=BlockId.PASSWORD_ACTIONS,
        ),
    ]
    return to_message(text, blocks)


def password_erased_note() -> Message:
    """Return what replaces the operator's ephemeral password note once confirmed."""
    text = _(":lock: The new password is erased from mailfix.")
    return to_message(text, [section(text)])


def _value(incident_id: int, address: str) -> str:
    """The confirm button's value: the incident and the account whose password it confirms."""
    return requests.encode(incident_id, account=address)
