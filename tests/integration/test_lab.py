"""The lab itself works: SSH, sudo, SMTP AUTH, the queue, the log, Dovecot, reset, restart."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import paramiko
import pytest

from tests.integration.flood import flood, queue_entries
from tests.integration.lab import Lab


def ssh(
    lab: Lab, user: str, command: str, *, key: Path | None = None, known_hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh",
            "-o",
            f"UserKnownHostsFile={known_hosts or lab.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-i",
            str(key or lab.client_key),
            "-p",
            str(lab.ssh_port),
            f"{user}@{lab.host}",
            command,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_root_and_mailfixop_run_id_over_ssh_with_the_client_key(lab: Lab) -> None:
    assert ssh(lab, "root", "id -un").stdout == "root\n"
    assert ssh(lab, "mailfixop", "id -un").stdout == "mailfixop\n"


def test_a_wrong_key_and_a_changed_host_key_are_refused(lab: Lab) -> None:
    wrong_key = ssh(lab, "root", "true", key=lab.wrong_client_key)
    assert wrong_key.returncode == 255
    assert "Permission denied" in wrong_key.stderr
    changed = ssh(lab, "root", "true", known_hosts=lab.wrong_known_hosts)
    assert changed.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr


def test_paramiko_accepts_known_hosts_and_rejects_wrong_known_hosts(lab: Lab) -> None:
    def connect(known_hosts: Path) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            lab.host,
            lab.ssh_port,
            "mailfixop",
            key_filename=str(lab.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
        )
        return client

    client = connect(lab.known_hosts)
    try:
        _, out, _ = client.exec_command("sudo -n id -u")
        assert out.read() == b"0\n"
    finally:
        client.close()
    with pytest.raises(paramiko.BadHostKeyException):
        connect(lab.wrong_known_hosts).close()


def test_mailfixop_sudo_needs_no_password_but_nosudo_sudo_does(lab: Lab) -> None:
    assert ssh(lab, "mailfixop", "sudo -n id -u").stdout == "0\n"
    refused = ssh(lab, "nosudo", "sudo -n id -u")
    assert refused.returncode == 1
    assert "password is required" in refused.stderr


def test_a_flood_of_300_is_queued_with_the_login_and_forged_senders(clean_lab: Lab) -> None:
    report = flood(clean_lab, count=300, legit=9, bounces=5, inbox=0, connections=4)
    entries = queue_entries(clean_lab)
    senders = Counter(entry["sender"] for entry in entries)
    assert len(entries) == report.queued == 300 + 9 + 5
    assert report.forged == 90
    assert senders["victim@lab.test"] == report.from_login == 210
    assert sum(senders[s] for s in report.forged_senders) == report.forged
    assert all(s.endswith("@spam.example") for s in report.forged_senders)
    assert senders["alice@lab.test"] + senders["bob@lab.test"] + senders["juana@lab.test"] == 9
    bounces = [e for e in entries if e["sender"] == "MAILER-DAEMON"]
    assert [r["address"] for e in bounces for r in e["recipients"]] == ["victim@lab.test"] * 5
    assert {e["queue_name"] for e in entries} <= {"incoming", "active", "deferred"}


def test_the_postfix_log_names_the_sasl_login_of_every_flood_message(clean_lab: Lab) -> None:
    report = flood(clean_lab, count=300, legit=6, bounces=0, inbox=0)

    def count(needle: str) -> int:
        return clean_lab.postfix_log.read_text().count(needle)

    wait_for(lambda: count("sasl_username=victim\n") == 300, "300 sasl_username=victim lines")
    assert report.from_login + report.forged == 300
    wait_for(lambda: count("sasl_username=juana\n") == 2, "juana's two lines")
    # "juan" is a prefix of "juana": only a whole-word match keeps juan's count at 0.
    assert count("sasl_username=juan\n") == 0
    assert count("sasl_username=juan") == 2


def test_doveadm_sees_the_inbox_messages_and_can_expunge_them(clean_lab: Lab) -> None:
    flood(clean_lab, count=0, legit=0, bounces=0, inbox=4)
    assert clean_lab.inbox_count("victim") == 4
    found = clean_lab.run(["doveadm", "search", "-u", "victim", "mailbox", "INBOX", "all"]).stdout
    assert len(found.splitlines()) == 4
    clean_lab.run(["doveadm", "expunge", "-u", "victim", "mailbox", "INBOX", "all"])
    assert clean_lab.inbox_count("victim") == 0
    assert clean_lab.run(["doveadm", "auth", "cache", "flush"]).returncode == 0


def test_imap_pop3_and_smtp_auth_accept_the_known_password(clean_lab: Lab) -> None:
    password = clean_lab.passwords["victim"]
    imap = imaplib.IMAP4(clean_lab.host, clean_lab.imap_port, timeout=10)
    assert imap.login("victim", password)[0] == "OK"
    # An open IMAP session is what `doveadm kick` ends.
    assert "kicked" in clean_lab.run(["doveadm", "kick", "victim"]).stdout
    pop = poplib.POP3(clean_lab.host, clean_lab.pop3_port, timeout=10)
    pop.user("juan")
    assert pop.pass_(clean_lab.passwords["juan"]).startswith(b"+OK")
    pop.quit()
    with smtplib.SMTP(clean_lab.host, clean_lab.smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.docmd("AUTH", "PLAIN AHZpY3RpbQB3cm9uZw==")[0] == 535  # \0victim\0wrong


def test_a_sasl_access_reject_line_blocks_the_login_from_sending(clean_lab: Lab) -> None:
    Path(clean_lab.sasl_access_map).write_text("victim REJECT account compromised\n")
    clean_lab.run(["postmap", clean_lab.sasl_access_map])
    with pytest.raises(smtplib.SMTPRecipientsRefused, match="account compromised"):
        flood(clean_lab, count=1, forged_fraction=0, legit=0, bounces=0, inbox=0, connections=1, timeout=1)
    assert flood(clean_lab, login="alice", count=1, legit=0, bounces=0, inbox=0, connections=1).queued == 1


def test_reset_empties_queue_map_and_mailboxes_and_restores_passwords(clean_lab: Lab) -> None:
    assert flood(clean_lab, count=20, legit=3, bounces=2, inbox=2).queued == len(queue_entries(clean_lab)) == 25
    assert clean_lab.inbox_count("victim") == 2
    Path(clean_lab.sasl_access_map).write_text("victim REJECT\n")
    clean_lab.run(["postmap", clean_lab.sasl_access_map])
    assert clean_lab.run(["postmap", "-q", "victim", clean_lab.sasl_access_map]).stdout == "REJECT\n"
    subprocess.run(["chpasswd"], input="victim:Changed-by-test-1\n", text=True, check=True)
    clean_lab.reset()
    assert queue_entries(clean_lab) == []
    assert Path(clean_lab.sasl_access_map).read_text() == ""
    assert clean_lab.run(["postmap", "-q", "victim", clean_lab.sasl_access_map], check=False).returncode == 1
    assert clean_lab.inbox_count("victim") == 0
    auth = clean_lab.run(["doveadm", "auth", "test", "victim", clean_lab.passwords["victim"]], check=False)
    assert auth.returncode == 0, auth.stdout + auth.stderr


def test_the_configured_restart_command_restarts_postfix_over_ssh(clean_lab: Lab) -> None:
    config = clean_lab.server_config()
    assert (config.host, config.port, config.mail_domain) == ("127.0.0.1", clean_lab.ssh_port, "lab.test")
    old_master = clean_lab.run(["cat", "/var/spool/postfix/pid/master.pid"]).stdout.strip()
    result = ssh(clean_lab, config.user, config.restart_command)
    assert result.returncode == 0, result.stderr
    assert clean_lab.run(["postfix", "status"], check=False).returncode == 0
    assert clean_lab.run(["cat", "/var/spool/postfix/pid/master.pid"]).stdout.strip() != old_master
    wait_for(lambda: listening(clean_lab.smtp_port), "smtpd after restart")


def test_the_simulated_reboot_takes_ssh_and_postfix_down_and_brings_them_back(clean_lab: Lab) -> None:
    result = ssh(clean_lab, "mailfixop", f"sudo -n {clean_lab.server_config().reboot_command}")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not listening(clean_lab.ssh_port), "sshd to go down")
    wait_for(lambda: listening(clean_lab.ssh_port) and listening(clean_lab.smtp_port), "sshd and smtpd to return")
    wait_for(lambda: listening(clean_lab.imap_port), "dovecot to return")
    assert ssh(clean_lab, "root", "postfix status").returncode == 0


def test_a_closed_lab_starts_again_on_fresh_ports(lab: Lab) -> None:
    old_dir = lab.dir
    lab.close()
    lab.close()  # idempotent
    assert not listening(lab.ssh_port)
    assert not old_dir.exists()
    lab.start()
    assert lab.dir != old_dir
    assert ssh(lab, "root", "id -un").stdout == "root\n"
    assert listening(lab.smtp_port) and listening(lab.imap_port) and listening(lab.pop3_port)
