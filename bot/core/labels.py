"""Stored values as people read them, in the current language: a state, an event (what a person asked to do),
what an approval asks for, how it was decided. The keys are the values the database and
the state table hold (plain strings: this module imports nothing of the core, so `bot.errors` may use it);
the texts are marked here and translated where shown. In English each reads as its value with spaces.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.i18n import N_, _

STATES: Mapping[str, str] = {
    "opened": N_("opened"),
    "diagnosing": N_("diagnosing"),
    "awaiting_approval": N_("awaiting approval"),
    "releasing": N_("releasing"),
    "containing": N_("containing"),
    "cleaning_up": N_("cleaning up"),
    "purging_mailbox": N_("purging mailbox"),
    "notifying_user": N_("notifying user"),
    "monitoring": N_("monitoring"),
    "restarting": N_("restarting"),
    "awaiting_reboot_approval": N_("awaiting reboot approval"),
    "rebooting": N_("rebooting"),
    "resolved": N_("resolved"),
    "aborted": N_("aborted"),
    "failed": N_("failed"),
}
# What people ask for with a button or a command ("Can't approve when monitoring").
EVENTS: Mapping[str, str] = {
    "diagnose": N_("diagnose"),
    "approve": N_("approve"),
    "reject": N_("reject"),
    "pick": N_("pick"),
    "contain": N_("contain"),
    "renew": N_("renew"),
    "resolve_now": N_("resolve now"),
    "approve_reboot": N_("approve reboot"),
    "retry": N_("retry"),
    "abort": N_("abort"),
}
APPROVAL_KINDS: Mapping[str, str] = {"cleanup": N_("cleanup"), "reboot": N_("reboot"), "pending": N_("pending")}
DECISIONS: Mapping[str, str] = {
    "approved": N_("approved"),
    "rejected": N_("rejected"),
    "expired": N_("expired"),
    "withdrawn": N_("withdrawn"),
}


def _label(labels: Mapping[str, str], value: str) -> str:
    return _(labels[value]) if value in labels else value.replace("_", " ")


def event_label(event: str) -> str:
    """What a person asked to do ("approve reboot"); an unknown one (a phrase already) as it is."""
    key = str(event).replace(" ", "_")
    return _label(EVENTS, key) if key in EVENTS else str(event).replace("_", " ")


def state_label(state: str) -> str:
    """A state as people read it ("awaiting approval"); an unknown one with its underscores as spaces."""
    return _label(STATES, str(state))


def approval_kind(what: str) -> str:
    """What an approval asks for ("cleanup", "reboot"); unknown ones as they are."""
    return _label(APPROVAL_KINDS, what)


def decision_text(decision: str) -> str:
    """How an approval was decided ("approved"); unknown ones as they are."""
    return _label(DECISIONS, decision)
