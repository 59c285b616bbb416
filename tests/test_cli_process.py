"""The real `mailfix` command as a script sees it: exit codes, a closed pipe, colour on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys

import pytest

from tests.clitools import ROOT, fake_env, spawn


@pytest.fixture
def env(tmp_path):
    return fake_env(tmp_path)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_diagnose_json_is_the_documented_schema_and_exits_3_on_a_flood(env):
    code, out, err = finish(spawn(env, "alt", "diagnose", "--json"))
    assert code == 3, err
    data = json.loads(out)
    assert data["schema"] == "mailfix.diagnosis/1" and data["suspect"]["address"] == "victim@example.org"


def test_a_closed_pipe_ends_in_one_line_not_a_traceback(env):
    """`mailfix diagnose --json | head -c 10` with head gone before mailfix writes: EPIPE, one line, exit 1."""
    proc = spawn(env, "alt", "diagnose", "--json")
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before mailfix has diagnosed anything
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.wait(timeout=60) == 1
    assert err.strip() == "error: the output was closed before mailfix finished writing (broken pipe)"


def test_a_closed_pipe_does_not_stop_a_step_that_changes_the_server(env):
    """`mailfix start | head -1`: the containment still runs to its end and is recorded."""
    proc = spawn(env, "alt", "start", "mail1")
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1
    code, out, err = finish(spawn(env, "alt", "status", "1", "--json"))
    (incident,) = json.loads(out)["incidents"]
    assert incident["state"] == "awaiting_approval" and incident["contained_at"] is not None, err


def test_an_unreachable_database_is_one_line(env):
    env = {**env, "MAILFIX_DATABASE_URL": "postgresql+psycopg://mailfix:pw-9f2@127.0.0.1:9/mailfix"}
    code, out, err = finish(spawn(env, "alt", "list"))
    assert code == 1 and out == ""
    assert err.startswith("error: the database postgresql+psycopg://mailfix:***@127.0.0.1:9/mailfix cannot be used")
    assert len(err.strip().splitlines()) == 1 and "pw-9f2" not in err


def run_on_a_terminal(env: dict[str, str], *argv: str) -> tuple[int, str]:
    """Run `mailfix` with its stdout on a pseudo-terminal; return the exit code and what it printed."""
    master, slave = pty.openpty()
    full = {**os.environ, **env, "SUDO_USER": "alt"}
    proc = subprocess.Popen([sys.executable, "-m", "bot", *argv], cwd=ROOT, env=full, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 4096) if ready else b""
        except OSError:  # EIO: the process closed its end
            chunk = b""
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode()


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False)])
def test_colour_on_a_terminal_unless_no_color_is_set(env, no_color, coloured):
    extra = {} if no_color is None else {"NO_COLOR": no_color}
    environ_no_color = os.environ.pop("NO_COLOR", None)  # the test's own environment must not decide
    try:
        code, out = run_on_a_terminal({**env, **extra}, "watch", "--once")
    finally:
        if environ_no_color is not None:
            os.environ["NO_COLOR"] = environ_no_color
    assert code == 3, out
    assert ("\x1b[1;31mALERT\x1b[0m" in out) is coloured
    assert "Flood on mail1: victim@example.org" in out


def test_version_and_the_exit_codes_in_help(env):
    code, out, _ = finish(spawn(env, "alt", "--version"))
    assert code == 0 and out.startswith("mailfix ")
    code, out, _ = finish(spawn(env, "alt", "--help"))
    assert code == 0 and "exit codes:" in out and "3  found" in out and "4  a mail server could not be reached" in out
    code, _, err = finish(spawn(env, "alt", "status", "twelve"))
    assert code == 2 and "'twelve' is not an incident number" in err
