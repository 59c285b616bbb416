"""The lab's sshd is down when an incident starts, then comes back: a failed step with its reason, and
Retry finishes the incident from where it stopped — driven through the `mailfix` terminal commands."""

from __future__ import annotations

import io
import json

import pytest

from bot.terminal import cli
from tests.clitools import write_server_config
from tests.conftest import SECRET_KEY
from tests.integration.flood import flood, queue_entries


@pytest.fixture
def mailfix(clean_lab, tmp_path, monkeypatch):
    """Run `mailfix` commands against the lab as a given local user; returns (exit code, output)."""
    settings = (
        "flood_threshold = 200\nnormal_queue_size = 100\nmonitor_minutes = 0.01\n"
        "restart_monitor_minutes = 0.01\ncheck_interval_seconds = 0.2"
    )
    config = write_server_config(tmp_path, clean_lab.server_config(user="mailfixop"), settings=settings)
    monkeypatch.setenv("MAILFIX_CONFIG", str(config))
    monkeypatch.setenv("MAILFIX_DATABASE_URL", f"sqlite:///{tmp_path}/mailfix.db")
    monkeypatch.setenv("MAILFIX_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("MAILFIX_MAILSERVER", raising=False)

    def run(user: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("SUDO_USER", user)  # the tests run as root
        out = io.StringIO()
        return cli.main(list(argv), out=out), out.getvalue()

    return run


def test_a_server_down_at_start_fails_the_step_visibly_and_retry_finishes_the_incident(clean_lab, mailfix, capsys):
    lab = clean_lab
    report = flood(lab, login="victim", count=300, forged_fraction=0.0, legit=10, bounces=0, inbox=2)
    lab._stop_sshd()  # the lab's own way to stop its sshd; the next test's reset starts it again if this one fails
    try:
        code, out = mailfix("alt", "start", "lab")
        assert code == 4, capsys.readouterr().err  # 4: a server could not be reached
        # The reason is in the incident's log (the thread) and its status, and Retry is offered.
        assert f"diagnose failed: {lab.host}: cannot connect to port {lab.ssh_port}" in out
        status = mailfix("alt", "status", "1")[1]
        assert status.split()[2] == "failed", status
        assert f"failure: diagnose: {lab.host}: cannot connect" in status and "mailfix retry 1" in status

        code, out = mailfix("alt", "retry", "1")  # still down: fails again, still retryable
        assert code == 4, capsys.readouterr().err
        assert "diagnose failed" in out and "Can't retry" not in out
    finally:
        lab._start_sshd()

    code, out = mailfix("alt", "retry", "1")
    assert code == 0, capsys.readouterr().err
    assert "Suspect victim@lab.test (login victim)" in out
    held = [e for e in queue_entries(lab) if e["queue_name"] == "hold"]
    assert len(held) == report.from_login

    assert mailfix("boss", "approve", "1", "--account", "victim@lab.test")[0] == 0, capsys.readouterr().err
    assert mailfix("alt", "run")[0] == 0
    data = json.loads(mailfix("alt", "report", "1", "--format", "json")[1])
    assert data["incident"]["state"] == "resolved"
    assert data["counts"]["held"] == report.from_login
    assert data["counts"]["deleted"] == report.from_login
    assert len(queue_entries(lab)) == report.legit
    assert lab.inbox_count("victim") == 0
