"""Whether what a person asks still applies, and whether the account it names is one mailfix may touch.

A click or command answers a question (an approval request about one account, a flood that a check
saw); it is carried out only while the incident still asks that very question, and a pick or a
contain may only name an account mailfix offered, of the server's own domain, and not protected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.core import diagnosis as diagnosis_codec
from bot.core.effects import approval_subject, current_approval
from bot.core.labels import decision_text, state_label
from bot.core.mailserver import NOT_ACCOUNTS, validate_account
from bot.core.requests import Request
from bot.core.table import Event, State
from bot.errors import AccountRefused, AlreadyDone, InvalidAccount, StaleRequest
from bot.i18n import N_, _
from storage.models import Incident

# What an event did, as "already <what> by <who>" says it: marked here, translated where shown (`_()`).
PAST_TENSE: Mapping[Event, str] = {
    Event.APPROVE: N_("approved"),
    Event.REJECT: N_("rejected"),
    Event.PICK: N_("redirected to another account"),
    Event.APPROVE_REBOOT: N_("approved (reboot)"),
    Event.ABORT: N_("aborted"),
    Event.RETRY: N_("retried"),
    Event.DIAGNOSE: N_("started"),
    Event.RESOLVE_NOW: N_("resolved"),
    Event.RENEW: N_("renewed"),
    Event.CONTAIN: N_("contained"),
}


def check_binding(incident: Incident, request: Request, *, done_before: Callable[[Event], AlreadyDone | None]) -> None:
    """Raise StaleRequest when the request answers an approval or account the incident no longer asks about."""
    if request.event not in (Event.APPROVE, Event.APPROVE_REBOOT, Event.REJECT, Event.PICK, Event.RENEW):
        return
    asked_now = _asks(incident)
    answered = next((a for a in incident.approvals if a.id == request.approval_id), None)
    if answered is not None and answered.decision is not None:
        if answered.decision == "approved" and request.event in (Event.APPROVE, Event.APPROVE_REBOOT):
            raise AlreadyDone(PAST_TENSE[Event.APPROVE], answered.decided_by, answered.decided_at)  # a double click
        subject = answered.subject or _("an earlier request")
        raise StaleRequest(f"{subject} ({decision_text(answered.decision)})", asked_now)
    reboot = request.event == Event.APPROVE_REBOOT or (request.event == Event.RENEW and request.reboot)
    waits_in = State.AWAITING_REBOOT_APPROVAL if reboot else State.AWAITING_APPROVAL
    names_what = request.event != Event.RENEW or request.reboot or request.account is not None
    if names_what and incident.state != waits_in:
        # Done already (a second click, a retried command) says by whom; anything else is stale.
        asked = (
            _("the reboot of {server}").format(server=incident.server)
            if waits_in == State.AWAITING_REBOOT_APPROVAL
            else _("the cleanup of {account}").format(
                account=request.account or incident.suspect_address or _("an account")
            )
        )
        raise done_before(request.event) or StaleRequest(asked, asked_now)
    current = current_approval(incident)
    if request.approval_id is not None and (current is None or current.id != request.approval_id):
        raise StaleRequest(answered.subject if answered and answered.subject else _("an earlier request"), asked_now)
    named = request.account
    if (
        request.event in (Event.APPROVE, Event.REJECT, Event.PICK, Event.RENEW)
        and named
        and named != incident.suspect_address
    ):
        raise StaleRequest(_("the cleanup of {account}").format(account=request.account), asked_now)


def offered_account(incident: Incident, request: Request, *, mail_domain: str, protected: frozenset[str]) -> str:
    """Return the account a pick or contain names, if mailfix offered it and may touch it; else refuse."""
    name = validate_account(request.pick or "")
    if name in NOT_ACCOUNTS:
        raise AccountRefused(name, _("the null sender (bounces) is nobody's account"))
    domain = mail_domain.lower()
    local, _sep, at = name.partition("@")
    if at and at != domain:
        raise AccountRefused(
            name, _("not an account of {domain}: mailfix acts only on local accounts").format(domain=domain)
        )
    if not protected.isdisjoint({name, local}):
        raise AccountRefused(name, _("a protected account (root, postmaster, system accounts...) is never touched"))
    offered: set[str]
    if request.event == Event.CONTAIN:
        offered = {a for a in (flood_account(incident),) if a is not None}
    else:
        diagnosis = diagnosis_codec.of(incident)
        ranked = (*diagnosis.snapshot.top_sasl_logins, *diagnosis.snapshot.top_senders) if diagnosis else ()
        offered = {r.name.lower() for r in ranked}
    # The suspect and the accounts already rejected are no "other" account, however they are spelled.
    spent = {
        alias for a in (incident.suspect_address, *incident.rejected_accounts) if a for alias in aliases(a, domain)
    }
    if name not in offered or not spent.isdisjoint(aliases(name, domain)):
        raise AccountRefused(name, _("mailfix did not offer this account here"))
    return name


def aliases(name: str, domain: str) -> set[str]:
    """Return the spellings of one local account: `user` and `user@domain` (a foreign address is only itself)."""
    name = name.lower()
    local, _sep, at = name.partition("@")
    return {local, f"{local}@{domain}"} if at in ("", domain) else {name}


def _asks(incident: Incident) -> str:
    """Return what the incident asks people about now, as they read it."""
    current = current_approval(incident)
    if current is not None and current.decision is None:
        return current.subject or approval_subject(incident, current.what)
    return _("nothing to approve (it is {state})").format(state=state_label(incident.state))


def flood_account(incident: Incident) -> str | None:
    """Return the account of the new flood the latest monitoring check saw, if it is one mailfix could contain."""
    if not incident.checks:
        return None
    name = str(((incident.checks[-1].details or {}).get("new_flood") or {}).get("name") or "")
    try:
        name = validate_account(name)
    except InvalidAccount:
        return None  # a forged sender, bounces: nobody to contain
    diagnosis = diagnosis_codec.of(incident)
    refused = set(diagnosis.protected) if diagnosis else set()
    refused |= {a.partition("@")[0] for a in incident.rejected_accounts} | set(incident.rejected_accounts)
    return None if name in NOT_ACCOUNTS or not refused.isdisjoint({name, name.partition("@")[0]}) else name
