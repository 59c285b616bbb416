"""What a transition does besides changing the state: who may fire it, the fields it changes, and the
approval it decides or requests. Pure functions of the incident, the event and the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bot.config import Config
from bot.core.labels import event_label
from bot.core.steps import SYSTEM_ACTOR
from bot.core.table import APPROVAL_FOR, MONITOR_ROUNDS, TERMINAL, Event, Guard, State, monitor_round_after
from bot.errors import ApprovalExpired, InvalidTransition, NotAuthorized
from bot.i18n import _
from storage.models import Approval, Incident
from storage.repository import NewApproval


def authorize(config: Config, actor: str, guard: Guard, incident: Incident | None, event: Event) -> None:
    """Raise NotAuthorized unless `actor` may fire `event` under `guard`."""
    if guard == Guard.SYSTEM:
        if actor != SYSTEM_ACTOR:
            raise NotAuthorized(
                actor, event, _("{event} is fired by mailfix itself, not by people").format(event=event)
            )
        return
    if actor == SYSTEM_ACTOR:
        return
    if guard == Guard.OPERATOR and actor not in config.operators | config.directors:
        reason = _("only operators or directors may {action}").format(action=event_label(event))
        raise NotAuthorized(actor, event, reason)
    if guard in (Guard.DIRECTOR, Guard.APPROVER) and actor not in config.directors:
        raise NotAuthorized(actor, event, _("only the IT director can approve this"))
    if guard == Guard.APPROVER and incident is not None and not config.allow_self_approval:
        if actor == incident.opened_by:
            raise NotAuthorized(actor, event, _("you opened this incident: another director must approve (four-eyes)"))
        if actor == incident.suspect_named_by:
            raise NotAuthorized(actor, event, _("you named this account: another director must approve (four-eyes)"))


def current_approval(incident: Incident) -> Approval | None:
    """Return the newest approval request for what the incident's state waits on."""
    what = APPROVAL_FOR.get(State(incident.state))
    matching = [a for a in incident.approvals if a.what == what]
    return matching[-1] if matching else None


def pending_approval(incident: Incident) -> Approval | None:
    pending = [a for a in incident.approvals if a.decision is None]
    return pending[-1] if pending else None


def approval_subject(incident: Incident, what: str) -> str:
    """Return what an approval is about, as people read it: the account, or "reboot of <server>".

    Stored with the approval request (its `subject`), in the language spoken when it was asked."""
    if what == "reboot":
        return _("the reboot of {server}").format(server=incident.server)
    return _("the cleanup of {account}").format(account=incident.suspect_address)


def effects(
    *,
    config: Config,
    incident: Incident,
    event: Event,
    target: State,
    actor: str,
    data: Mapping[str, Any],
    now: datetime,
) -> tuple[dict[str, Any], tuple[int, str] | None, NewApproval | None]:
    """Return the field changes, the approval decision and the approval request a transition brings."""
    changes: dict[str, Any] = {"state": target}
    if event not in (Event.RETRY, Event.AUTO_RETRY, Event.STEP_FAILED):
        changes["phase"] = incident.phase + 1
    if target == State.FAILED:
        changes |= {"failed_state": incident.state, "failure": str(data.get("reason", ""))[:2000]}
    if target in TERMINAL:
        changes["closed_at"] = now
    if event in (Event.REJECT, Event.PICK) and incident.suspect_address:
        changes["rejected_accounts"] = [*incident.rejected_accounts, incident.suspect_address]
    if event in (Event.PICK, Event.CONTAIN):
        changes |= {"picked_account": str(data["pick"]), "suspect_named_by": actor}
    elif event == Event.REJECT:
        changes["suspect_named_by"] = None
    if target == State.MONITORING:
        monitor_round = monitor_round_after(event, incident.monitor_round)
        minutes = getattr(config, MONITOR_ROUNDS[monitor_round].minutes_key)
        changes |= {"monitor_round": monitor_round, "monitor_deadline": now + timedelta(minutes=minutes)}
    decide, request = None, None
    current = current_approval(incident)
    expired = current is None or current.decision == "expired" or current.expires_at <= now
    if event in (Event.APPROVE, Event.APPROVE_REBOOT):
        if current is None or expired:
            raise ApprovalExpired(current.what if current else "pending", current.expires_at if current else now)
        decide = (current.id, "approved")
    elif event in (Event.REJECT, Event.PICK) and current is not None and current.decision is None:
        decide = (current.id, "rejected")
    elif event == Event.CONTAIN and current is not None and current.decision is None:
        decide = (current.id, "withdrawn")  # the other account's flood comes first; a reboot would not stop it
    elif event == Event.RENEW:
        if not expired:
            raise InvalidTransition(Event.RENEW, reason=_("the approval request has not expired"))
        if current is not None and current.decision is None:
            decide = (current.id, "expired")
    what = APPROVAL_FOR.get(target)
    if what is not None and (event == Event.RENEW or target != incident.state):
        timeout = timedelta(minutes=config.approval_timeout_minutes)
        subject = approval_subject(incident, what)
        request = NewApproval(what=what, subject=subject, requested_by=actor, expires_at=now + timeout)
    return changes, decide, request
