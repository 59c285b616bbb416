"""mailfix's errors, each carrying the data a user or a caller needs.

    MailfixError
    ├── ConfigError(problems)            the configuration is invalid (every problem listed)
    ├── InvalidTransition(event, state)  "Can't approve when monitoring"
    ├── IncidentNotFound(incident_id)
    ├── ServerBusy(server, incident_id)  an incident is already open on that server
    ├── UnknownServer(name)
    ├── NotAuthorized(actor, action)     the actor lacks the role, or four-eyes forbids it
    ├── AlreadyDone(what, by, at)        someone else fired the same event first
    ├── ApprovalExpired(what, expired_at)
    ├── InvalidAccount(value)            not a plain local@domain / login name
    ├── StaleRequest(asked, now)         a click or command answers a question the incident no longer asks
    ├── AccountRefused(account, reason)  protected, not offered by mailfix, or of another domain
    ├── SecretUnavailable                MAILFIX_SECRET_KEY missing or wrong
    └── ExecutorError(host)              talking to the mail server failed
        ├── HostUnreachable
        ├── AuthFailed
        ├── HostKeyMismatch
        ├── CommandFailed(result)
        └── CommandTimeout

Messages are short, specific and free of secrets: they are shown to users as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.core.labels import approval_kind, event_label, state_label
from bot.i18n import _, pgettext

if TYPE_CHECKING:
    from collections.abc import Sequence


class MailfixError(Exception):
    """Base of every error mailfix shows to a user."""


class ConfigError(MailfixError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listed = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(_("invalid configuration:\n{problems}").format(problems=listed))


class InvalidTransition(MailfixError):
    """`state` is the incident's state, or `reason` says why instead (a phrase in the current language)."""

    def __init__(self, event: str, state: str = "", *, reason: str = "") -> None:
        self.event, self.state = event, state or reason
        if reason:
            message = pgettext("a reason", "Can't {event} when {state}").format(event=event_label(event), state=reason)
        else:
            message = _("Can't {event} when {state}").format(event=event_label(event), state=state_label(state))
        super().__init__(message)


class IncidentNotFound(MailfixError):
    def __init__(self, incident_id: int) -> None:
        self.incident_id = incident_id
        super().__init__(_("no incident #{id}").format(id=incident_id))


class ServerBusy(MailfixError):
    def __init__(self, server: str, incident_id: int | None) -> None:
        self.server, self.incident_id = server, incident_id
        if incident_id:
            message = _("an incident is already open on {server} (#{id}): see `status {id}`")
        else:
            message = _("an incident is already open on {server}: see `status `")
        super().__init__(message.format(server=server, id=incident_id))


class UnknownServer(MailfixError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name, self.known = name, list(known)
        if self.known:
            message = _("unknown server {name}; configured: {known}")
        else:
            message = _("unknown server {name}; configured: none")
        super().__init__(message.format(name=repr(name), known=", ".join(self.known)))


class NotAuthorized(MailfixError):
    def __init__(self, actor: str, action: str, reason: str = "") -> None:
        self.actor, self.action = actor, action
        super().__init__(reason or _("{actor} may not {action}").format(actor=actor, action=action))


class AlreadyDone(MailfixError):
    """`what` is a past tense marked with N_ (bot.core.binding.PAST_TENSE), translated where it is shown."""

    def __init__(self, what: str, by: str | None, at: datetime | None) -> None:
        self.what, self.by, self.at = what, by, at
        who, done = by or _("someone else"), _(what)
        if at:
            message = _("already {what} by {who} at {time}").format(what=done, who=who, time=f"{at:%H:%M}")
        else:
            message = _("already {what} by {who}").format(what=done, who=who)
        super().__init__(message)


class ApprovalExpired(MailfixError):
    def __init__(self, what: str, expired_at: datetime) -> None:
        self.what, self.expired_at = what, expired_at
        message = _("the {what} approval expired at {time}; ask for it again with `renew`")
        super().__init__(message.format(what=approval_kind(what), time=f"{expired_at:%H:%M}"))


class InvalidAccount(MailfixError):
    def __init__(self, value: str) -> None:
        self.value = value
        message = _("not a valid mail account: {value} (expected user or user@domain)")
        super().__init__(message.format(value=repr(value[:80])))


class StaleRequest(MailfixError):
    def __init__(self, asked: str, now: str) -> None:
        self.asked, self.now = asked, now
        message = _("this was about {asked}; the incident now asks about {now}. Nothing was changed.")
        super().__init__(message.format(asked=asked, now=now))


class AccountRefused(MailfixError):
    def __init__(self, account: str, reason: str) -> None:
        self.account, self.reason = account, reason
        super().__init__(_("{account}: {reason}. Nothing was changed.").format(account=account[:80], reason=reason))


class SecretUnavailable(MailfixError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class ExecutorError(MailfixError):
    """Talking to a mail server failed; `host` says which."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}")


class HostUnreachable(ExecutorError):
    pass


class AuthFailed(ExecutorError):
    pass


class HostKeyMismatch(ExecutorError):
    pass


class CommandFailed(ExecutorError):
    def __init__(self, host: str, message: str, result: Any = None) -> None:
        self.result = result
        super().__init__(host, message)


class CommandTimeout(ExecutorError):
    pass


class DeliveryDelayed(MailfixError):
    """A message the runbook must deliver (the password's DM) found the chat service busy or silent for now:
    a passing fault, which the scheduler retries like an unreachable server."""
