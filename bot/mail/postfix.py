"""`PostfixServer`: every `bot.core.mailserver.MailServer` operation on a Postfix/Dovecot server over SSH.

Postfix tools are called by full path (a non-root user has no /usr/sbin in PATH). Account names
pass `validate_account` before anything is sent. Queue IDs travel on stdin to one `postsuper`
per call, fed while `postqueue -j` is still listing, so that listing and acting overlap. A hold of
the suspect's mail right after the diagnosis uses the IDs the diagnosis listed: the queue is listed
once from `mailfix start` to the flood held, as an admin would with the bare tools.

A diagnosis reads the queue's digest, made on the server (`bot.mail.digest`: a short line per
message); a selection reads the listing, trimmed on the server of the members it does not read
(`TRIM_LISTING`). On a slow link these and the log lines travel gzip'ed (`SSHExecutor.compresses`).

Blocking a login needs every smtpd service that accepts SASL logins to consult the map before
`permit_sasl_authenticated`, in main.cf or in the service's `-o` overrides in master.cf:
    smtpd_recipient_restrictions = check_sasl_access hash:/etc/postfix/sasl_access,
        permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination
`block_login` says which services do and do not (bot.mail.restrictions).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.config import ServerConfig
from bot.core.mailserver import (
    Account,
    Diagnosis,
    Health,
    Password,
    PurgeResult,
    Selection,
    Suspect,
    validate_account,
)
from bot.core.progress import Hook
from bot.errors import CommandFailed, CommandTimeout, HostUnreachable
from bot.i18n import _
from bot.mail.commands import TRIM_LISTING, reblocked
from bot.mail.digest import DigestReader, digest_filter
from bot.mail.executor import RemoteProcess, SSHExecutor
from bot.mail.mailboxes import Mailboxes
from bot.mail.passwords import SHELL_PATH, set_password
from bot.mail.postsuper import KNOWN_IDS_CHUNK, feed_postsuper
from bot.mail.queue import QueueAggregator, account_aliases
from bot.mail.sasl import SaslLog, blocked_keys, login_keys, read_map, read_sasl_log, update_block
from bot.mail.selection import SelectionMatcher, cleanup_total, select_ids
from bot.mail.subjects import (
    PREFETCH_AFTER,
    SAMPLE_SUBJECTS,
    Prefetch,
    leading_samples,
    newest_of_leading_login,
    subjects_in,
)
from bot.mail.suspects import find_suspect

log = logging.getLogger(__name__)

POSTQUEUE = "/usr/sbin/postqueue"

POSTCAT = "/usr/sbin/postcat"
POSTFIX = "/usr/sbin/postfix"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
# How long the IDs a diagnosis listed may stand in for a new listing: long enough for the steps that
# follow it, short enough that Postfix cannot have reused a queue ID in between.
LISTED_IDS_SECONDS = 60.0
REBOOT_POLL_SECONDS = 1.0
# Daemons started by the command (postfix start) must not keep the SSH channel's pipes open.
_DETACHED = """out=$(mktemp) || exit 1
( %s
) </dev/null >"$out" 2>&1
rc=$?; cat "$out"; rm -f "$out"; exit $rc"""


@dataclass
class ListedIds:
    """The suspect's mail not on hold, by Selection, as the last diagnosis listed it."""

    by_selection: dict[Selection, list[str]]
    listed_at: float = field(default_factory=time.monotonic)
    held: set[str] = field(default_factory=set)

    def take(self, selection: Selection) -> list[str] | None:
        """Return the IDs listed for `selection` not held yet (None: not listed, or too old)."""
        if time.monotonic() - self.listed_at > LISTED_IDS_SECONDS or selection not in self.by_selection:
            return None
        ids = [queue_id for queue_id in self.by_selection.pop(selection) if queue_id not in self.held]
        self.held.update(ids)
        return ids


class PostfixServer:
    """A Postfix/Dovecot mail server reached over one reusable SSH connection."""

    def __init__(self, server: ServerConfig, executor: SSHExecutor | None = None) -> None:
        self.server = server
        self.name = server.name
        self.executor = executor or SSHExecutor(server)
        self.warnings: tuple[str, ...] = ()  # notes from the last diagnosis (e.g. a missing log)
        self.mailboxes = Mailboxes(self.executor, server)
        self._protected: frozenset[str] | None = None
        self._listed: ListedIds | None = None

    # ---- queue ----------------------------------------------------------------------------

    def diagnose(
        self, *, flood_threshold: int, exclude: frozenset[str] = frozenset(), progress: Hook | None = None
    ) -> Diagnosis:
        """Snapshot the queue, attribute it to SASL logins and name a suspect, changing nothing."""
        aggregator, prefetched = self._aggregate(prefetch_samples=True, progress=progress)
        domain = self.server.mail_domain
        verdict = find_suspect(
            aggregator,
            domain,
            flood_threshold=flood_threshold,
            exclude=exclude | self.protected_accounts(),
            # Without the log no sender can be told from a forgery under someone else's login: nobody is named.
            exists=self.mailboxes.exists if not self.warnings else (lambda login: False),
        )
        account, runner_up = verdict.account, verdict.runner_up
        suspect = None
        self._listed = None
        if account is not None:
            senders, logins = account_aliases(account.address, domain), account_aliases(account.login, domain)
            from_ids, login_ids = aggregator.open_ids(senders=senders), aggregator.open_ids(logins=logins)
            self._listed = ListedIds(
                {Selection(sender=account.address): from_ids, Selection(sasl_login=account.login): login_ids}
            )
            # Messages sent as the login (forged senders too), else from the address.
            samples = [aggregator.samples.get(name, [])[:SAMPLE_SUBJECTS] for name in (account.login, account.address)]
            suspect = Suspect(
                account=account,
                queued_from=aggregator.sent_from(account_aliases(account.address, domain)),
                queued_to=aggregator.sent_to(account_aliases(account.address, domain)),
                queued_by_login=_count(aggregator.logins, account_aliases(account.login, domain)),
                sample_subjects=prefetched.subjects(samples, self._subjects, suspect_ids={*from_ids, *login_ids}),
                evidence=verdict.evidence,
                queued_total=cleanup_total(
                    aggregator, address=account.address, login=account.login, mail_domain=domain
                ),
            )
        return Diagnosis(
            snapshot=aggregator.snapshot(),
            suspect=suspect,
            runner_up=runner_up,
            warnings=tuple(self.warnings),
            protected=tuple(sorted(self.protected_accounts())),
        )

    def count(self, selection: Selection, *, queues: frozenset[str] | None = None) -> int:
        """Return how many queued messages match `selection` (in `queues`, default all)."""
        listing, matcher = self._select(selection)
        try:
            found = sum(1 for __ in select_ids(listing.lines(), matcher, queues=queues))
            listing.wait()  # a failed listing must not pass for an empty queue
            return found
        finally:
            listing.close()

    def hold(self, selection: Selection, *, progress: Hook | None = None) -> int:
        """Put matching messages on hold; return how many."""
        listed = self._listed.take(selection) if self._listed is not None else None
        if listed is not None:
            total, ids = len(listed), iter(listed)  # known IDs: large chunks, one process at a time
            return feed_postsuper(
                self.executor, "-h", ids, progress=progress, total=total, chunk=KNOWN_IDS_CHUNK, parallel=1
            )
        return self._postsuper("-h", selection, skip_queues=frozenset({"hold"}), progress=progress)

    def release(self, selection: Selection, *, progress: Hook | None = None) -> int:
        """Release matching held messages; return how many."""
        return self._postsuper("-H", selection, queues=frozenset({"hold"}), progress=progress)

    def delete(self, selection: Selection, *, progress: Hook | None = None) -> int:
        """Delete matching messages from every queue; return how many."""
        return self._postsuper("-d", selection, progress=progress)

    def flush_queue(self) -> None:
        """Ask Postfix to retry the deferred mail now."""
        self.executor.run([POSTQUEUE, "-f"])

    # ---- accounts -------------------------------------------------------------------------

    def change_password(self, account: Account, password: Password) -> None:
        """Set the account's password (idempotent: setting the same one again is harmless)."""
        validate_account(account.login)
        set_password(self.executor, self.server, account, password)

    def block_login(self, account: Account) -> str:
        """Refuse the account's SASL login at once (idempotent); return which smtpd services consult the map."""
        blocking = update_block(self.executor, self.server.sasl_access_map, self._login_keys(account), blocked=True)
        if blocking.warning:
            log.warning("%s: %s", self.executor.host, blocking.warning)
        return blocking.describe()

    def unblock_login(self, account: Account) -> None:
        """Undo block_login (idempotent)."""
        update_block(self.executor, self.server.sasl_access_map, self._login_keys(account), blocked=False)

    def is_login_blocked(self, account: Account) -> bool:
        """Return True when the access map rejects or holds the account's login."""
        keys = self._login_keys(account)
        return not blocked_keys(read_map(self.executor, self.server.sasl_access_map)).isdisjoint(keys)

    def kick_sessions(self, account: Account) -> int:
        """Close the account's open IMAP/POP sessions; return how many (0 without Dovecot)."""
        return self.mailboxes.kick_sessions(validate_account(account.login))

    def purge_inbox(self, account: Account, *, label: str = "") -> PurgeResult:
        """Empty the account's INBOX (after an archive of it, named with `label`, when configured)."""
        return self.mailboxes.purge_inbox(validate_account(account.login), label=label)

    def restore_inbox(self, account: Account, archive: str) -> int:
        """Put the messages of an archive that purge_inbox made back into the account's INBOX; return how many."""
        return self.mailboxes.restore_inbox(validate_account(account.login), archive)

    def inbox_count(self, account: Account) -> int:
        """Return how many messages the account's INBOX holds."""
        return self.mailboxes.inbox_count(validate_account(account.login))

    def protected_accounts(self) -> frozenset[str]:
        """Return the accounts mailfix never touches here: the configured ones, its SSH user, system accounts."""
        if self._protected is None:
            system = self.mailboxes.system_accounts() if self.server.password_backend == "chpasswd" else frozenset()
            self._protected = frozenset({*self.server.protected_accounts, self.server.user.lower(), *system})
        return self._protected

    # ---- service --------------------------------------------------------------------------

    def health(self, *, flood_threshold: int) -> Health:
        """Return whether Postfix runs, the queue size and its top sender and login."""
        running = self.postfix_running()
        # postqueue -j still lists a stopped Postfix: it reads the queue directory itself.
        snapshot = self._aggregate(prefetch_samples=False)[0].snapshot()
        return Health(
            postfix_running=running,
            queue_size=snapshot.total,
            top_sender=snapshot.top_senders[0] if snapshot.top_senders else None,
            top_login=snapshot.top_sasl_logins[0] if snapshot.top_sasl_logins else None,
        )

    def postfix_running(self) -> bool:
        """Return True when `postfix status` says the mail system runs (it reports by exit code)."""
        return self.executor.run([POSTFIX, "status"], check=False, timeout=60).ok

    def restart(self) -> None:
        """Run the configured restart command and check that Postfix runs afterwards."""
        self._run_shell(self.server.restart_command)
        if not self.postfix_running():
            raise CommandFailed(self.executor.host, _("Postfix is not running after the restart command"))

    def reboot(self, *, deadline_seconds: float) -> None:
        """Reboot and wait until SSH and Postfix answer again, or raise HostUnreachable."""
        deadline = time.monotonic() + deadline_seconds
        before = self.boot_id()
        try:
            self._run_shell(self.server.reboot_command, timeout=min(60.0, deadline_seconds))
        except (HostUnreachable, CommandTimeout, CommandFailed) as exc:
            # The link dropping under the command is the point; a real failure has an exit status.
            if isinstance(exc, CommandFailed) and getattr(exc.result, "exit_status", 0) >= 0:
                raise
            log.info("%s: reboot command ended with %s", self.executor.host, type(exc).__name__)
        went_down = False
        while time.monotonic() < deadline:
            time.sleep(REBOOT_POLL_SECONDS)
            self.executor.close()  # a fresh connection each time: only a new one proves sshd is back
            try:
                booted = self.boot_id()
                if (went_down or booted != before) and self.postfix_running():
                    return
            except (HostUnreachable, CommandTimeout):
                went_down = True
        raise HostUnreachable(
            self.executor.host,
            _("SSH and Postfix did not come back within {seconds}s of the reboot").format(
                seconds=f"{deadline_seconds:.0f}"
            ),
        )

    def close(self) -> None:
        """Close the SSH connection."""
        self.executor.close()

    # ---- helpers --------------------------------------------------------------------------

    def _listing(self, through: str = TRIM_LISTING) -> RemoteProcess:
        compress = self.executor.compresses()
        argv = reblocked([POSTQUEUE, "-j"], through=through, gzip=compress)
        process = self.executor.start(argv, gunzip=compress)
        process.close_stdin()
        return process

    def _read_sasl(self) -> SaslLog:
        sasl = read_sasl_log(self.executor, self.server.postfix_log, compress=self.executor.compresses())
        self.warnings = sasl.warnings
        for warning in sasl.warnings:
            log.warning("%s: %s", self.executor.host, warning)
        return sasl

    def _aggregate(self, *, prefetch_samples: bool, progress: Hook | None = None) -> tuple[QueueAggregator, Prefetch]:
        self.executor.compresses()  # connects (and measures the link) once, before the channels open
        aggregator = QueueAggregator(login_of=None, mail_domain=self.server.mail_domain)
        prefetch = Prefetch()
        # The log is read on a second channel while the listing is parsed: neither waits for the other.
        # A third fetches the sample subjects of the account leading so far (a flood leads early), and
        # the protected accounts are read meanwhile (a failure there shows when diagnose asks again).
        with ThreadPoolExecutor(max_workers=3) as pool:
            sasl = pool.submit(self._read_sasl)
            if prefetch_samples:
                pool.submit(self.protected_accounts)

                def guess_from_log(done: Future[SaslLog]) -> None:
                    if done.exception() is None:
                        prefetch.start(pool, newest_of_leading_login(done.result().login_of), self._subjects)

                sasl.add_done_callback(guess_from_log)
            listing = self._listing(digest_filter())
            digest = DigestReader(aggregator, self.executor.host)
            try:
                for batch in listing.line_batches():
                    digest.add_batch(batch)
                    if aggregator.login_of is None and sasl.done():
                        aggregator.set_logins(sasl.result().login_of)
                    if prefetch_samples and aggregator.total >= PREFETCH_AFTER:
                        prefetch.start(pool, leading_samples(aggregator), self._subjects)
                    if progress is not None:
                        progress(aggregator.total, None)  # how many there are shows only at the end
                listing.wait()
                digest.finish()
                if aggregator.login_of is None:
                    aggregator.set_logins(sasl.result().login_of)
            finally:
                listing.close()
            prefetch.settle()
        return aggregator, prefetch

    def _select(self, selection: Selection) -> tuple[RemoteProcess, SelectionMatcher]:
        listing = self._listing()
        try:
            # The listing already runs: its first megabytes wait in the channel window meanwhile.
            login_of = self._read_sasl().login_of if selection.sasl_login else {}
        except BaseException:
            listing.close()
            raise
        return listing, SelectionMatcher(selection, mail_domain=self.server.mail_domain, login_of=login_of)

    def _postsuper(
        self,
        flag: str,
        selection: Selection,
        *,
        queues: frozenset[str] | None = None,
        skip_queues: frozenset[str] = frozenset(),
        progress: Hook | None = None,
    ) -> int:
        self._listed = None  # the queue changes: what the diagnosis listed no longer stands
        listing, matcher = self._select(selection)
        try:
            ids = select_ids(listing.lines(), matcher, queues=queues, skip_queues=skip_queues)
            return feed_postsuper(self.executor, flag, ids, before_summary=listing.wait, progress=progress)
        finally:
            listing.close()

    def _subjects(self, queue_ids: list[str]) -> tuple[str, ...]:
        if not queue_ids:
            return ()
        # One postcat for all samples (each SSH command costs a round trip and a process on the
        # server). A message gone since the listing makes postcat stop: the subjects read so far stay.
        result = self.executor.run([POSTCAT, "-hq", *queue_ids], check=False, timeout=30)
        return subjects_in(result.text)

    def _run_shell(self, command: str, *, timeout: float | None = None) -> None:
        script = _DETACHED % command
        self.executor.run(["env", SHELL_PATH, "sh", "-c", script], timeout=timeout)

    def _login_keys(self, account: Account) -> tuple[str, ...]:
        return login_keys(validate_account(account.login), self.server.mail_domain)

    def boot_id(self) -> str:
        """Return the kernel's boot ID (it changes with every boot)."""
        return self.executor.run(["cat", BOOT_ID], timeout=self.server.connect_timeout_seconds).text.strip()


def connect(server: ServerConfig) -> PostfixServer:
    """Return a PostfixServer for `server` whose SSH connection is open: host key and login checked.

    No command runs (sshd takes about 0.1 s to start any session): the first step's commands follow
    at once, and a server that refuses them (sudo without NOPASSWD, say) fails that step."""
    mail_server = PostfixServer(server)
    mail_server.executor.open()
    return mail_server


def _count(counter: dict[str, int], names: frozenset[str]) -> int:
    return sum(counter.get(name, 0) for name in names)
