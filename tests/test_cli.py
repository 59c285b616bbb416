"""Whole incidents driven through `mailfix` commands (cli.main), with every step persisted."""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import re
import socket
import time

import pytest
import sqlalchemy

from bot.terminal import cli
from bot.terminal.args import build_parser
from bot.terminal.text import plain
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
    assert code == 3 and "evil]0;pwned@spam.example" in out  # 3: the fake's queue holds a flood
    assert not any(c in out for c in "\x1b\x07\u202e")


# -- scripts: --json, exit codes ------------------------------------------------------------------


def test_status_and_list_print_json_in_the_documented_schema(env, monkeypatch, capsys):
    run(monkeypatch, "alt", "start", "mail1")
    code, out = run(monkeypatch, "alt", "status", "--json")
    assert code == 0, capsys.readouterr().err
    data = json.loads(out)
    assert data["schema"] == "mailfix.incidents/1"
    (incident,) = data["incidents"]
    assert incident["id"] == 1 and incident["state"] == "awaiting_approval"
    assert incident["account"] == "victim@example.org" and incident["sasl_login"] == "victim"
    assert incident["suspect"] == {"queued_from": 250, "queued_to": 10, "queued_by_login": 300}
    assert incident["approvals"][0]["what"] == "cleanup" and incident["approvals"][0]["decision"] is None
    assert {s["step"] for s in incident["steps"]} >= {"diagnose", "block_login"}
    assert "mailfix approve 1 --account victim@example.org" in incident["next"]
    assert set(incident) == {
        "id", "server", "state", "account", "sasl_login", "opened_by", "opened_at", "contained_at", "closed_at",
        "failure", "suspect", "approvals", "steps", "queue_trend", "next",
    }  # fmt: skip
    run(monkeypatch, "alt", "abort", "1")
    code, out = run(monkeypatch, "alt", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["schema"] == "mailfix.incidents/1"
    assert [(i["id"], i["state"]) for i in listed["incidents"]] == [(1, "aborted")]
    assert json.loads(run(monkeypatch, "alt", "status", "--json")[1]) == {
        "schema": "mailfix.incidents/1",
        "incidents": [],
    }


def test_diagnose_exits_3_on_a_flood_and_0_on_a_quiet_queue(tmp_path, monkeypatch, capsys):
    quiet = FakeMailServer(domain="example.org", state_file=tmp_path / "fake.json")
    quiet.flood("alice", 5)
    quiet._save()
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    code, out = run(monkeypatch, "alt", "diagnose", "--json")
    assert code == 0 and json.loads(out)["suspect"] is None
    quiet.flood("victim", 300)
    quiet._save()
    code, out = run(monkeypatch, "alt", "diagnose", "--json")
    assert code == 3 and json.loads(out)["suspect"]["address"] == "victim@example.org"


def test_watch_once_json_prints_one_alert_object_per_line(env, monkeypatch):
    code, out = run(monkeypatch, "alt", "watch", "--once", "--json")
    assert code == 3
    (line,) = out.splitlines()
    alert = json.loads(line)
    assert alert["schema"] == "mailfix.alert/1" and alert["event"] == "raised"
    assert (alert["server"], alert["kind"], alert["account"]) == ("mail1", "flood", "victim@example.org")
    assert alert["details"]["count"] == 300 and alert["closed_at"] is None
    assert alert["text"].startswith("Flood on mail1: victim@example.org")


def test_run_once_start_and_diagnose_exit_4_when_the_server_cannot_be_reached(env, tmp_path, monkeypatch, capsys):
    """The real SSH connector against a closed port: what failed is recorded, and the exit code says why."""
    run(monkeypatch, "alt", "start", "mail1")
    run(monkeypatch, "boss", "approve", "1", "--account", "victim@example.org")  # monitoring, on the fake
    monkeypatch.delenv("MAILFIX_MAILSERVER")  # from now on: SSH to a port where nothing listens
    config = tmp_path / "mailfix.toml"
    config.write_text(config.read_text() + f"port = {closed_port()}\nconnect_timeout_seconds = 2\n")
    assert run(monkeypatch, "alt", "run", "--once")[0] == 4
    assert queue_sizes_checked(env, 1)[-1] == -1  # the monitoring check ran and recorded the server unreachable
    run(monkeypatch, "alt", "abort", "1")
    code, out = run(monkeypatch, "alt", "start", "mail1")
    assert code == 4, capsys.readouterr().err
    assert "failed" in out and "mailfix retry 2" in out
    assert run(monkeypatch, "alt", "run", "--once")[0] == 0  # a failed step waits for a person: nothing to reach
    capsys.readouterr()
    code, _ = run(monkeypatch, "alt", "diagnose", "mail1")
    err = capsys.readouterr().err.strip()
    assert code == 4 and len(err.splitlines()) == 1 and err.startswith("error: ")


def queue_sizes_checked(env, incident_id: int) -> list[int]:
    """Return the queue size of each monitoring check of the incident, from the database (-1: unreachable)."""
    engine = sqlalchemy.create_engine(env["MAILFIX_DATABASE_URL"])
    with engine.connect() as db:
        query = sqlalchemy.text("SELECT queue_size FROM checks WHERE incident_id = :i ORDER BY id")
        sizes = list(db.execute(query, {"i": incident_id}).scalars())
    engine.dispose()
    return sizes


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


# -- no tracebacks for expected failures ----------------------------------------------------------


def test_an_unreachable_database_is_one_line_without_its_password(env, monkeypatch, capsys):
    url = f"postgresql+psycopg://mailfix:s3cret-pw@127.0.0.1:{closed_port()}/mailfix"
    monkeypatch.setenv("MAILFIX_DATABASE_URL", url)
    code, out = run(monkeypatch, "alt", "list")
    err = capsys.readouterr().err
    assert code == 1 and out == ""
    assert err.startswith("error: the database postgresql+psycopg://mailfix:***@127.0.0.1:") and "refused" in err
    assert len(err.strip().splitlines()) == 1 and "s3cret-pw" not in err
    monkeypatch.setenv("MAILFIX_DATABASE_URL", "not a url s3cret-pw")
    assert run(monkeypatch, "alt", "list")[0] == 1
    err = capsys.readouterr().err
    assert "MAILFIX_DATABASE_URL is not a database URL" in err and "s3cret-pw" not in err


# -- plain text in the terminal -------------------------------------------------------------------


def test_terminal_output_and_the_markdown_report_name_people_and_carry_no_slack_markup(env, monkeypatch, capsys):
    code, out = run(monkeypatch, "alt", "start", "mail1")
    assert code == 0
    # The core's thread line for Slack is ":raised_hand: <@UDIRECTOR1> <@UDIRECTOR2> please decide …".
    assert "boss boss2 please decide on" in out
    code, out = run(monkeypatch, "boss", "approve", "1", "--account", "victim@example.org")
    code, report = run(monkeypatch, "alt", "report", "1")
    everything = out + report
    assert "| boss |" in report and "Opened by alt" in report  # cli_users' names, not Slack IDs
    assert not re.search(r"<[@!#]|:[a-z_]+:(?!\d)", everything), everything
    assert not re.search(r"\bU(DIRECTOR|OPERATOR)\d\b", everything)


def test_plain_turns_slack_markup_into_words_and_leaves_times_and_queue_data_alone():
    names = {"UDIRECTOR1": "boss"}
    assert plain(":raised_hand: <@UDIRECTOR1> <@UOTHER9> please decide", names) == "boss UOTHER9 please decide"
    assert plain("approved by UDIRECTOR1 at <!date^1700000000^{time}|03:04 UTC>", names) == (
        "approved by boss at 03:04 UTC"
    )
    assert plain("see <https://check.spamhaus.org/|Spamhaus> or <#C0INCIDENT|incidents>") == (
        "see Spamhaus (https://check.spamhaus.org/) or #incidents"
    )
    assert plain("at 12:30:45, queue id 4F3A2: client=x") == "at 12:30:45, queue id 4F3A2: client=x"


@pytest.mark.parametrize(("tty", "no_color", "coloured"), [(True, "", True), (True, "1", False), (False, "", False)])
def test_colour_only_on_a_terminal_and_never_with_no_color(env, monkeypatch, tty, no_color, coloured):
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setenv("SUDO_USER", "alt")
    out = Stream()
    assert cli.main(["watch", "--once"], out=out) == 3
    assert ("\x1b[1;31mALERT\x1b[0m" in out.getvalue()) is coloured
    assert "ALERT Flood on mail1" in re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())


# -- help, version -----------------------------------------------------------------------------


def test_every_argument_has_help_and_every_verb_an_example(capsys):
    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"start", "status", "list", "diagnose", "watch", "dnsbl", "run", "report", "serve", "socket"} <= set(verbs)
    for name, verb in verbs.items():
        assert verb.epilog and verb.epilog.startswith("example:\n  ") and "mailfix " in verb.epilog, name
        for action in verb._actions:
            assert action.help, (name, action.dest)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and re.fullmatch(r"mailfix \S+\n", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "exit codes:" in capsys.readouterr().out
