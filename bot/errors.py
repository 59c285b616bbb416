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

if TYPE_CHECKING:
    from collections.abc import Sequence


class MailfixError(Exception):
    """Base of every error mailfix shows to a user."""


class ConfigError(MailfixError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class InvalidTransition(MailfixError):
    def __init__(self, event: str, state: str) -> None:
        self.event, self.state = event, state
        super().__init__(f"Can't {event.replace('_', ' ')} when {state.replace('_', ' ')}")


class IncidentNotFound(MailfixError):
    def __init__(self, incident_id: int) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident #{incident_id}")


class ServerBusy(MailfixError):
    def __init__(self, server: str, incident_id: int | None) -> None:
        self.server, self.incident_id = server, incident_id
        which = f" (#{incident_id})" if incident_id else ""
        super().__init__(f"an incident is already open on {server}{which}: see `status {incident_id or ''}`".rstrip())


class UnknownServer(MailfixError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name, self.known = name, list(known)
        super().__init__(f"unknown server {name!r}; configured: {', '.join(self.known) or 'none'}")


class NotAuthorized(MailfixError):
    def __init__(self, actor: str, action: str, reason: str = "") -> None:
        self.actor, self.action = actor, action
        super().__init__(reason or f"{actor} may not {action}")


class AlreadyDone(MailfixError):
    def __init__(self, what: str, by: str | None, at: datetime | None) -> None:
        self.what, self.by, self.at = what, by, at
        when = f" at {at:%H:%M}" if at else ""
        super().__init__(f"already {what} by {by or 'someone else'}{when}")


class ApprovalExpired(MailfixError):
    def __init__(self, what: str, expired_at: datetime) -> None:
        self.what, self.expired_at = what, expired_at
        super().__init__(f"the {what} approval expired at {expired_at:%H:%M}; ask for it again with `renew`")


class InvalidAccount(MailfixError):
    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"not a valid mail account: {value[:80]!r} (expected user or user@domain)")


class StaleRequest(MailfixError):
    def __init__(self, asked: str, now: str) -> None:
        self.asked, self.now = asked, now
        super().__init__(f"this was about {asked}; the incident now asks about {now}. Nothing was changed.")


class AccountRefused(MailfixError):
    def __init__(self, account: str, reason: str) -> None:
        self.account, self.reason = account, reason
        super().__init__(f"{account[:80]}: {reason}. Nothing was changed.")


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
