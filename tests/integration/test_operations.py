"""Every PostfixServer operation against the lab's real Postfix and Dovecot, bad cases included."""

from __future__ import annotations

import imaplib
import smtplib
import tarfile
import threading
import time
from pathlib import Path

import pytest

from bot.core.mailserver import Account, Selection
from bot.core.vault import generate_password
from bot.errors import CommandFailed, HostUnreachable, InvalidAccount
from bot.mail.postfix import PostfixServer, connect
from tests.integration.flood import flood, queue_entries
from tests.integration.lab import Lab

VICTIM = Account(address="victim@lab.test", login="victim")
JUAN = Account(address="juan@lab.test", login="juan")
JUANA = Account(address="juana@lab.test", login="juana")
ALL_QUEUES = frozenset({"active", "deferred", "hold", "incoming", "maildrop"})


@pytest.fixture(params=["root", "mailfixop"])
def server(request: pytest.FixtureRequest, clean_lab: Lab):
    """A PostfixServer on a freshly reset lab, as root and as the NOPASSWD sudo user."""
    mail = connect(clean_lab.server_config(user=request.param))
    yield mail
    mail.close()


@pytest.fixture
def root_server(clean_lab: Lab):
    mail = connect(clean_lab.server_config())
    yield mail
    mail.close()


def imap_login(lab: Lab, user: str, password: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(lab.host, lab.imap_port, timeout=10)
    imap.login(user, password)
    return imap


def sessions_started(lab: Lab) -> int:
    return (Path(lab.sshd_config).parent / "sshd.log").read_text().count("Starting session")


def test_find_contain_and_clean_a_flood(server: PostfixServer, clean_lab: Lab) -> None:
    """Flood as victim, diagnose names victim, hold by login and sender, delete; others' mail survives."""
    report = flood(clean_lab, count=600, legit=30, bounces=10, inbox=5)
    diagnosis = server.diagnose(flood_threshold=300)
    assert diagnosis.snapshot.total == report.queued
    assert diagnosis.suspect is not None and diagnosis.suspect.account == VICTIM
    assert diagnosis.suspect.queued_by_login == 600  # forged senders included
    assert diagnosis.suspect.queued_from == report.from_login
    assert diagnosis.suspect.queued_to == report.bounces
    assert diagnosis.suspect.sample_subjects and all(diagnosis.suspect.sample_subjects)
    assert diagnosis.runner_up is not None and diagnosis.runner_up.count == 10

    assert server.hold(Selection(sasl_login="victim")) == 600
    assert server.hold(Selection(sender="victim@lab.test")) == 0  # already held
    assert server.hold(Selection(recipient="victim@lab.test")) == report.bounces
    assert server.count(Selection(sasl_login="victim"), queues=frozenset({"hold"})) == 600
    assert server.count(Selection(sender="juan@lab.test")) == 0 and server.count(Selection(sasl_login="juan")) == 0
    assert server.delete(Selection(sasl_login="juan")) == 0  # juan's rules never touch juana

    assert server.delete(Selection(sasl_login="victim")) == 600
    assert server.delete(Selection(recipient="victim@lab.test")) == report.bounces
    assert server.count(Selection(sasl_login="victim")) == 0
    assert server.count(Selection(recipient="victim@lab.test")) == 0
    survivors = {e["sender"] for e in queue_entries(clean_lab)}
    assert survivors == {"alice@lab.test", "bob@lab.test", "juana@lab.test"}
    assert server.count(Selection(sasl_login="juana")) == 10
    after = server.diagnose(flood_threshold=300)
    assert after.suspect is None and after.snapshot.total == report.legit


def test_release_puts_held_mail_back_in_the_queue(root_server: PostfixServer, clean_lab: Lab) -> None:
    """A rejected suspect's held mail is released; release touches only held mail."""
    flood(clean_lab, count=50, legit=6, bounces=0, inbox=0)
    assert root_server.release(Selection(sasl_login="victim")) == 0
    assert root_server.hold(Selection(sender="victim@lab.test")) == 35
    assert root_server.release(Selection(sasl_login="victim")) == 35
    assert root_server.count(Selection(sasl_login="victim"), queues=frozenset({"hold"})) == 0
    assert root_server.count(Selection(sasl_login="victim")) == 50


def test_an_empty_queue_is_diagnosed_and_acted_on_without_error(root_server: PostfixServer) -> None:
    """No mail: an empty snapshot, no suspect, and zero held or deleted."""
    diagnosis = root_server.diagnose(flood_threshold=1)
    assert diagnosis.snapshot.total == 0 and diagnosis.suspect is None and diagnosis.runner_up is None
    assert root_server.hold(Selection(sasl_login="victim")) == 0
    assert root_server.delete(Selection(sender="victim@lab.test")) == 0
    health = root_server.health(flood_threshold=10)
    assert health.postfix_running and health.queue_size == 0 and health.top_sender is None


def test_a_queue_that_changes_while_it_is_read(root_server: PostfixServer, clean_lab: Lab) -> None:
    """Listing and deleting while mail pours in never fails, and what was deleted is gone."""
    flood(clean_lab, count=300, legit=0, bounces=0, inbox=0)
    injector = threading.Thread(
        target=flood,
        args=(clean_lab,),
        # No waiting on the queue's total inside the thread: the test deletes from it meanwhile.
        kwargs={"login": "bob", "count": 400, "legit": 0, "bounces": 0, "inbox": 0, "connections": 4, "wait": False},
    )
    injector.start()
    counts = []
    deleted = 0
    while injector.is_alive():
        snapshot = root_server.diagnose(flood_threshold=10_000).snapshot
        assert snapshot.malformed_lines == 0
        counts.append(snapshot.total)
        deleted += root_server.delete(Selection(sasl_login="victim"))
    injector.join()
    assert deleted == 300 and len(counts) >= 1
    assert root_server.count(Selection(sasl_login="victim")) == 0
    deadline = time.monotonic() + 60  # accepted by smtpd; wait until the queue manager has it
    while root_server.count(Selection(sasl_login="bob")) < 400 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert root_server.count(Selection(sasl_login="bob")) == 400


def test_a_missing_postfix_log_is_reported_not_fatal(clean_lab: Lab) -> None:
    """Without the log, senders still rank, logins are unknown, a warning says why, and nobody is named:
    a sender could be a forgery under someone else's login (a director can still pick the account)."""
    flood(clean_lab, count=40, legit=0, bounces=0, inbox=0)
    mail = PostfixServer(clean_lab.server_config(postfix_log="/var/log/no-such-mail.log"))
    try:
        diagnosis = mail.diagnose(flood_threshold=20)
        assert diagnosis.snapshot.top_sasl_logins == ()
        assert diagnosis.suspect is None
        assert diagnosis.runner_up is not None and diagnosis.runner_up.name == "victim@lab.test"
        assert diagnosis.snapshot.top_senders[0].name == "victim@lab.test"  # offered to pick
        assert any("no-such-mail.log not found" in w for w in mail.warnings)
    finally:
        mail.close()


def test_change_password_with_chpasswd_takes_effect_at_once(server: PostfixServer, clean_lab: Lab) -> None:
    """The new password logs in over IMAP; the old one no longer does."""
    password = generate_password()
    server.change_password(VICTIM, password)
    imap_login(clean_lab, "victim", password.reveal()).logout()
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(clean_lab, "victim", clean_lab.passwords["victim"])
    server.change_password(VICTIM, password)  # idempotent
    imap_login(clean_lab, "victim", password.reveal()).logout()


def test_change_password_with_a_command_backend(clean_lab: Lab, tmp_path: Path) -> None:
    """The configured command reads `user password` on stdin; the new password logs in, the old one no longer does."""
    ran = tmp_path / "password-command-ran"
    command = f'read -r user pass && printf "%s:%s\\n" "$user" "$pass" | chpasswd && echo "$user" > {ran}'
    mail = PostfixServer(clean_lab.server_config(password_backend="command", password_command=command))
    old = clean_lab.passwords["juana"]
    imap_login(clean_lab, "juana", old).logout()  # the old one worked until the change
    password = generate_password()
    try:
        mail.change_password(JUANA, password)
    finally:
        mail.close()
    assert ran.read_text() == "juana\n"  # the configured command did it, not another backend
    imap_login(clean_lab, "juana", password.reveal()).logout()
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(clean_lab, "juana", old)


def test_change_password_in_a_dovecot_passwd_file(clean_lab: Lab, tmp_path: Path) -> None:
    """doveadm pw hashes the password; only the user's line changes; owner and mode are kept."""
    users = tmp_path / "users"
    users.write_text("juana:{PLAIN}old:1002:1002::/home/juana::\nvictim:{PLAIN}old:1001:1001::/home/victim::\n")
    users.chmod(0o640)
    mail = PostfixServer(clean_lab.server_config(password_backend="doveadm-passwd-file", passwd_file=str(users)))
    password = generate_password()
    try:
        mail.change_password(VICTIM, password)
    finally:
        mail.close()
    lines = users.read_text().splitlines()
    assert lines[0] == "juana:{PLAIN}old:1002:1002::/home/juana::"
    hashed = lines[1].split(":")[1]
    assert hashed.startswith("{SHA512-CRYPT}$6$") and lines[1].endswith(":1001:1001::/home/victim::")
    check = clean_lab.run(["doveadm", "pw", "-t", hashed, "-p", password.reveal()], check=False)
    assert "(verified)" in check.stdout
    assert users.stat().st_mode & 0o777 == 0o640


def test_an_account_that_does_not_exist_is_a_clear_error(root_server: PostfixServer) -> None:
    """Changing the password of, or purging, nosuchuser names the missing account."""
    ghost = Account(address="nosuchuser@lab.test", login="nosuchuser")
    with pytest.raises(CommandFailed, match="no system account 'nosuchuser'"):
        root_server.change_password(ghost, generate_password())
    with pytest.raises(CommandFailed, match="no mail account 'nosuchuser'"):
        root_server.purge_inbox(ghost)
    with pytest.raises(CommandFailed, match="no mail account 'nosuchuser'"):
        root_server.inbox_count(ghost)


def test_shell_metacharacters_are_refused_before_anything_is_sent(root_server: PostfixServer, clean_lab: Lab) -> None:
    """A hostile name raises InvalidAccount and opens no SSH session."""

    class Hostile:
        login = address = "bob; reboot"

    before = sessions_started(clean_lab)
    for operation in ("block_login", "kick_sessions", "purge_inbox", "inbox_count", "is_login_blocked"):
        with pytest.raises(InvalidAccount):
            getattr(root_server, operation)(Hostile())
    with pytest.raises(InvalidAccount):
        root_server.count(Selection(sender="$(id)"))
    assert sessions_started(clean_lab) == before


def test_block_login_rejects_smtp_auth_mail_and_unblock_allows_it(server: PostfixServer, clean_lab: Lab) -> None:
    """Blocking writes both login spellings and postmaps; the blocked login cannot send; unblock undoes it."""
    server.block_login(VICTIM)
    server.block_login(VICTIM)  # idempotent
    assert server.is_login_blocked(VICTIM) and not server.is_login_blocked(JUANA)
    text = Path(clean_lab.sasl_access_map).read_text()
    assert text.count("victim REJECT") == 1 and text.count("victim@lab.test REJECT") == 1
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        flood(clean_lab, count=1, forged_fraction=0, legit=0, bounces=0, inbox=0, connections=1, timeout=1)
    assert flood(clean_lab, login="juana", count=1, legit=0, bounces=0, inbox=0, connections=1).queued == 1
    server.unblock_login(VICTIM)
    server.unblock_login(VICTIM)
    assert not server.is_login_blocked(VICTIM)
    assert flood(clean_lab, count=1, forged_fraction=0, legit=0, bounces=0, inbox=0, connections=1).queued == 1


def test_kick_sessions_closes_open_imap_sessions(server: PostfixServer, clean_lab: Lab) -> None:
    """Two open IMAP sessions are kicked and counted; with none open the count is 0."""
    assert server.kick_sessions(VICTIM) == 0
    sessions = [imap_login(clean_lab, "victim", clean_lab.passwords["victim"]) for _ in range(2)]
    other = imap_login(clean_lab, "juana", clean_lab.passwords["juana"])
    assert server.kick_sessions(VICTIM) == 2
    for imap in sessions:
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            imap.noop()
    assert other.noop()[0] == "OK"  # juana is untouched
    other.logout()


def test_purge_inbox_empties_it_and_reports_counts(server: PostfixServer, clean_lab: Lab) -> None:
    """The INBOX goes from its size to zero; juana's INBOX is untouched."""
    flood(clean_lab, count=1, legit=0, bounces=0, inbox=5)
    flood(clean_lab, login="juana", count=1, legit=0, bounces=0, inbox=2)
    assert server.inbox_count(VICTIM) == 5
    result = server.purge_inbox(VICTIM)
    assert (result.before, result.after) == (5, 0)
    assert result.archived_to is not None and result.archived_to.startswith(str(clean_lab.dir / "archives"))
    assert clean_lab.inbox_count("victim") == 0 and clean_lab.inbox_count("juana") == 2


def test_purge_inbox_archives_first_when_configured(clean_lab: Lab, tmp_path: Path) -> None:
    """With archive_before_purge, a tar.gz with every message exists before the expunge."""
    flood(clean_lab, count=1, legit=0, bounces=0, inbox=4)
    archive_dir = tmp_path / "archive"
    mail = PostfixServer(clean_lab.server_config(archive_before_purge=True, archive_dir=str(archive_dir)))
    try:
        result = mail.purge_inbox(VICTIM)
    finally:
        mail.close()
    assert (result.before, result.after) == (4, 0) and result.archived_to is not None
    with tarfile.open(result.archived_to) as tar:
        assert len([m for m in tar.getmembers() if m.isfile()]) == 4
    assert archive_dir.stat().st_mode & 0o777 == 0o700


def test_health_reports_postfix_the_queue_and_the_top_login(server: PostfixServer, clean_lab: Lab) -> None:
    """Running Postfix, the queue size and the flood's login; a stopped Postfix is reported as such."""
    report = flood(clean_lab, count=120, legit=6, bounces=0, inbox=0)
    health = server.health(flood_threshold=100)
    assert health.postfix_running and health.queue_size == report.queued
    assert health.top_login is not None and (health.top_login.name, health.top_login.count) == ("victim", 120)
    assert health.top_sender is not None and health.top_sender.name == "victim@lab.test"
    clean_lab.run(["postfix", "stop"])
    try:
        stopped = server.health(flood_threshold=100)
        assert not stopped.postfix_running and stopped.queue_size == report.queued
    finally:
        clean_lab.run(["postfix", "start"])


def test_flush_restart_and_a_failing_restart_command(server: PostfixServer, clean_lab: Lab) -> None:
    """flush_queue and restart succeed with Postfix running after; a failing restart command raises."""
    server.flush_queue()
    server.restart()
    assert clean_lab.run(["postfix", "status"], check=False).returncode == 0
    broken = PostfixServer(clean_lab.server_config(restart_command="echo cannot restart; exit 4"))
    try:
        with pytest.raises(CommandFailed, match="cannot restart"):
            broken.restart()
    finally:
        broken.close()


def test_reboot_waits_until_ssh_and_postfix_are_back(clean_lab: Lab) -> None:
    """The simulated reboot takes SSH and Postfix down for seconds; reboot returns once both are back."""
    mail = PostfixServer(clean_lab.server_config())
    try:
        started = time.monotonic()
        mail.reboot(deadline_seconds=60)
        assert time.monotonic() - started > 2  # it waited for the outage, not just the command
        assert mail.postfix_running()
    finally:
        mail.close()


def test_a_reboot_that_never_happens_hits_the_deadline(clean_lab: Lab) -> None:
    """A reboot command that changes nothing ends in HostUnreachable at the deadline."""
    mail = PostfixServer(clean_lab.server_config(reboot_command="true"))
    try:
        started = time.monotonic()
        with pytest.raises(HostUnreachable, match="did not come back within 4s"):
            mail.reboot(deadline_seconds=4)
        assert time.monotonic() - started < 15
    finally:
        mail.close()


def test_a_reboot_command_that_fails_is_reported_at_once(clean_lab: Lab) -> None:
    """A reboot command exiting non-zero (no permission, say) raises CommandFailed without waiting."""
    mail = PostfixServer(clean_lab.server_config(reboot_command="echo reboot: not permitted; exit 1"))
    try:
        started = time.monotonic()
        with pytest.raises(CommandFailed, match="not permitted"):
            mail.reboot(deadline_seconds=30)
        assert time.monotonic() - started < 10
    finally:
        mail.close()
