"""Fakes for fast unit tests: an in-memory mail server that records calls, and a recording notifier.

FakeMailServer can persist itself to a JSON file so that a real `mailfix` process (loaded through
MAILFIX_MAILSERVER=tests.fakes:file_server) can be killed mid-step and restarted in the crash test.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import ServerConfig
from bot.core.mailserver import (
    Account,
    Diagnosis,
    Health,
    Password,
    PurgeResult,
    QueueSnapshot,
    Ranked,
    Selection,
    Suspect,
)
from bot.core.notifier import Delivery, MessageRef
from bot.core.progress import Hook, Progress
from bot.errors import CommandFailed
from storage.models import Incident


@dataclass
class Message:
    id: str
    sender: str
    recipients: list[str]
    login: str | None = None
    queue: str = "deferred"
    subject: str = ""


@dataclass
class FakeMailServer:
    """A mail server in memory: a queue, passwords, blocked logins, inboxes, and a log of calls."""

    name: str = "mail1"
    domain: str = "example.org"
    messages: list[Message] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    inbox: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    archives: dict[str, list] = field(default_factory=dict)  # archive path -> [login, messages]
    password_digests: list[str] = field(default_factory=list)  # every password set, hashed: was it the same?
    protected: frozenset[str] = frozenset({"root", "postmaster", "abuse", "mailer-daemon", "mailfix"})
    postfix_running: bool = True
    boots: int = 1  # how many times the server has booted
    fail_on: str = ""  # a method name that raises CommandFailed
    state_file: Path | None = None
    block_after: str = ""  # a method (or "method#n", its nth call) that, once applied and saved, hangs (crash test)
    # Long operations report progress every `progress_every` messages, pausing `progress_pause` seconds
    # at each report (a slowed server for the progress tests); `slowed`: only these methods ("": all).
    progress_every: int = 25
    progress_pause: float = 0.0
    slowed: str = ""
    _next_id: int = 0

    # -- building a scenario --------------------------------------------------------------

    def flood(self, login: str, count: int, *, forged: int = 0, to_account: int = 0, legit: int = 0) -> None:
        """Queue `count` messages sent as `login` (`forged` with other senders), bounces to it, and legit mail."""
        address = f"{login}@{self.domain}"
        for i in range(count):
            sender = f"promo{i}@spam.example" if i < forged else address
            self._add(sender, [f"victim{i}@remote.example"], login, f"Cheap pills {i}")
        for _ in range(to_account):
            self._add("MAILER-DAEMON", [address], None, "Undelivered Mail Returned to Sender")
        for i in range(legit):
            self._add(f"alice@{self.domain}", [f"friend{i}@remote.example"], "alice", "Minutes")

    def _add(self, sender: str, recipients: list[str], login: str | None, subject: str) -> None:
        self._next_id += 1
        self.messages.append(Message(f"Q{self._next_id:06d}", sender, recipients, login, subject=subject))

    # -- the MailServer interface ---------------------------------------------------------

    def diagnose(
        self, *, flood_threshold: int, exclude: frozenset[str] = frozenset(), progress: Hook | None = None
    ) -> Diagnosis:
        self._call("diagnose")
        self._report(len(self.messages), None, progress, "diagnose")
        snapshot = self._snapshot()
        exclude = exclude | self.protected
        for ranked in snapshot.top_sasl_logins:
            address = ranked.name if "@" in ranked.name else f"{ranked.name}@{self.domain}"
            if ranked.count >= flood_threshold and address not in exclude and ranked.name not in exclude:
                account = Account(address, ranked.name)
                return Diagnosis(snapshot, self._suspect(account), None, protected=tuple(sorted(self.protected)))
        return Diagnosis(snapshot, None, None, protected=tuple(sorted(self.protected)))

    def _suspect(self, account: Account) -> Suspect:
        return Suspect(
            account,
            queued_from=self.count(Selection(sender=account.address)),
            queued_to=self.count(Selection(recipient=account.address)),
            queued_by_login=self.count(Selection(sasl_login=account.login)),
            sample_subjects=tuple(m.subject for m in self.messages[:3]),
            evidence="sasl_login",
            queued_total=sum(  # what the cleanup's three deletions delete, each message once
                any(self._matches(m, s) for s in self._cleanup_selections(account)) for m in self.messages
            ),
        )

    @staticmethod
    def _cleanup_selections(account: Account) -> list[Selection]:
        address = account.address
        return [Selection(sender=address), Selection(recipient=address), Selection(sasl_login=account.login)]

    def _snapshot(self) -> QueueSnapshot:
        senders = Counter(m.sender for m in self.messages)
        recipients = Counter(r for m in self.messages for r in m.recipients)
        logins = Counter(m.login for m in self.messages if m.login)
        return QueueSnapshot(
            total=len(self.messages),
            by_queue=dict(Counter(m.queue for m in self.messages)),
            top_senders=tuple(Ranked(n, c) for n, c in senders.most_common(5)),
            top_recipients=tuple(Ranked(n, c) for n, c in recipients.most_common(5)),
            top_sasl_logins=tuple(Ranked(n, c) for n, c in logins.most_common(5)),
        )

    def _matches(self, m: Message, s: Selection) -> bool:
        return (
            (s.sender is None or m.sender.lower() == s.sender)
            and (s.recipient is None or s.recipient in (r.lower() for r in m.recipients))
            and (s.sasl_login is None or m.login == s.sasl_login)
        )

    def count(self, selection: Selection, *, queues: frozenset[str] | None = None) -> int:
        self._load()
        return sum(1 for m in self.messages if self._matches(m, selection) and (queues is None or m.queue in queues))

    def hold(self, selection: Selection, *, progress: Hook | None = None) -> int:
        return self._move(selection, "hold", lambda m: m.queue != "hold", "hold", progress)

    def release(self, selection: Selection, *, progress: Hook | None = None) -> int:
        return self._move(selection, "deferred", lambda m: m.queue == "hold", "release", progress)

    def _move(self, selection: Selection, queue: str, which: Any, name: str, progress: Hook | None = None) -> int:
        self._call(name, repr(selection))
        moved = [m for m in self.messages if self._matches(m, selection) and which(m)]
        self._report(len(moved), len(moved), progress, name)  # as a hold from the IDs a diagnosis listed
        for m in moved:
            m.queue = queue
        return self._done(name, len(moved))

    def delete(self, selection: Selection, *, progress: Hook | None = None) -> int:
        self._call("delete", repr(selection))
        self._report(sum(self._matches(m, selection) for m in self.messages), None, progress, "delete")
        before = len(self.messages)
        self.messages = [m for m in self.messages if not self._matches(m, selection)]
        return self._done("delete", before - len(self.messages))

    def change_password(self, account: Account, password: Password) -> None:
        self._call("change_password", account.login)
        self.passwords[account.login] = password.reveal()
        self.password_digests.append(hashlib.sha256(password.reveal().encode()).hexdigest()[:16])
        self._done("change_password", None)

    def block_login(self, account: Account) -> str:
        self._call("block_login", account.login)
        self.blocked.add(account.login)
        self._done("block_login", None)
        return ""

    def unblock_login(self, account: Account) -> None:
        self._call("unblock_login", account.login)
        self.blocked.discard(account.login)
        self._done("unblock_login", None)

    def is_login_blocked(self, account: Account) -> bool:
        self._load()
        return account.login in self.blocked

    def kick_sessions(self, account: Account) -> int:
        self._call("kick_sessions", account.login)
        return self._done("kick_sessions", 0)

    def purge_inbox(self, account: Account, *, label: str = "") -> PurgeResult:
        self._call("purge_inbox", account.login)
        before = self.inbox.get(account.login, 0)
        archive = f"/var/backups/mailfix/{account.login}-INBOX-{label}-20261201T000000Z.tar.gz" if before else None
        if archive:
            self.archives[archive] = [account.login, before]
        self.inbox[account.login] = 0
        return self._done("purge_inbox", PurgeResult(before, 0, archive))

    def restore_inbox(self, account: Account, archive: str) -> int:
        self._call("restore_inbox", account.login)
        login, count = self.archives.get(archive, [None, 0])
        if login != account.login:
            raise CommandFailed(self.name, f"not an archive mailfix made: {archive!r}")
        self.inbox[account.login] = self.inbox.get(account.login, 0) + count
        return self._done("restore_inbox", count)

    def protected_accounts(self) -> frozenset[str]:
        return self.protected

    def inbox_count(self, account: Account) -> int:
        self._load()
        return self.inbox.get(account.login, 0)

    def health(self, *, flood_threshold: int) -> Health:
        self._load()
        snapshot = self._snapshot()
        top_sender = snapshot.top_senders[0] if snapshot.top_senders else None
        top_login = snapshot.top_sasl_logins[0] if snapshot.top_sasl_logins else None
        return Health(self.postfix_running, snapshot.total, top_sender, top_login)

    def flush_queue(self) -> None:
        self._call("flush_queue")
        self._done("flush_queue", None)

    def restart(self) -> None:
        self._call("restart")
        self.postfix_running = True
        self._done("restart", None)

    def reboot(self, *, deadline_seconds: float) -> None:
        self._call("reboot")
        self.postfix_running = True
        self.boots += 1
        self._done("reboot", None)

    def boot_id(self) -> str:
        self._load()
        return f"boot-{self.boots}"

    def close(self) -> None:
        pass

    # -- bookkeeping ----------------------------------------------------------------------

    def _call(self, name: str, arg: str = "") -> None:
        self._load()
        if self.fail_on == name:
            raise CommandFailed(self.name, f"{name} failed (fake)")
        self.calls.append((name, arg))

    def _done(self, name: str, result: Any) -> Any:
        self._save()
        # "delete#2": the second delete this server ever ran (its calls persist across processes).
        method, _, nth = self.block_after.partition("#")
        if method == name and len(self.calls_to(name)) == int(nth or 1) and self.state_file is not None:
            Path(f"{self.state_file}.blocked").write_text(name)
            while True:  # the crash test kills the process here, after the server changed
                time.sleep(1)
        return result

    def _report(self, count: int, total: int | None, progress: Hook | None, method: str) -> None:
        """Report `count` messages done, `progress_every` at a time, the way a long operation goes."""
        if progress is None:
            return
        pause = self.progress_pause if method in self.slowed.split(",") or not self.slowed else 0.0
        for done in [*range(self.progress_every, count, self.progress_every), count]:
            time.sleep(pause)
            progress(done, total)

    def calls_to(self, name: str) -> list[str]:
        return [arg for call, arg in self.calls if call == name]

    def _save(self) -> None:
        if self.state_file is None:
            return
        data = {
            "messages": [m.__dict__ for m in self.messages],
            "passwords": self.passwords,
            "blocked": sorted(self.blocked),
            "inbox": self.inbox,
            "archives": self.archives,
            "password_digests": self.password_digests,
            "calls": self.calls,
            "postfix_running": self.postfix_running,
            "boots": self.boots,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_file)

    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text())
        self.messages = [Message(**m) for m in data["messages"]]
        self.passwords, self.inbox, self.archives = data["passwords"], data["inbox"], data["archives"]
        self.password_digests = data["password_digests"]
        self.blocked = set(data["blocked"])
        self.calls = [tuple(c) for c in data["calls"]]  # type: ignore[misc]
        self.postfix_running = data["postfix_running"]
        self.boots = data["boots"]

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> FakeMailServer:
        server = cls(state_file=path, **kwargs)
        server._load()
        return server


def file_server(server: ServerConfig) -> FakeMailServer:
    """MAILFIX_MAILSERVER entry point: a FakeMailServer persisted at $FAKE_MAILSERVER_STATE."""
    return FakeMailServer.from_file(
        Path(os.environ["FAKE_MAILSERVER_STATE"]),
        name=server.name,
        domain=server.mail_domain,
        block_after=os.environ.get("FAKE_MAILSERVER_BLOCK_AFTER", ""),
        progress_pause=float(os.environ.get("FAKE_MAILSERVER_PROGRESS_PAUSE", "0")),
        slowed=os.environ.get("FAKE_MAILSERVER_SLOWED", ""),
    )


@dataclass
class RecordingNotifier:
    """Records what the runbook told the outside world."""

    changes: list[tuple[int, str]] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)
    passwords: list[tuple[str, str]] = field(default_factory=list)
    withdrawn: list[int] = field(default_factory=list)
    progress: list[tuple[int, Progress | None]] = field(default_factory=list)
    confirm: bool = True

    def incident_changed(self, incident: Incident) -> MessageRef | None:
        self.changes.append((incident.id, incident.state))
        return MessageRef("C0TEST", f"{incident.id}.0001") if incident.slack_ts is None else None

    def step_logged(self, incident: Incident, text: str) -> None:
        self.logs.append((incident.id, text))

    def deliver_password(self, incident: Incident, account: Account, password: Password) -> Delivery:
        self.passwords.append((account.address, password.reveal()))
        return Delivery(via="dm", confirmed=self.confirm, ref=MessageRef("D0USER", "1.0"), to="UVICTIM01")

    def withdraw_password(self, incident: Incident, ref: MessageRef | None) -> None:
        self.withdrawn.append(incident.id)

    def step_progress(self, incident: Incident, progress: Progress | None) -> None:
        self.progress.append((incident.id, progress))

    def catch_up(self) -> None:
        pass
