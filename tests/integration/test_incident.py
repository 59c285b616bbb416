"""Whole incidents against the real lab: a flood through real SMTP AUTH, found, contained and cleaned
by the runbook over SSH, driven through the `mailfix` terminal commands."""

from __future__ import annotations

import io
import json
import smtplib
from base64 import b64encode
from pathlib import Path

import pytest

from bot.terminal import cli
from tests.clitools import write_server_config
from tests.conftest import SECRET_KEY
from tests.integration.flood import flood, queue_entries


@pytest.fixture
def mailfix(clean_lab, tmp_path, monkeypatch):
    """Run `mailfix` commands against the lab as a given local user; returns (exit code, output)."""
    monkeypatch.setenv(
        "MAILFIX_CONFIG",
        str(
            write_server_config(
                tmp_path,
                clean_lab.server_config(user="mailfixop"),
                settings="flood_threshold = 200\nnormal_queue_size = 100\nmonitor_minutes = 0.01\n"
                "restart_monitor_minutes = 0.01\ncheck_interval_seconds = 0.2",
            )
        ),
    )
    monkeypatch.setenv("MAILFIX_DATABASE_URL", f"sqlite:///{tmp_path}/mailfix.db")
    monkeypatch.setenv("MAILFIX_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("MAILFIX_MAILSERVER", raising=False)

    def run(user: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("SUDO_USER", user)  # the tests run as root
        out = io.StringIO()
        return cli.main(list(argv), out=out), out.getvalue()

    return run


def smtp_auth_works(lab, user: str, password: str) -> bool:
    """Log in with one AUTH PLAIN on the lab's submission port and ask to send one message."""
    with smtplib.SMTP(lab.host, lab.smtp_port, timeout=20) as smtp:
        smtp.ehlo()
        code, _ = smtp.docmd("AUTH", "PLAIN " + b64encode(f"\0{user}\0{password}".encode()).decode())
        if code != 235:
            return False
        smtp.docmd("MAIL", f"FROM:<{user}@{lab.domain}>")
        code, _ = smtp.docmd("RCPT", "TO:<someone@example.com>")  # check_sasl_access rejects here
        smtp.docmd("RSET")
        return code == 250


def test_a_real_flood_is_found_contained_and_cleaned_from_the_terminal(clean_lab, mailfix, capsys):
    lab = clean_lab
    report = flood(lab, login="victim", count=600, forged_fraction=0.3, legit=30, bounces=15, inbox=5)

    code, out = mailfix("alt", "start", "lab")
    assert code == 0, capsys.readouterr().err
    assert "Suspect victim@lab.test (login victim)" in out
    entries = queue_entries(lab)
    held = [e for e in entries if e["queue_name"] == "hold"]
    assert len(held) == report.from_login + report.forged  # forged senders too, through the SASL login
    # Blocked at once: the stolen login no longer sends mail.
    assert not smtp_auth_works(lab, "victim", lab.passwords["victim"])
    assert smtp_auth_works(lab, "juana", lab.passwords["juana"])

    code, out = mailfix("alt", "approve", "1", "--account", "victim@lab.test")
    assert code == 1 and "only the IT director" in capsys.readouterr().err
    code, out = mailfix("boss", "approve", "1", "--account", "victim@lab.test")
    assert code == 0, capsys.readouterr().err
    entries = queue_entries(lab)
    assert not [e for e in entries if e["sender"] == "victim@lab.test"]
    assert not [e for e in entries if any(r["address"] == "victim@lab.test" for r in e["recipients"])]
    assert len(entries) == report.legit  # legitimate mail of alice, bob and juana survives
    assert lab.inbox_count("victim") == 0
    assert "victim" not in Path(lab.sasl_access_map).read_text()  # unblocked: the new password protects it

    code, out = mailfix("alt", "password", "1")
    assert code == 0
    new_password = out.split(": ", 1)[1].splitlines()[0]
    assert smtp_auth_works(lab, "victim", new_password)
    assert not smtp_auth_works(lab, "victim", lab.passwords["victim"])

    assert mailfix("alt", "run")[0] == 0
    code, out = mailfix("alt", "report", "1", "--format", "json")
    data = json.loads(out)
    assert data["incident"]["state"] == "resolved"
    assert data["counts"]["held"] == report.from_login + report.forged
    assert data["counts"]["deleted"] == report.from_login + report.forged + report.bounces
    assert data["incident"]["seconds_to_containment"] < 60
    assert new_password not in out


def test_not_this_account_releases_the_held_mail_and_unblocks_the_login(clean_lab, mailfix, capsys):
    lab = clean_lab
    report = flood(lab, login="juan", count=300, forged_fraction=0.0, legit=10, bounces=0, inbox=0)
    assert mailfix("alt", "start", "lab")[0] == 0
    assert len([e for e in queue_entries(lab) if e["queue_name"] == "hold"]) == report.from_login
    code, out = mailfix("boss", "reject", "1", "--account", "juan@lab.test")
    assert code == 0, capsys.readouterr().err
    assert not [e for e in queue_entries(lab) if e["queue_name"] == "hold"]
    assert "juan" not in Path(lab.sasl_access_map).read_text()
    assert smtp_auth_works(lab, "juan", lab.passwords["juan"])
