"""The incident's channel message: its facts, its suspect, its approvals, and the buttons its state allows.

The buttons are read from the state table (`person_events`); each carries a value written by
`bot.core.requests.encode`, which binds a click to the approval and the account it answers.
"""

from __future__ import annotations

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

from bot.core import diagnosis as diagnosis_codec
from bot.core import monitoring, requests
from bot.core.binding import flood_account
from bot.core.effects import current_approval
from bot.core.labels import approval_kind, decision_text, state_label
from bot.core.mailserver import NOT_ACCOUNTS, Suspect, validate_account
from bot.core.progress import Progress
from bot.core.steps import SYSTEM_ACTOR, StepName, StepStatus, archive_of
from bot.core.table import APPROVAL_FOR, TERMINAL, Event, State, person_events
from bot.errors import InvalidAccount
from bot.i18n import N_, _
from handlers.blocks import (
    MAX_BUTTON_LABEL,
    MAX_OPTION_VALUE,
    STATE_EMOJI,
    Message,
    button,
    clip,
    confirm,
    duration,
    escape,
    person,
    section,
    to_message,
    when,
)
from handlers.ids import ActionId, BlockId
from storage.models import Approval, Check, Incident

DELETIONS = frozenset({StepName.DELETE_FROM, StepName.DELETE_LOGIN, StepName.DELETE_TO})


def incident_message(
    incident: Incident, *, now: datetime, interactive: bool = True, progress: Progress | None = None
) -> Message:
    """Return the incident's channel message; `interactive` adds the buttons its state allows, `progress`
    a line saying how far the running step is."""
    blocks: list[Block] = [
        HeaderBlock(
            text=clip(
                _("Incident #{id} · {server} · {state}").format(
                    id=incident.id, server=incident.server, state=state_label(incident.state)
                ),
                150,
            ),
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
            ContextBlock(elements=[MarkdownTextObject(text=clip(" · ".join(lines), 2000))], block_id=BlockId.APPROVALS)
        )
    if progress is not None:
        line = f":hourglass_flowing_sand: {escape(progress.text())}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(line, 2000))], block_id=BlockId.PROGRESS))
    if incident.state == State.FAILED and incident.failure:
        blocks.append(section(_(":x: *Failed:* {failure}").format(failure=escape(incident.failure)), BlockId.FAILURE))
    elements = (_actions(incident, now) + _restore_button(incident)) if interactive else []
    if elements:
        blocks.append(ActionsBlock(elements=elements, block_id=BlockId.ACTIONS))
    return to_message(incident_text(incident), blocks)


def incident_text(incident: Incident) -> str:
    """Return the plain-text fallback of the incident message."""
    n, server, state = incident.id, incident.server, state_label(incident.state)
    if incident.suspect_address:
        text = _("Incident #{id} on {server} is {state}: suspect {address}")
        return text.format(id=n, server=server, state=state, address=incident.suspect_address)
    return _("Incident #{id} on {server} is {state}").format(id=n, server=server, state=state)


def _facts(incident: Incident, now: datetime) -> list[MarkdownTextObject]:
    diagnosis = diagnosis_codec.of(incident)
    diagnosed = f"{diagnosis.snapshot.total:,}" if diagnosis else "?"
    sizes = [c.queue_size for c in incident.checks if c.queue_size >= 0]
    if sizes:
        queue = _("{now} now · {diagnosed} at diagnosis").format(now=f"{sizes[-1]:,}", diagnosed=diagnosed)
        queue += f"\n{monitoring.trend(sizes)} {monitoring.sparkline(sizes[-20:])}"
    else:
        queue = diagnosed if diagnosis else _("not checked yet")
    facts = [
        (_("State"), f"{STATE_EMOJI.get(incident.state, '')} {state_label(incident.state)}"),
        (_("Opened by"), f"{person(incident.opened_by)} {when(incident.opened_at)}"),
        (_("Queue"), queue),
        (_("Elapsed"), duration((incident.closed_at or now) - incident.opened_at)),
    ]
    if incident.contained_at is not None:
        contained = duration(incident.contained_at - incident.opened_at)
        facts.append((_("Contained"), _("{duration} after opening").format(duration=contained)))
    if incident.state == State.MONITORING and incident.monitor_deadline is not None:
        facts.append((_("Monitoring until"), when(incident.monitor_deadline, seconds=True)))
    if incident.checks:
        facts.append((_("Last check"), _check_text(incident.checks[-1])))
    return [MarkdownTextObject(text=clip(f"*{label}*\n{value}", 2000)) for label, value in facts]


def _check_text(check: Check) -> str:
    """Return the latest check's verdict and reasons (the thread only hears of changes; the message is live)."""
    reasons = "; ".join(str(r) for r in (check.details or {}).get("reasons") or ())
    if check.normal:
        verdict = _(":white_check_mark: normal")
    else:
        verdict = _(":warning: not normal: {reasons}").format(reasons=escape(reasons))
    return f"{verdict} ({when(check.at, seconds=True)})"


def _suspect_text(incident: Incident) -> str:
    if not incident.suspect_address:
        return ""
    suspect = _suspect(incident)
    lines = [
        _("*Suspect account:* `{address}` (SASL login `{login}`)").format(
            address=escape(incident.suspect_address), login=escape(incident.suspect_login)
        )
    ]
    lines.append(f"• {_named_by(incident, suspect)}")
    if suspect:
        lines.append(
            _("• {queued_from} queued from it · {queued_to} queued to it · {queued_by_login} sent by its login").format(
                queued_from=f"{suspect.queued_from:,}",
                queued_to=f"{suspect.queued_to:,}",
                queued_by_login=f"{suspect.queued_by_login:,}",
            )
        )
        if suspect.queued_total is not None:
            total = f"{suspect.queued_total:,}"
            lines.append(_("• {total} distinct queued messages in all: what its cleanup deletes").format(total=total))
        subjects = [f"“{escape(clip(s, 120))}”" for s in suspect.sample_subjects[:5]]
        if subjects:
            lines.append(_("• Sample subjects: {subjects}").format(subjects=", ".join(subjects)))
    deleted = _deleted(incident)
    if deleted is not None:
        lines.append(_("• The cleanup deleted {count} queued messages").format(count=f"{deleted:,}"))
    if incident.rejected_accounts:
        accounts = ", ".join(f"`{escape(a)}`" for a in incident.rejected_accounts)
        lines.append(_("• Not this account: {accounts}").format(accounts=accounts))
    return "\n".join(lines)


def _approval_line(approval: Approval, now: datetime) -> str:
    what = approval_kind(approval.what)
    asked = _("requested by {person} {when}").format(
        person=person(approval.requested_by), when=when(approval.requested_at)
    )
    if approval.decision is None and approval.expires_at <= now:
        return _("{what}: expired {when} ({asked})").format(what=what, when=when(approval.expires_at), asked=asked)
    if approval.decision is None:
        text = _("{what}: waiting for a director, {asked} (expires {when})")
        return text.format(what=what, asked=asked, when=when(approval.expires_at))
    decision = decision_text(approval.decision)
    by = person(approval.decided_by) if approval.decided_by and approval.decided_by != SYSTEM_ACTOR else ""
    at = when(approval.decided_at) if approval.decided_at else ""
    if by and at:
        return _("{what}: {decision} by {person} {when}").format(what=what, decision=decision, person=by, when=at)
    if by:
        return _("{what}: {decision} by {person}").format(what=what, decision=decision, person=by)
    return f"{what}: {decision} {at}" if at else f"{what}: {decision}"


def _actions(incident: Incident, now: datetime) -> list[Any]:
    """Return the buttons of the events the table lets people fire in the incident's state."""
    current = current_approval(incident)
    approval_id = current.id if current is not None and current.decision is None else None
    expired = State(incident.state) in APPROVAL_FOR and _approval_expired(current, now)
    elements: list[Any] = []
    for event in person_events(incident.state):
        if expired != (event == Event.RENEW) and event not in (Event.ABORT, Event.CONTAIN):
            continue  # an expired request offers "ask again" (a live one never does); abort and contain stay
        element = _element(incident, event, approval_id)
        if element is not None:
            elements.append(element)
    return elements


def _element(incident: Incident, event: Event, approval_id: int | None) -> Any:
    """Return the button (or select) for `event`, its value bound to the approval and account it answers."""
    n, account = incident.id, incident.suspect_address
    bound = requests.encode(n, approval_id=approval_id, account=account)
    if event == Event.APPROVE and account:
        label = _("Approve cleanup of {account}").format(account=account)
        return button(label, ActionId.APPROVE_CLEANUP, bound, style="primary", confirm=_confirm_cleanup(incident))
    if event == Event.REJECT and account:
        return button(_("Not this account"), ActionId.NOT_THIS_ACCOUNT, bound)
    if event == Event.PICK and account:
        options = _other_accounts(incident, approval_id)
        if options:
            return StaticSelectElement(
                placeholder=_("Pick another account"), action_id=ActionId.PICK_ACCOUNT, options=options
            )
        return None
    if event == Event.APPROVE_REBOOT:
        text = _("The server goes down for several minutes; mail waits in the senders' queues.")
        reboot_confirm = confirm(_("Reboot {server}?").format(server=incident.server), text, _("Reboot"))
        return button(_("Approve reboot"), ActionId.APPROVE_REBOOT, bound, style="primary", confirm=reboot_confirm)
    if event == Event.RENEW:
        return button(_("Ask the directors again"), ActionId.RENEW_APPROVAL, bound, style="primary")
    if event == Event.RETRY:
        return button(_("Retry step"), ActionId.RETRY_STEP, str(n), style="primary")
    if event == Event.RESOLVE_NOW:
        return button(_("Resolve now"), ActionId.RESOLVE_NOW, str(n))
    if event == Event.CONTAIN:
        return _contain_button(incident)
    if event == Event.ABORT:
        text = _("mailfix stops here and changes nothing more on the server; what it already did stays done.")
        question = confirm(_("Abort incident #{id}?").format(id=n), text, _("Abort"))
        return button(_("Abort"), ActionId.ABORT, str(n), style="danger", confirm=question)
    return None


def _restore_button(incident: Incident) -> list[Any]:
    """Return "Restore INBOX" on a closed incident whose cleanup archived the INBOX it emptied (directors only)."""
    if State(incident.state) not in TERMINAL or archive_of(incident) is None:
        return []
    login = incident.suspect_login
    text = _("Put the archived messages back into the INBOX of {login}. Only directors may.").format(login=login)
    question = confirm(_("Restore the INBOX of {login}?").format(login=login), text, _("Restore"))
    return [button(_("Restore INBOX"), ActionId.RESTORE_INBOX, str(incident.id), confirm=question)]


def _contain_button(incident: Incident) -> ButtonElement | None:
    """Return "Contain <name> too" when the latest check saw a flood from another account."""
    name = flood_account(incident)
    if name is None:
        return None
    value = requests.encode(incident.id, pick=name)
    if len(value) > MAX_OPTION_VALUE:
        return None
    text = _(
        "Hold the mail queued by {name}, block its login and close its sessions (all reversible)."
        " Its cleanup then waits for a director's approval, like the first account's."
    ).format(name=name)
    if incident.state == State.AWAITING_REBOOT_APPROVAL:
        text += " " + _("The pending reboot request is withdrawn.")
    return button(
        _("Contain {name} too").format(name=name),
        ActionId.CONTAIN_ACCOUNT,
        value,
        style="primary",
        confirm=confirm(_("Contain {name} too?").format(name=name), text, _("Contain")),
    )


# How the diagnosis named the suspect (its `evidence`), as people read it: translated where shown (`_named_by`).
EVIDENCE = {
    "sasl_login": N_("Named by its SASL login: Postfix's own record of who authenticated to send the flood"),
    "sender_address": N_("Named by its envelope sender: the log ties this mail to no login, and the account exists"),
}


def _named_by(incident: Incident, suspect: Suspect | None) -> str:
    if incident.suspect_named_by:
        return _("Named by {person}").format(person=person(incident.suspect_named_by))
    evidence = EVIDENCE.get(suspect.evidence if suspect else "")
    return _(evidence) if evidence else _("Named by the diagnosis")


def _suspect(incident: Incident) -> Suspect | None:
    """Return the diagnosis' evidence on the incident's suspect (None when a person picked another account)."""
    diagnosis = diagnosis_codec.of(incident)
    suspect = diagnosis.suspect if diagnosis else None
    return suspect if suspect is not None and suspect.account.address == incident.suspect_address else None


def _approval_expired(current: Approval | None, now: datetime) -> bool:
    return current is not None and (
        current.decision == "expired" or (current.decision is None and current.expires_at <= now)
    )


def _confirm_cleanup(incident: Incident) -> ConfirmObject:
    total = diagnosis_codec.cleanup_total(incident)
    # The count of distinct messages: sent from it, by its login and to it overlap (each is deleted once).
    address = incident.suspect_address
    if total is not None:
        text = _(
            "This changes the password of {address}, deletes the {count} queued messages from it,"
            " to it or sent by its login, empties its INBOX and tells the user. It cannot be undone."
        ).format(address=address, count=f"{total:,}")
    else:
        text = _(
            "This changes the password of {address}, deletes the queued messages from it,"
            " to it or sent by its login, empties its INBOX and tells the user. It cannot be undone."
        ).format(address=address)
    return confirm(_("Approve the cleanup?"), text, _("Approve"))


def _deleted(incident: Incident) -> int | None:
    """Return how many queued messages the latest cleanup deleted (None before any cleanup ran)."""
    runs = [r for r in incident.steps if r.step in DELETIONS and r.status == StepStatus.DONE]
    if not runs:
        return None
    latest = max(r.phase for r in runs)
    return sum(int(r.summary.get("deleted", 0) or 0) for r in runs if r.phase == latest)


def _other_accounts(incident: Incident, approval_id: int | None) -> list[Option]:
    """Return select options for the other top senders and logins (valid account names only)."""
    diagnosis = diagnosis_codec.of(incident)
    skip = {incident.suspect_address, incident.suspect_login, *incident.rejected_accounts}
    skip |= set(diagnosis.protected) if diagnosis else set()
    own_domain = (incident.suspect_address or "").partition("@")[2]
    options: dict[str, Option] = {}
    for ranking in (diagnosis.snapshot.top_sasl_logins, diagnosis.snapshot.top_senders) if diagnosis else ():
        for name, count in ((r.name, r.count) for r in ranking):
            try:
                name = validate_account(name)
            except InvalidAccount:
                continue  # not an address or login a director could pick
            value = requests.encode(incident.id, approval_id=approval_id, account=incident.suspect_address, pick=name)
            local, _at, domain = name.partition("@")
            if domain and domain != own_domain:
                continue  # another domain's address is nobody's account here: never offered
            if {name, local} & skip or name in NOT_ACCOUNTS or name in options or len(value) > MAX_OPTION_VALUE:
                continue
            label = _("{name} ({count} queued)").format(name=name, count=count)
            options[name] = Option(value=value, text=clip(label, MAX_BUTTON_LABEL))
    return list(options.values())[:100]
