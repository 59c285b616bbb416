"""The mail-server interface the runbook drives, and the typed values it returns.

The runbook core sees only this Protocol; `bot.mail.postfix.PostfixServer` implements it
over SSH, and `tests.fakes.FakeMailServer` in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.progress import Hook
from bot.errors import InvalidAccount

# A login or address we are willing to put on a command line: letters, digits and
# . _ + - in the local part, a plain DNS name after @. Nothing a shell interprets.
_LOCAL = r"[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,62}[A-Za-z0-9_+-])?"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_ACCOUNT_RE = re.compile(rf"{_LOCAL}(?:@{_DOMAIN})?")


def validate_account(value: str) -> str:
    """Return `value` lower-cased if it is a plain `user` or `user@domain`, else raise InvalidAccount."""
    if not isinstance(value, str) or len(value) > 254 or not _ACCOUNT_RE.fullmatch(value):
        raise InvalidAccount(str(value))
    return value.lower()


# How Postfix shows the bounces' null sender: never an account to blame for a flood.
NOT_ACCOUNTS = frozenset({"", "mailer-daemon"})


@dataclass(frozen=True)
class Account:
    """A mail account: its address and the SASL login it authenticates with."""

    address: str  # user@domain
    login: str  # what it authenticates as (SASL username, system user)

    def __post_init__(self) -> None:
        validate_account(self.address)
        validate_account(self.login)


@dataclass(frozen=True)
class Selection:
    """Which queued messages an operation acts on; every given field must match exactly."""

    sender: str | None = None  # envelope sender address
    recipient: str | None = None  # any envelope recipient
    sasl_login: str | None = None  # authenticated as (from the Postfix log)

    def __post_init__(self) -> None:
        if not (self.sender or self.recipient or self.sasl_login):
            raise ValueError("an empty selection would match the whole queue")
        for value in (self.sender, self.recipient, self.sasl_login):
            if value is not None:
                validate_account(value)


@dataclass(frozen=True)
class Ranked:
    """One sender, recipient or SASL login with its count of queued messages."""

    name: str
    count: int


@dataclass(frozen=True)
class QueueSnapshot:
    """Aggregates of the whole queue, computed while streaming it."""

    total: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)  # active, deferred, hold, incoming, maildrop
    top_senders: tuple[Ranked, ...] = ()
    top_recipients: tuple[Ranked, ...] = ()
    top_sasl_logins: tuple[Ranked, ...] = ()
    oldest_age_seconds: int = 0
    total_bytes: int = 0
    malformed_lines: int = 0
    ranking_error: int = 0  # top sender/recipient counts may be low by up to this (0: exact)


@dataclass(frozen=True)
class Suspect:
    """The account named as the flood's source, with the evidence."""

    account: Account
    queued_from: int  # envelope sender is the account
    queued_to: int  # the account is a recipient (bounces of the run)
    queued_by_login: int  # authenticated as the account's login
    sample_subjects: tuple[str, ...] = ()
    evidence: str = ""  # what named it: "sasl_login" (Postfix's record of the login) or "sender_address"
    queued_total: int | None = None  # distinct messages from it, to it or by its login: what its cleanup deletes


@dataclass(frozen=True)
class Diagnosis:
    """What the queue says: the suspect (None when nothing crosses the threshold) and the runner-up."""

    snapshot: QueueSnapshot
    suspect: Suspect | None
    runner_up: Ranked | None = None
    warnings: tuple[str, ...] = ()  # e.g. the Postfix log was not found
    protected: tuple[str, ...] = ()  # accounts never to name, offer or touch on this server


@dataclass(frozen=True)
class PurgeResult:
    before: int
    after: int
    archived_to: str | None = None


@dataclass(frozen=True)
class Health:
    """One monitoring check."""

    postfix_running: bool
    queue_size: int
    top_sender: Ranked | None = None
    top_login: Ranked | None = None


class MailServer(Protocol):
    """Every operation the runbook performs on one mail server."""

    name: str

    def diagnose(
        self, *, flood_threshold: int, exclude: frozenset[str] = frozenset(), progress: Hook | None = None
    ) -> Diagnosis:
        """Snapshot the queue, attribute it to SASL logins and name a suspect, changing nothing.

        `progress` (here and below) hears how far a long operation is: messages read, or acted on.
        """
        ...

    def count(self, selection: Selection, *, queues: frozenset[str] | None = None) -> int:
        """Return how many queued messages match `selection` (in `queues`, default all)."""
        ...

    def hold(self, selection: Selection, *, progress: Hook | None = None) -> int:
        """Put matching messages on hold; return how many."""
        ...

    def release(self, selection: Selection, *, progress: Hook | None = None) -> int:
        """Release matching held messages; return how many."""
        ...

    def delete(self, selection: Selection, *, progress: Hook | None = None) -> int:
        """Delete matching messages from every queue; return how many."""
        ...

    def change_password(self, account: Account, password: Password) -> None:
        """Set the account's password (idempotent: setting the same one again is harmless)."""
        ...

    def block_login(self, account: Account) -> str:
        """Refuse the account's SASL login at once (idempotent); return where the block applies ('' if unknown)."""
        ...

    def unblock_login(self, account: Account) -> None:
        """Undo block_login (idempotent)."""
        ...

    def is_login_blocked(self, account: Account) -> bool: ...

    def kick_sessions(self, account: Account) -> int:
        """Close the account's open IMAP/POP sessions; return how many."""
        ...

    def purge_inbox(self, account: Account, *, label: str = "") -> PurgeResult:
        """Empty the account's INBOX (after an archive copy, its name tagged with `label`, when configured)."""
        ...

    def restore_inbox(self, account: Account, archive: str) -> int:
        """Put an archive's messages back into the account's INBOX; return how many."""
        ...

    def inbox_count(self, account: Account) -> int: ...

    def protected_accounts(self) -> frozenset[str]:
        """Return the accounts never to name, pick or touch on this server (lower-case logins)."""
        ...

    def health(self, *, flood_threshold: int) -> Health: ...

    def flush_queue(self) -> None:
        """Ask Postfix to retry the deferred mail now."""
        ...

    def restart(self) -> None: ...

    def reboot(self, *, deadline_seconds: float) -> None:
        """Reboot and wait until SSH and Postfix answer again, or raise HostUnreachable."""
        ...

    def boot_id(self) -> str:
        """Return the ID of the server's current boot (it changes with every boot)."""
        ...

    def close(self) -> None: ...


class Password:
    """A new password; never shown by repr or str, only by `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if len(value) < 20 or any(c.isspace() or c == ":" for c in value):
            raise ValueError("a password needs at least 20 characters and no spaces or colons")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Password('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Password) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
