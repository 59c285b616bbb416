"""Stored values as people read them, in the current language: a state, what an approval asks for, how it
was decided. The keys stay the values the database holds; the texts are marked here and translated where shown.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.core.table import State
from bot.i18n import N_, _

STATES: Mapping[str, str] = {
    State.OPENED: N_("opened"),
    State.DIAGNOSING: N_("diagnosing"),
    State.AWAITING_APPROVAL: N_("awaiting approval"),
    State.RELEASING: N_("releasing"),
    State.CONTAINING: N_("containing"),
    State.CLEANING_UP: N_("cleaning up"),
    State.PURGING_MAILBOX: N_("purging mailbox"),
    State.NOTIFYING_USER: N_("notifying user"),
    State.MONITORING: N_("monitoring"),
    State.RESTARTING: N_("restarting"),
    State.AWAITING_REBOOT_APPROVAL: N_("awaiting reboot approval"),
    State.REBOOTING: N_("rebooting"),
    State.RESOLVED: N_("resolved"),
    State.ABORTED: N_("aborted"),
    State.FAILED: N_("failed"),
}
APPROVAL_KINDS: Mapping[str, str] = {"cleanup": N_("cleanup"), "reboot": N_("reboot")}
DECISIONS: Mapping[str, str] = {
    "approved": N_("approved"),
    "rejected": N_("rejected"),
    "expired": N_("expired"),
    "withdrawn": N_("withdrawn"),
}


def _label(labels: Mapping[str, str], value: str) -> str:
    return _(labels[value]) if value in labels else value.replace("_", " ")


def state_label(state: str) -> str:
    """A state as people read it ("awaiting approval"); an unknown one with its underscores as spaces."""
    return _label(STATES, str(state))


def approval_kind(what: str) -> str:
    """What an approval asks for ("cleanup", "reboot"); unknown ones as they are."""
    return _label(APPROVAL_KINDS, what)


def decision_text(decision: str) -> str:
    """How an approval was decided ("approved"); unknown ones as they are."""
    return _label(DECISIONS, decision)
