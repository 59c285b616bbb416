"""Whole incidents driven through `mailfix` commands (cli.main), with every step persisted."""

from __future__ import annotations

import io
import json
import os
import pwd
import time

import pytest

from bot.terminal import cli
from tests.clitools import fake_env
from tests.fakes import FakeMailServer


@pytest.fixture
def env(tmp_path, monkeypatch):
    values = fake_env(tmp_path)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(monkeypatch, user: str, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("SUDO_USER", user)  # the tests run as root
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def fake(env) -> FakeMailServer:
    return FakeMailServer.from_file(__import__("pathlib").Path(env["FAKE_MAILSERVER_STATE"]))


def test_a_whole_incident_from_the_terminal(env, monkeypatch, capsys):
    code, out = run(monkeypatch, "alt", "start", "mail1")
    assert code == 0, capsys.readouterr().err
    assert "suspect_found" not in out and "awaiting approval" in out
    assert "Suspect victim@example.org (login victim)" in out
    assert "mailfix approve 1" in out

    code, _ = run(monkeypatch, "alt", "approve", "1", "--account", "victim@example.org")
    assert code == 1 and "only the IT director" in capsys.readouterr().err

    code, out = run(monkeypatch, "boss", "approve", "1", "--account", "victim@example.org")
    assert code == 0, capsys.readouterr().err
    assert "monitoring" in out and "mailfix password 1" in out
    server = fake(env)
    assert all(m.login != "victim" for m in server.messages) and server.inbox["victim"] == 0

    code, out = run(monkeypatch, "alt", "password", "1")
    assert code == 0 and f"New password for victim@example.org: {server.passwords['victim']}" in out
    code, out = run(monkeypatch, "alt", "password", "1")
    assert code == 1 and "no password is waiting" in out

    time.sleep(1.5)  # monitor_minutes = 0.02 in the test config
    assert run(monkeypatch, "alt", "run")[0] == 0
    code, out = run(monkeypatch, "alt", "status", "1")
    assert "resolved" in out

    code, out = run(monkeypatch, "alt", "report", "1", "--format", "json")
    report = json.loads(out)
    assert report["incident"]["state"] == "resolved"
    assert report["counts"]["deleted"] == 300 + 10
    assert server.passwords["victim"] not in out
    code, out = run(monkeypatch, "alt", "report", "1")
    assert "# Incident #1 on mail1: resolved" in out and "step delete_from: done" in out


def test_unknown_local_users_are_refused(env, monkeypatch, capsys):
    code, _ = run(monkeypatch, "mallory", "start", "mail1")
    assert code == 1
    assert "local user 'mallory' is not in cli_users" in capsys.readouterr().err
    assert fake(env).calls == []


def test_unknown_server_and_busy_server(env, monkeypatch, capsys):
    assert run(monkeypatch, "alt", "start", "mail9")[0] == 1
    assert "unknown server 'mail9'" in capsys.readouterr().err
    assert run(monkeypatch, "alt", "start")[0] == 0
    assert run(monkeypatch, "alt", "start")[0] == 1
    assert "already open on mail1 (#1)" in capsys.readouterr().err


def test_reject_abort_and_list(env, monkeypatch, capsys):
    run(monkeypatch, "alt", "start")
    code, out = run(monkeypatch, "boss", "reject", "1", "--account", "victim@example.org")
    assert code == 0 and "monitoring" in out  # no other account over the threshold
    code, out = run(monkeypatch, "alt", "abort", "1")
    assert code == 0 and "aborted" in out
    code, out = run(monkeypatch, "alt", "abort", "1")
    assert code == 1 and "already aborted by UOPERATOR1" in capsys.readouterr().err
    code, out = run(monkeypatch, "alt", "list")
    assert "#1" in out and "aborted" in out


def test_the_terminal_user_comes_from_the_account_not_from_USER(env, monkeypatch, capsys):
    monkeypatch.setenv("USER", "boss")  # anyone can set USER; it must not make them a director
    monkeypatch.setenv("LOGNAME", "boss")
    monkeypatch.delenv("SUDO_USER", raising=False)
    code = cli.main(["start", "mail1"], out=io.StringIO())
    assert code == 1
    assert f"local user '{pwd.getpwuid(os.getuid()).pw_name}' is not in cli_users" in capsys.readouterr().err


def test_queue_data_reaches_the_terminal_without_escape_sequences(env, monkeypatch):
    """A sender carrying ESC, BEL or a bidi override (postqueue -j may hold any of them) prints as plain text."""
    server = fake(env)
    for i in range(3):
        server._add("evil\x1b]0;pwned\x07\u202e@spam.example", [f"x{i}@example.net"], None, "Pago \x1b[2J pendiente")
    server._save()
    code, out = run(monkeypatch, "alt", "diagnose", "mail1")
    assert code == 0 and "evil]0;pwned@spam.example" in out
    assert not any(c in out for c in "\x1b\x07\u202e")
