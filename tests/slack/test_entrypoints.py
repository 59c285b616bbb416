"""`mailfix serve` and `mailfix socket` refuse to start without what they need, and resume after a restart."""

from __future__ import annotations

import pytest

from bot.terminal import cli
from tests.clitools import fake_env
from tests.slack.conftest import start_bot, stop_bot


@pytest.fixture
def env(tmp_path, monkeypatch):
    for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")  # nothing listens: no call may be needed


def test_serve_refuses_to_start_without_the_slack_secrets(env, capsys):
    assert cli.main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN is not set" in err and "SLACK_SIGNING_SECRET is not set" in err


@pytest.mark.parametrize(
    ("key", "said"),
    [("", "MAILFIX_SECRET_KEY is not set"), ("a-long-but-guessable-passphrase", "is not a Fernet key")],
)
@pytest.mark.parametrize("verb", [["serve", "--port", "0"], ["socket"], ["run", "--once"]])
def test_the_bot_refuses_to_start_without_a_real_secret_key(env, monkeypatch, capsys, verb, key, said):
    """Found at start-up, in one line that says how to make one: not at 3 a.m. when a director approves."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "test-signing-secret")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test")
    monkeypatch.setenv("MAILFIX_SECRET_KEY", key)
    monkeypatch.setenv("SUDO_USER", "alt")
    assert cli.main(verb) == 1
    err = capsys.readouterr().err.strip()
    assert said in err and "Fernet.generate_key()" in err and len(err.splitlines()) == 1
    assert key == "" or key not in err  # the secret is never echoed


def test_socket_mode_says_it_needs_an_app_token(env, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    assert cli.main(["socket"]) == 1
    assert "SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token" in capsys.readouterr().err


def test_serve_refuses_an_invalid_configuration(env, tmp_path, monkeypatch, capsys):
    (tmp_path / "mailfix.toml").write_text('channel = "general"\n')
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    assert cli.main(["serve"]) == 1
    assert "channel: expected a Slack channel ID" in capsys.readouterr().err


def test_serve_refuses_a_token_slack_rejects(env, monkeypatch, capsys, slack):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    monkeypatch.setenv("SLACK_API_URL", f"{slack.url}/api/")
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", "0"]) == 1
    assert "SLACK_BOT_TOKEN was refused by Slack: invalid_auth" in capsys.readouterr().err


def test_a_restarted_bot_resumes_monitoring_and_resolves_the_incident(tmp_path, slack):
    bot = start_bot(tmp_path, slack)
    try:
        bot.start_incident()
        bot.click_button("approve_cleanup", "UDIRECTOR1")
        bot.wait_state("monitoring")
    finally:
        stop_bot(bot)
    assert bot.incident().state == "monitoring"  # stopped before its 1.2 s of monitoring ended
    bot = start_bot(tmp_path, slack)
    try:
        incident = bot.wait_state("resolved")
        assert incident.checks and incident.checks[-1].normal
    finally:
        stop_bot(bot)
