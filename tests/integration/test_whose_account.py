"""Whose account, against the real lab: forged local senders are never the suspect, and an INBOX that a
cleanup archived and emptied comes back, message for message."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from bot.core.mailserver import Account
from bot.mail.postfix import connect
from tests.integration.flood import _send, flood, queue_size
from tests.integration.lab import Lab

VICTIM = Account(address="victim@lab.test", login="victim")


def send_as(lab: Lab, login: str | None, sender: str, count: int) -> None:
    _send(lab, login, "spam", [(sender, f"user{i}@example.com") for i in range(count)], 7)


def wait_queued(lab: Lab, size: int) -> None:
    deadline = time.monotonic() + 60
    while queue_size(lab) < size:
        assert time.monotonic() < deadline, "the queue never filled"
        time.sleep(0.2)


def test_two_stolen_logins_sending_as_postmaster_name_the_busier_login_never_postmaster(clean_lab: Lab) -> None:
    send_as(clean_lab, "juan", "postmaster@lab.test", 70)
    send_as(clean_lab, "bob", "postmaster@lab.test", 40)
    wait_queued(clean_lab, 110)
    mail = connect(clean_lab.server_config())
    try:
        diagnosis = mail.diagnose(flood_threshold=30)
    finally:
        mail.close()
    assert diagnosis.suspect is not None
    assert (diagnosis.suspect.account.login, diagnosis.suspect.queued_by_login) == ("juan", 70)
    assert diagnosis.suspect.evidence == "sasl_login"
    assert "postmaster" in diagnosis.protected and "root" in diagnosis.protected


def test_with_no_log_a_forged_root_sender_is_never_named(clean_lab: Lab, tmp_path: Path) -> None:
    send_as(clean_lab, "juan", "root@lab.test", 60)
    wait_queued(clean_lab, 60)
    mail = connect(clean_lab.server_config(postfix_log=str(tmp_path / "no-such.log")))
    try:
        diagnosis = mail.diagnose(flood_threshold=30)
    finally:
        mail.close()
    assert diagnosis.suspect is None and diagnosis.warnings  # no login known, and root is protected


def test_a_restored_inbox_gives_back_the_same_messages(clean_lab: Lab, tmp_path: Path) -> None:
    flood(clean_lab, count=1, legit=0, bounces=0, inbox=6)
    maildir = clean_lab.maildir("victim")

    def contents() -> list[str]:
        return sorted(
            hashlib.sha256(p.read_bytes()).hexdigest() for d in ("new", "cur") for p in (maildir / d).iterdir()
        )

    before = contents()
    archive_dir = tmp_path / "archive"
    mail = connect(clean_lab.server_config(archive_before_purge=True, archive_dir=str(archive_dir)))
    try:
        purged = mail.purge_inbox(VICTIM, label="incident-42")
        assert (purged.before, purged.after) == (6, 0) and purged.archived_to is not None
        assert "-INBOX-incident-42-" in purged.archived_to
        assert contents() == []
        assert mail.restore_inbox(VICTIM, purged.archived_to) == 6
        assert mail.inbox_count(VICTIM) == 6
        # An archive path mailfix did not make is refused before anything runs.
        for forged in (
            "/etc/shadow",
            f"{archive_dir}/../x-INBOX-20261201T000000Z.tar.gz",
            f"{purged.archived_to}; reboot",
        ):
            try:
                mail.restore_inbox(VICTIM, forged)
            except Exception as exc:  # noqa: BLE001 - the type is asserted below
                assert "not an archive mailfix made" in str(exc)
            else:
                raise AssertionError(f"{forged!r} was accepted")
    finally:
        mail.close()
    assert contents() == before  # Dovecot may rename the files; the messages are the same bytes
