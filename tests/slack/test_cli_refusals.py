"""A token Slack refuses ends the real `mailfix serve`/`socket` process in one line that names it, not a traceback."""

from __future__ import annotations

import pytest

from handlers.serve import NEEDED_SCOPES
from tests.clitools import fake_env, spawn
from tests.slack.conftest import BOT_TOKEN
from tests.slack.fake_slack import manifest_scopes


@pytest.mark.parametrize(
    ("verb", "tokens", "said"),
    [
        ("serve", {"SLACK_BOT_TOKEN": "xoxb-refused", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN was refused"),
        ("socket", {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": "xapp-1-refused"}, "SLACK_APP_TOKEN was refused"),
    ],
)
def test_a_refused_token_is_one_line_naming_it(tmp_path, slack, verb, tokens, said):
    env = {**fake_env(tmp_path), "SLACK_API_URL": f"{slack.url}/api/", "SLACK_SIGNING_SECRET": "", **tokens}
    proc = spawn(env, "alt", verb, *(["--host", "127.0.0.1", "--port", "0"] if verb == "serve" else []))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"{said} by Slack: invalid_auth"


def test_an_app_installed_without_a_scope_mailfix_uses_is_refused_at_start_naming_it(tmp_path, slack):
    """An app installed before mailfix needed im:history would fail the DM after the password changed."""
    slack.scopes = slack.scopes - {"im:history", "files:write"}
    env = {**fake_env(tmp_path), "SLACK_API_URL": f"{slack.url}/api/", "SLACK_BOT_TOKEN": BOT_TOKEN}
    env["SLACK_SIGNING_SECRET"] = "s"
    proc = spawn(env, "alt", "serve", "--host", "127.0.0.1", "--port", "0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("the Slack app lacks the scopes files:write, im:history: add them (app.yaml) and reinstall it")
    )


def test_the_scopes_checked_at_start_are_the_manifests():
    assert manifest_scopes() == NEEDED_SCOPES
