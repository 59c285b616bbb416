"""What a person asks of an incident, bound to what they saw: the account and the approval request.

A Slack button and a CLI command both become a `Request`; the runbook carries it out only while the
incident still asks that very question (`Runbook.act`). Buttons carry it in their value, in one
format written and read only here: "<incident id>:<approval id>:<account>:<pick>" (empty when none).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.mailserver import validate_account
from bot.core.table import Event
from bot.errors import InvalidAccount, MailfixError
from bot.i18n import N_, _

MAX_ID_DIGITS = 9  # incident and approval ids are ASCII digits, at most this many
# What a button of each event must carry: an approval is answered by its id and names its account.
BOUND = {
    Event.APPROVE: ("approval_id", "account"),
    Event.REJECT: ("approval_id", "account"),
    Event.PICK: ("approval_id", "account", "pick"),
    Event.APPROVE_REBOOT: ("approval_id",),
    Event.RENEW: ("approval_id",),
    Event.CONTAIN: ("pick",),
}
# What parse_id says of a value that is not a number, by what the number names.
NOT_A_NUMBER = {
    "incident": N_("{value} is not an incident number, like 12"),
    "approval": N_("{value} is not an approval number, like 12"),
}


class BadRequest(MailfixError):
    """A button value or command argument that mailfix never wrote (forged, truncated, garbled)."""


@dataclass(frozen=True)
class Request:
    incident_id: int
    event: Event
    account: str | None = None  # the account the person was asked about (approve, reject, pick)
    approval_id: int | None = None  # the approval request the person answered
    pick: str | None = None  # the account the person chose instead (pick) or in addition (contain)
    reboot: bool = False  # the person answers the reboot request (the CLI's --reboot; buttons carry the approval id)


def parse_id(text: str, what: str = "incident") -> int:
    """Return `text` as an id: ASCII digits only, bounded length (a leading # is allowed)."""
    digits = text.strip().removeprefix("#")
    if not (digits.isascii() and digits.isdigit() and 0 < len(digits) <= MAX_ID_DIGITS):
        shown = text if len(text) <= 20 else text[:20] + "…"  # never echo a huge value whole
        raise BadRequest(_(NOT_A_NUMBER.get(what, NOT_A_NUMBER["incident"])).format(value=repr(shown)))
    return int(digits)


def encode(
    incident_id: int, *, approval_id: int | None = None, account: str | None = None, pick: str | None = None
) -> str:
    """Return a button value that binds the click to the incident, the approval and the accounts."""
    return f"{incident_id}:{approval_id if approval_id is not None else ''}:{account or ''}:{pick or ''}"


def decode(value: object, event: Event) -> Request:
    """Return the Request a button value carries; raise BadRequest for anything `encode` did not write."""
    if not isinstance(value, str) or len(value) > 400:
        raise BadRequest(_("this button's value is not one mailfix wrote"))
    parts = value.split(":")
    if len(parts) > 4:
        raise BadRequest(_("this button's value is not one mailfix wrote"))
    number, approval, account, pick = (*parts, "", "", "")[:4]
    try:
        request = Request(
            incident_id=parse_id(number),
            event=event,
            approval_id=parse_id(approval, "approval") if approval else None,
            account=validate_account(account) if account else None,
            pick=validate_account(pick) if pick else None,
        )
    except InvalidAccount as exc:
        raise BadRequest(str(exc)) from None
    if any(getattr(request, field) is None for field in BOUND.get(event, ())):
        raise BadRequest(_("this button's value is not one mailfix wrote"))
    return request
