"""The Dovecot side of an account: its sessions, its INBOX (count, archive, purge, restore), and which
accounts exist or belong to the system.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.config import ServerConfig
from bot.core.mailserver import PurgeResult
from bot.errors import CommandFailed
from bot.i18n import _
from bot.mail.commands import CommandResult, command_failed
from bot.mail.executor import SSHExecutor
from bot.mail.passwords import DOVEADM, EX_NOUSER

SYSTEM_UID_BELOW = 1000  # Debian and RHEL give people uids from 1000 up
NOBODY_UID = 65534
# What purge_inbox names an archive: <login>-INBOX-<label>-<UTC stamp>.tar.gz under archive_dir.
_ARCHIVE_NAME = re.compile(r"-INBOX-(?:[a-z0-9-]+-)?\d{8}T\d{6}Z\.tar\.gz")


class Mailboxes:
    """Dovecot operations on one server, by login (already validated by the caller)."""

    def __init__(self, executor: SSHExecutor, server: ServerConfig) -> None:
        self.executor, self.server = executor, server

    def kick_sessions(self, login: str) -> int:
        """Close the login's open IMAP/POP sessions; return how many (0 without Dovecot)."""
        who = self.executor.run([DOVEADM, "who", "-1", login], check=False)
        if not who.ok:  # no Dovecot, or no anvil running: nobody to kick
            return 0
        sessions = sum(1 for line in who.text.splitlines()[1:] if line.split()[:1] == [login])
        if sessions:
            # doveadm kick exits 68 when the user had already gone.
            kicked = self.executor.run([DOVEADM, "kick", login], check=False)
            if kicked.exit_status not in (0, 68):
                raise command_failed(self.executor.host, kicked)
        return sessions

    def inbox_count(self, login: str) -> int:
        """Return how many messages the login's INBOX holds."""
        result = self._doveadm_user(["mailbox", "status", "-u", login, "messages", "INBOX"], login)
        found = re.search(r"messages=(\d+)", result.text)
        if found is None:
            reason = _("cannot read the INBOX size of {login}").format(login=repr(login))
            raise CommandFailed(self.executor.host, reason, result)
        return int(found[1])

    def purge_inbox(self, login: str, *, label: str = "") -> PurgeResult:
        """Empty the INBOX, after a tar.gz archive of its Maildir when archive_before_purge is on."""
        before = self.inbox_count(login)
        archived_to = self._archive_inbox(login, label) if self.server.archive_before_purge and before else None
        self.executor.run([DOVEADM, "expunge", "-u", login, "mailbox", "INBOX", "all"])
        return PurgeResult(before=before, after=self.inbox_count(login), archived_to=archived_to)

    def restore_inbox(self, login: str, archive: str) -> int:
        """Import the messages of `archive` (one purge_inbox made) back into the INBOX; return how many came back."""
        folder, __, name = archive.rpartition("/")
        own = name.startswith(login) and _ARCHIVE_NAME.fullmatch(name[len(login) :])
        if folder != self.server.archive_dir.rstrip("/") or not own:
            reason = _("not an archive mailfix made: {archive}").format(archive=repr(archive[:200]))
            raise CommandFailed(self.executor.host, reason)
        before = self.inbox_count(login)
        # Unpacked into a fresh Maildir owned like the user's own (doveadm import runs as the user and
        # writes its index files there), imported (doveadm assigns new UIDs), then removed.
        script = (
            'set -e; inbox=$("$2" mailbox path -u "$3" INBOX); d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
            'tar -xzf "$1" -C "$d"; mkdir -p "$d/tmp" "$d/cur" "$d/new"; chown -R "$(stat -c %u:%g "$inbox")" "$d"; '
            '"$2" import -u "$3" "maildir:$d" "" all'
        )
        result = self.executor.run(["sh", "-c", script, "sh", archive, DOVEADM, login], check=False)
        if not result.ok:
            raise command_failed(self.executor.host, result)
        restored = self.inbox_count(login) - before
        if restored <= 0:  # doveadm import exits 0 even when it could read nothing
            reason = _("doveadm import put nothing back from {archive}").format(archive=archive)
            raise CommandFailed(self.executor.host, reason, result)
        return restored

    def exists(self, login: str) -> bool:
        """Return True when Dovecot knows the login (a mail account that exists on this server)."""
        return self.executor.run([DOVEADM, "user", login], check=False).exit_status != EX_NOUSER

    def system_accounts(self) -> frozenset[str]:
        """Return the server's system accounts (uid below 1000, and nobody), which mailfix never touches."""
        result = self.executor.run(["getent", "passwd"], check=False)
        if not result.ok:
            raise command_failed(self.executor.host, result)
        names = set()
        for line in result.text.splitlines():
            fields = line.split(":")
            if (
                len(fields) > 2
                and fields[2].isdigit()
                and (int(fields[2]) < SYSTEM_UID_BELOW or int(fields[2]) == NOBODY_UID)
            ):
                names.add(fields[0].lower())
        return frozenset(names)

    def _doveadm_user(self, args: list[str], login: str) -> CommandResult:
        result = self.executor.run([DOVEADM, *args], check=False)
        if result.exit_status == EX_NOUSER:
            raise CommandFailed(self.executor.host, _("no mail account {login}").format(login=repr(login)), result)
        if not result.ok:
            raise command_failed(self.executor.host, result)
        return result

    def _archive_inbox(self, login: str, label: str) -> str:
        """Copy the INBOX's Maildir cur/ and new/ into a tar.gz under archive_dir; return its path."""
        inbox = self._doveadm_user(["mailbox", "path", "-u", login, "INBOX"], login).text.strip()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        tag = f"{label}-" if re.fullmatch(r"[a-z0-9-]+", label) else ""
        target = f"{self.server.archive_dir.rstrip('/')}/{login}-INBOX-{tag}{stamp}.tar.gz"
        self.executor.run(["install", "-d", "-m", "0700", self.server.archive_dir])
        tar = self.executor.run(["tar", "-czf", target, "-C", inbox, "cur", "new"], check=False)
        if not tar.ok:
            reason = _("could not archive the INBOX of {login} (Maildir expected)").format(login=repr(login))
            raise CommandFailed(self.executor.host, reason, tar)
        return target
