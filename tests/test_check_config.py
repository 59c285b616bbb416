"""`mailfix check-config`: the file, the secrets the chosen mode needs and each server's host key, all at once.

Run through the real `mailfix` command where the whole path matters (exit code, stderr, no traceback);
through `cli.main` for the many single cases.
"""

from __future__ import annotations

import io
import subprocess

import paramiko
import pytest

from bot.config import load_config
from bot.config_check import known_hosts_problem
from bot.terminal import cli
from tests.clitools import fake_env, spawn, write_config
from tests.conftest import SECRET_KEY

SLACK = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
HOST_KEY = paramiko.ECDSAKey.generate()
OTHER_KEY = paramiko.ECDSAKey.generate()


def key_line(names: str, key: paramiko.PKey = HOST_KEY) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


def run(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """Run the real `mailfix` command with `env` (Slack's variables unset unless given)."""
    process = spawn({**dict.fromkeys(SLACK, ""), **env}, "alt", *argv)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


@pytest.fixture
def good(tmp_path):
    """The environment of a valid configuration whose known_hosts holds the server's key (port 22)."""
    env = {"MAILFIX_CONFIG": str(write_config(tmp_path)), "MAILFIX_SECRET_KEY": SECRET_KEY}
    (tmp_path / "known_hosts").write_text("# mail1\n" + key_line("127.0.0.1"))
    return env


@pytest.fixture
def main_env(good, monkeypatch, capsys):
    """`good` set in this process, for `cli.main`: returns a function running check-config (code, stderr)."""
    for name in SLACK:
        monkeypatch.delenv(name, raising=False)
    for name, value in good.items():
        monkeypatch.setenv(name, value)

    def check(*argv: str, **env: str) -> tuple[int, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = cli.main(["check-config", *argv], out=io.StringIO())
        return code, capsys.readouterr().err

    return check


def test_a_good_configuration_is_ok(good, tmp_path):
    code, out, err = run(good, "check-config")
    assert (code, err) == (0, "")
    assert out.strip() == f"{tmp_path / 'mailfix.toml'}: ok (1 servers; terminal mode)"


def test_every_problem_of_the_issue_is_reported_at_once_each_on_its_own_line(tmp_path):
    (tmp_path / "key").write_text("")
    (tmp_path / "empty_known_hosts").write_text("")
    (tmp_path / "other_known_hosts").write_text(key_line("mail.example.net", OTHER_KEY))
    server = '[[servers]]\nname = "{}"\nhost = "127.0.0.1"\nuser = "root"\nmail_domain = "example.org"\n'
    path = tmp_path / "mailfix.toml"
    path.write_text(
        'channel = "C0INCIDENT"\ndirectors = ["UDIRECTOR1"]\noperators = ["UOPERATOR1"]\n'
        "monitor_minutes = nan\napproval_timeout_minutes = inf\n"
        + server.format("mail1").replace("example.org", "example..org")
        + 'key_file = 42\nknown_hosts = "empty_known_hosts"\n'
        + 'archive_before_purge = "no"\nrestart_command = ["postfix", "reload"]\n'
        + server.format("mail2")
        + 'key_file = "key"\nknown_hosts = "empty_known_hosts"\n'
        + server.format("mail3")
        + 'key_file = "key"\nknown_hosts = "other_known_hosts"\nport = 2222\n'
    )
    env = {"MAILFIX_CONFIG": str(path), "MAILFIX_SECRET_KEY": "", "SLACK_BOT_TOKEN": "xoxb-..."}
    code, out, err = run(env, "check-config")
    lines = err.splitlines()
    expected = [
        f"{path}: monitor_minutes: must be a finite number, got nan",
        f"{path}: approval_timeout_minutes: must be a finite number, got inf",
        f"{path}: servers[0] (mail1).key_file: must be a file name (a non-empty string), got 42",
        f"{path}: servers[0] (mail1).mail_domain: expected a domain name like example.org, got 'example..org'",
        f"{path}: servers[0] (mail1).archive_before_purge: must be true or false, got 'no'",
        f"{path}: servers[0] (mail1).restart_command: must be a string, got ['postfix', 'reload']",
        f"{path}: servers[1] (mail2).known_hosts: {tmp_path / 'empty_known_hosts'} holds no host keys: add it with",
        f"{path}: servers[2] (mail3).known_hosts: {tmp_path / 'other_known_hosts'} holds no key for [127.0.0.1]:2222",
        "MAILFIX_SECRET_KEY is not set: make one with python3 -c",
        "SLACK_BOT_TOKEN is still the placeholder from .env.example",
        "SLACK_SIGNING_SECRET is not set",
    ]
    assert (code, out) == (1, "")
    assert len(lines) == len(expected), err
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, f"{start!r} not once in:\n{err}"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("mode", "env", "said"),
    [
        ("http", {}, ["SLACK_BOT_TOKEN is not set", "SLACK_SIGNING_SECRET is not set"]),
        ("socket", {"SLACK_BOT_TOKEN": "xoxb-1-2-abc"}, ["SLACK_APP_TOKEN is not set: Socket Mode needs"]),
        (
            "socket",
            {"SLACK_BOT_TOKEN": "xapp-1-abc", "SLACK_APP_TOKEN": "xoxb-1-abc"},
            ["SLACK_BOT_TOKEN does not start with xoxb-", "SLACK_APP_TOKEN does not start with xapp-"],
        ),
        (
            "socket",
            {"SLACK_BOT_TOKEN": "xoxb-…", "SLACK_APP_TOKEN": "xapp-..."},
            ["SLACK_BOT_TOKEN is still the placeholder", "SLACK_APP_TOKEN is still the placeholder"],
        ),
        ("http", {"SLACK_BOT_TOKEN": "xoxb-1-abc", "SLACK_SIGNING_SECRET": "..."}, ["SLACK_SIGNING_SECRET is still"]),
        # No --mode: the variables set say which mode is meant.
        (None, {"SLACK_SIGNING_SECRET": "0123abcd"}, ["SLACK_BOT_TOKEN is not set"]),
        (None, {"SLACK_BOT_TOKEN": "xoxb-1-abc", "SLACK_APP_TOKEN": "xapp-1-abc"}, []),
        ("terminal", {"SLACK_BOT_TOKEN": "xapp-wrong"}, []),
    ],
)
def test_the_slack_secrets_the_mode_needs_are_checked(main_env, mode, env, said):
    code, err = main_env(*(["--mode", mode] if mode else []), **env)
    assert code == (1 if said else 0)
    lines = err.splitlines()
    assert len(lines) == len(said) and all(line.startswith(s) for line, s in zip(lines, said)), err
    for secret in env.values():
        assert secret in ("...", "xoxb-…", "xapp-...") or secret not in err  # a real token is never echoed


@pytest.mark.parametrize(
    ("key", "said"), [("", "MAILFIX_SECRET_KEY is not set"), ("correct horse battery staple", "is not a Fernet key")]
)
def test_a_missing_or_invalid_secret_key_is_an_error(main_env, key, said):
    code, err = main_env(MAILFIX_SECRET_KEY=key)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("MAILFIX_SECRET_KEY") and said in err and "Fernet.generate_key()" in err
    assert key == "" or key not in err


@pytest.mark.parametrize(
    ("port", "known_hosts", "problem"),
    [
        (22, "", "holds no host keys: add it with `ssh-keyscan -p 22 127.0.0.1 >> "),
        (22, "# only a comment\n\n", "holds no host keys"),
        (22, key_line("mail.example.net"), "holds no key for 127.0.0.1: add it with"),
        (2222, key_line("127.0.0.1"), "holds no key for [127.0.0.1]:2222"),
        (22, key_line("[127.0.0.1]:2222"), "holds no key for 127.0.0.1"),
        (
            22,
            key_line("mail.example.net") + "127.0.0.1 ssh-ed25519 AAAA\n",
            "line 2 is not a host key paramiko can read",
        ),
        (22, "127.0.0.1\n", "line 1 is not a host key"),
        (2222, key_line("[127.0.0.1]:2222"), None),
        (2222, key_line(paramiko.HostKeys.hash_host("[127.0.0.1]:2222")), None),  # ssh-keygen -H
        (22, key_line("mail.example.net,127.0.0.1"), None),
    ],
)
def test_known_hosts_must_hold_the_servers_key(tmp_path, port, known_hosts, problem):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + f"port = {port}\n")
    (tmp_path / "known_hosts").write_text(known_hosts)
    said = known_hosts_problem(load_config(path).server(None))
    if problem is None:
        assert said is None
    else:
        assert said is not None and said.startswith(f"{tmp_path / 'known_hosts'} ") and problem in said


def test_a_known_hosts_that_is_not_text_is_named(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "known_hosts").write_bytes(b"\xff\xfe\x00binary")
    assert (
        known_hosts_problem(load_config(path).server(None))
        == f"{tmp_path / 'known_hosts'} is not a known_hosts file (not text)"
    )


@pytest.mark.parametrize("verb", [["serve", "--host", "127.0.0.1", "--port", "0"], ["socket"], ["run", "--once"]])
@pytest.mark.parametrize("key", ["", "a-long-but-guessable-passphrase"])
def test_serve_socket_and_run_refuse_to_start_without_a_valid_secret_key(tmp_path, verb, key):
    """The real command, with every Slack secret set: the key alone stops it, in one line saying how to make one."""
    env = fake_env(tmp_path) | {
        "MAILFIX_SECRET_KEY": key,
        "SLACK_BOT_TOKEN": "xoxb-1-abc",
        "SLACK_SIGNING_SECRET": "0123abcd",
        "SLACK_APP_TOKEN": "xapp-1-abc",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing listens: the refusal comes before any call
    }
    try:
        code, out, err = run(env, *verb)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mailfix {verb[0]} started without a secret key")
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("MAILFIX_SECRET_KEY is ")
    assert "Fernet.generate_key()" in err and (key == "" or key not in err)
