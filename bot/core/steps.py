"""The steps the runbook runs on entering a working state, each with how to re-check it after a crash.

A step that changes the server is recorded as started before it runs and done after. When a
restarted bot finds one started but not done, it calls `verify` (True: the effect is already on
the server, so it is marked done without running again); a step without `verify` is idempotent
and is run again (setting the same stored password again, releasing what is already released),
except the bulk deletes, which re-check the queue themselves to count what a cut attempt deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.config import Config, ServerConfig
from bot.core import diagnosis as diagnosis_codec
from bot.core.mailserver import Account, Diagnosis, MailServer, Selection, validate_account
from bot.core.notifier import MessageRef, Notifier
from bot.core.progress import Reporter
from bot.core.vault import Vault, generate_password
from bot.i18n import N_, _, ngettext
from storage.models import Incident, StepRun


class StepName(StrEnum):
    """Every step a state can run; stored in step runs as its value."""

    DIAGNOSE = "diagnose"
    HOLD_FROM = "hold_from"
    HOLD_LOGIN = "hold_login"
    BLOCK_LOGIN = "block_login"
    KICK_SESSIONS = "kick_sessions"
    RECORD_CONTAINMENT = "record_containment"
    RELEASE_HELD = "release_held"
    UNBLOCK_LOGIN = "unblock_login"
    CHANGE_PASSWORD = "change_password"
    DELETE_FROM = "delete_from"
    DELETE_LOGIN = "delete_login"
    DELETE_TO = "delete_to"
    PURGE_INBOX = "purge_inbox"
    NOTIFY_USER = "notify_user"
    RESTART_POSTFIX = "restart_postfix"
    FLUSH_QUEUE = "flush_queue"
    REBOOT = "reboot"


class StepStatus(StrEnum):
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


FINISHED = frozenset({StepStatus.DONE, StepStatus.SKIPPED})


@dataclass
class StepContext:
    """What a step may use: the incident as it is now, the server, and a way to save fields."""

    incident: Incident
    server: MailServer
    config: Config
    server_config: ServerConfig
    vault: Vault
    notifier: Notifier
    save: Callable[..., None]
    now: Callable[[], datetime]
    withdraw_password: Callable[[Incident, str, str], bool]
    # Set by the step runner: writes fields into this attempt's record at once (before the server
    # changes), and says whether an earlier attempt of the step died or failed, maybe half way.
    note: Callable[..., None] = lambda **fields: None
    recheck: bool = False

    def progress(self, label: str, *, total: int | None = None) -> Reporter:
        """Return the hook for a long operation's progress, shown by the notifier until closed (`with`)."""
        return Reporter(lambda shown: self.notifier.step_progress(self.incident, shown), label, total=total)

    @property
    def account(self) -> Account:
        if not self.incident.suspect_address or not self.incident.suspect_login:
            raise ValueError("no suspect account on this incident")
        return Account(self.incident.suspect_address, self.incident.suspect_login)


@dataclass(frozen=True)
class StepOutcome:
    summary: dict[str, Any] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class Step:
    name: StepName
    run: Callable[[StepContext], StepOutcome]
    verify: Callable[[StepContext], bool] | None = None
    when: Callable[[StepContext], bool] = lambda ctx: True


def _diagnose(ctx: StepContext) -> StepOutcome:
    incident = ctx.incident
    with ctx.progress(_("reading the queue")) as progress:
        diagnosis = ctx.server.diagnose(
            flood_threshold=ctx.config.flood_threshold, exclude=frozenset(incident.rejected_accounts), progress=progress
        )
    summary = diagnosis_codec.to_json(diagnosis)
    if incident.picked_account:
        account = _account_for(incident.picked_account, ctx.server_config.mail_domain, diagnosis)
    elif diagnosis.suspect is not None:
        account = diagnosis.suspect.account
    else:
        ctx.save(diagnosis=summary, suspect_address=None, suspect_login=None)
        text = _("No flood: queue {total}, nothing over the threshold").format(total=diagnosis.snapshot.total)
        return StepOutcome(summary, text)
    ctx.save(diagnosis=summary, suspect_address=account.address, suspect_login=account.login, picked_account=None)
    text = _("Suspect {address} (login {login}); queue {total}").format(
        address=account.address, login=account.login, total=diagnosis.snapshot.total
    )
    return StepOutcome(summary, text)


def _account_for(name: str, domain: str, diagnosis: Diagnosis) -> Account:
    """Return the Account for a name a person picked from the top senders or logins."""
    name = validate_account(name)
    logins = {ranked.name.lower() for ranked in diagnosis.snapshot.top_sasl_logins}
    if "@" in name and name not in logins:
        return Account(address=name, login=name.split("@", 1)[0])
    return Account(address=name if "@" in name else f"{name}@{domain}", login=name)


def _selection(ctx: StepContext, kind: str) -> Selection:
    account = ctx.account
    if kind == "from":
        return Selection(sender=account.address)
    if kind == "to":
        return Selection(recipient=account.address)
    return Selection(sasl_login=account.login)


def _hold(kind: str) -> Step:
    def run(ctx: StepContext) -> StepOutcome:
        with ctx.progress(_("holding ({which})").format(which=_which(ctx, kind))) as progress:
            held = ctx.server.hold(_selection(ctx, kind), progress=progress)
        text = ngettext("Held {count} queued message ({which})", "Held {count} queued messages ({which})", held)
        text = text.format(count=held, which=_which(ctx, kind))
        return StepOutcome({"held": held}, text)

    def verify(ctx: StepContext) -> bool:
        return ctx.server.count(_selection(ctx, kind), queues=_NOT_HELD) == 0

    return Step(StepName(f"hold_{kind}"), run, verify, when=lambda ctx: ctx.config.hold_before_approval)


def _delete(kind: str) -> Step:
    """A bulk delete that counts what it is about to delete and records it before anything changes:
    when an attempt is cut (the link drops under postsuper) nobody knows how many it deleted, but the
    count the first attempt saw minus what is queued now does."""
    name = StepName(f"delete_{kind}")

    def run(ctx: StepContext) -> StepOutcome:
        selection = _selection(ctx, kind)
        queued = ctx.server.count(selection)
        first = next((r.summary["queued"] for r in _runs(ctx, name) if "queued" in r.summary), None)
        if first is None:
            ctx.note(queued=queued)
            first = queued
        cut_short = max(first - queued, 0)  # what earlier attempts deleted before they were cut
        if ctx.recheck and queued == 0:  # the cut attempt had deleted everything: nothing to run again
            summary = {"deleted": cut_short, "left": 0, "verified": "already applied; not run again"}
            text = ngettext(
                "Deleted {count} queued message ({which}), verified",
                "Deleted {count} queued messages ({which}), verified",
                cut_short,
            )
            return StepOutcome(summary, text.format(count=cut_short, which=_which(ctx, kind)))
        with ctx.progress(_("deleting ({which})").format(which=_which(ctx, kind)), total=queued) as progress:
            deleted = cut_short + ctx.server.delete(selection, progress=progress)
        summary = {"deleted": deleted, "left": ctx.server.count(selection)}
        text = ngettext(
            "Deleted {count} queued message ({which})", "Deleted {count} queued messages ({which})", deleted
        )
        if ctx.recheck:  # the summary is the step's record (the report's JSON): it stays in English
            summary["completed"] = f"re-checked: {queued} left of {first}, {cut_short} deleted by the cut attempt"
            text = ngettext(
                "Deleted {count} queued message ({which}), {cut} before the connection was cut",
                "Deleted {count} queued messages ({which}), {cut} of them before the connection was cut",
                deleted,
            )
        return StepOutcome(summary, text.format(count=deleted, which=_which(ctx, kind), cut=cut_short))

    return Step(name, run)


def _runs(ctx: StepContext, name: StepName) -> list[StepRun]:
    """Return the attempts of step `name` in the incident's current phase, oldest first."""
    return [r for r in ctx.incident.steps if r.phase == ctx.incident.phase and r.step == name]


SYSTEM_ACTOR = "mailfix"
_NOT_HELD = frozenset({"active", "deferred", "incoming", "maildrop"})
_HELD = frozenset({"hold"})


# Which queued messages a hold or delete of each kind selects, as its texts say it: "(from user@domain)".
WHICH = {"from": N_("from {target}"), "login": N_("login {target}"), "to": N_("to {target}")}


def _target(ctx: StepContext, kind: str) -> str:
    return ctx.account.login if kind == "login" else ctx.account.address


def _which(ctx: StepContext, kind: str) -> str:
    """Return e.g. "from user@domain" (the messages of `kind`), in the current language."""
    return _(WHICH[kind]).format(target=_target(ctx, kind))


def _release(ctx: StepContext) -> StepOutcome:
    released = 0
    for kind in ("from", "login"):
        with ctx.progress(_("releasing ({which})").format(which=_which(ctx, kind))) as progress:
            released += ctx.server.release(_selection(ctx, kind), progress=progress)
    text = ngettext(
        "Released {count} held message of {address}", "Released {count} held messages of {address}", released
    )
    text = text.format(count=released, address=ctx.account.address)
    return StepOutcome({"released": released}, text)


def _released(ctx: StepContext) -> bool:
    return all(ctx.server.count(_selection(ctx, kind), queues=_HELD) == 0 for kind in ("from", "login"))


def _block(ctx: StepContext) -> StepOutcome:
    # Where the block takes effect (which smtpd services consult the map): people must know at once.
    where = ctx.server.block_login(ctx.account)
    if where:
        text = _("Blocked SMTP login {login}: {where}").format(login=ctx.account.login, where=where)
    else:
        text = _("Blocked SMTP login {login}").format(login=ctx.account.login)
    return StepOutcome({"where": where}, text)


def _unblock(ctx: StepContext) -> StepOutcome:
    ctx.server.unblock_login(ctx.account)
    return StepOutcome({}, _("Unblocked SMTP login {login}").format(login=ctx.account.login))


def _kick(ctx: StepContext) -> StepOutcome:
    kicked = ctx.server.kick_sessions(ctx.account)
    text = ngettext(
        "Closed {count} open IMAP/POP session of {login}", "Closed {count} open IMAP/POP sessions of {login}", kicked
    ).format(count=kicked, login=ctx.account.login)
    return StepOutcome({"kicked": kicked}, text)


def _record_containment(ctx: StepContext) -> StepOutcome:
    if ctx.incident.contained_at is None:
        ctx.save(contained_at=ctx.now())
    seconds = ((ctx.incident.contained_at or ctx.now()) - ctx.incident.opened_at).total_seconds()
    text = _("Flood contained {seconds}s after opening").format(seconds=f"{seconds:.0f}")
    return StepOutcome({"seconds_to_containment": round(seconds, 1)}, text)


def _change_password(ctx: StepContext) -> StepOutcome:
    # Stored (encrypted) before it is set, so a retry after a crash sets the same one again.
    if ctx.incident.password_ciphertext is not None and ctx.incident.password_for != ctx.account.address:
        # One slot per incident: a second account's cleanup withdraws the first one's unconfirmed message.
        ctx.withdraw_password(ctx.incident, SYSTEM_ACTOR, "password_withdrawn_for_next_account")
        ctx.incident.password_ciphertext = None
    if ctx.incident.password_ciphertext is None:
        ctx.save(password_ciphertext=ctx.vault.encrypt(generate_password()), password_for=ctx.account.address)
    ciphertext = ctx.incident.password_ciphertext
    assert ciphertext is not None  # saved just above
    ctx.server.change_password(ctx.account, ctx.vault.decrypt(ciphertext))
    backend = ctx.server_config.password_backend
    text = _("Changed the password of {login} ({backend})").format(login=ctx.account.login, backend=backend)
    return StepOutcome({"backend": backend}, text)


def _purge(ctx: StepContext) -> StepOutcome:
    result = ctx.server.purge_inbox(ctx.account, label=f"incident-{ctx.incident.id}")
    summary = {"before": result.before, "after": result.after, "archived_to": result.archived_to}
    summary |= {"address": ctx.account.address, "login": ctx.account.login}  # whose INBOX the archive holds
    text = _("Emptied INBOX of {login}: {before} → {after} messages")
    return StepOutcome(summary, text.format(login=ctx.account.login, before=result.before, after=result.after))


def _notify(ctx: StepContext) -> StepOutcome:
    if ctx.incident.password_ciphertext is None:
        return StepOutcome({"via": "none"}, _("The new password was already delivered and erased"))
    delivery = ctx.notifier.deliver_password(
        ctx.incident, ctx.account, ctx.vault.decrypt(ctx.incident.password_ciphertext)
    )
    if delivery.confirmed:
        ctx.save(password_ciphertext=None)
    summary = {"via": delivery.via, "confirmed": delivery.confirmed, "note": delivery.note, "to": delivery.to}
    if delivery.ref is not None:
        summary |= {"message_channel": delivery.ref.channel, "message_ts": delivery.ref.ts}
    text = _("Told {address}. {note}").format(address=ctx.account.address, note=delivery.note)
    return StepOutcome(summary, text.strip())


def _restart(ctx: StepContext) -> StepOutcome:
    ctx.server.restart()
    return StepOutcome({}, _("Restarted Postfix"))


def _flush(ctx: StepContext) -> StepOutcome:
    ctx.server.flush_queue()
    return StepOutcome({}, _("Flushed the queue: deferred mail is being retried now"))


def _reboot(ctx: StepContext) -> StepOutcome:
    # Saved before the command goes out, so that a crash can be told apart from a reboot.
    ctx.save(boot_id_before_reboot=ctx.server.boot_id())
    ctx.server.reboot(deadline_seconds=ctx.server_config.reboot_deadline_seconds)
    return StepOutcome({}, _("Rebooted; SSH and Postfix answer again"))


def _rebooted(ctx: StepContext) -> bool:
    """Return True when the server booted since the reboot step saved its boot ID."""
    before = ctx.incident.boot_id_before_reboot
    return before is not None and ctx.server.boot_id() != before


DIAGNOSE = Step(StepName.DIAGNOSE, _diagnose)
HOLD_FROM, HOLD_LOGIN = _hold("from"), _hold("login")
DELETE_FROM, DELETE_LOGIN, DELETE_TO = _delete("from"), _delete("login"), _delete("to")
BLOCK_LOGIN = Step(
    StepName.BLOCK_LOGIN,
    _block,
    lambda ctx: ctx.server.is_login_blocked(ctx.account),
    when=lambda ctx: ctx.config.hold_before_approval,
)
UNBLOCK_LOGIN = Step(StepName.UNBLOCK_LOGIN, _unblock, lambda ctx: not ctx.server.is_login_blocked(ctx.account))
KICK_SESSIONS = Step(StepName.KICK_SESSIONS, _kick)
RECORD_CONTAINMENT = Step(StepName.RECORD_CONTAINMENT, _record_containment)
RELEASE_HELD = Step(StepName.RELEASE_HELD, _release, _released)
CHANGE_PASSWORD = Step(StepName.CHANGE_PASSWORD, _change_password)
PURGE_INBOX = Step(StepName.PURGE_INBOX, _purge, lambda ctx: ctx.server.inbox_count(ctx.account) == 0)
NOTIFY_USER = Step(StepName.NOTIFY_USER, _notify)
RESTART_POSTFIX = Step(StepName.RESTART_POSTFIX, _restart)
FLUSH_QUEUE = Step(StepName.FLUSH_QUEUE, _flush)
REBOOT = Step(StepName.REBOOT, _reboot, _rebooted)


# -- what the steps recorded ---------------------------------------------------------------


def archive_of(incident: Incident) -> tuple[str, Account] | None:
    """Return where the incident's last cleanup archived the INBOX it emptied, and whose INBOX that was."""
    for run in reversed(incident.steps):
        summary = run.summary
        if run.step == StepName.PURGE_INBOX and run.status == StepStatus.DONE and summary.get("archived_to"):
            if not summary.get("address") or not summary.get("login"):
                return None  # archived before mailfix recorded whose it was: restore it by hand
            return str(summary["archived_to"]), Account(summary["address"], summary["login"])
    return None


def delivery_of(incident: Incident) -> dict[str, Any]:
    """Return how the incident's new password was delivered (the notify step's summary), if it was."""
    for run in reversed(incident.steps):
        if run.step == StepName.NOTIFY_USER and run.status == StepStatus.DONE:
            return dict(run.summary)
    return {}


def password_message(incident: Incident) -> MessageRef | None:
    for run in reversed(incident.steps):
        if run.step == StepName.NOTIFY_USER and run.summary.get("message_ts"):
            return MessageRef(run.summary["message_channel"], run.summary["message_ts"])
    return None
