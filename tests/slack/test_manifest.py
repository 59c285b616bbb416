"""app.yaml matches the code: the commands it declares are handled, its scopes cover every call, no more."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from slack_sdk import WebClient

from handlers.commands import VERBS
from handlers.ids import COMMANDS
from tests.slack.fake_slack import MANIFEST, METHOD_SCOPES

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DATA = yaml.safe_load(MANIFEST.read_text())
CALL = re.compile(r"client\.([a-z]+_[A-Za-z0-9_]+)\(")
# slack_sdk helpers that call several Web API methods
HELPERS = {"files_upload_v2": {"files.getUploadURLExternal", "files.completeUploadExternal"}}


def web_api_methods_called() -> set[str]:
    """Return the Web API methods the bot's code calls (client.chat_postMessage → chat.postMessage)."""
    found = set()
    for path in [*ROOT.glob("bot/*.py"), *ROOT.glob("handlers/*.py")]:
        for name in CALL.findall(path.read_text()):
            if hasattr(WebClient, name):  # not paramiko's client.get_transport()
                found |= HELPERS.get(name, {name.replace("_", ".", 1)})
    return found


def test_every_declared_slash_command_is_handled_and_every_handled_one_declared():
    declared = {c["command"] for c in MANIFEST_DATA["features"]["slash_commands"]}
    assert declared == set(COMMANDS)


def test_every_declared_command_is_answered_by_the_running_bot_and_others_are_not(bot):
    for command in MANIFEST_DATA["features"]["slash_commands"]:
        body = bot.sender.command_body("help", "UOPERATOR1", "trigger-manifest").replace(
            b"command=%2Fmailfix", b"command=" + command["command"].replace("/", "%2F").encode()
        )
        answer = bot.sender.send(body)
        assert answer.status == 200 and "start [server]" in answer.body
    unknown = bot.sender.send(bot.sender.command_body("help", "UOPERATOR1", "t").replace(b"%2Fmailfix", b"%2Fother"))
    assert unknown.status == 404


def test_the_usage_hint_names_every_subcommand():
    hint = MANIFEST_DATA["features"]["slash_commands"][0]["usage_hint"]
    assert {word for word in re.findall(r"[a-z]+", hint) if word not in ("server", "id")} == set(VERBS)


def test_the_scopes_cover_every_web_api_method_the_bot_calls_and_no_more():
    called = web_api_methods_called()
    assert {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "users.lookupByEmail",
        "users.info",
        "conversations.open",
        "auth.test",
    } <= called
    unknown = called - set(METHOD_SCOPES)
    assert not unknown, f"add the scopes of {unknown} to METHOD_SCOPES (and app.yaml)"
    needed = {scope for method in called for scope in METHOD_SCOPES[method]} | {"commands"}
    assert set(MANIFEST_DATA["oauth_config"]["scopes"]["bot"]) == needed


def test_interactivity_and_requests_go_to_slack_events():
    settings = MANIFEST_DATA["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert all(c["url"].endswith("/slack/events") for c in MANIFEST_DATA["features"]["slash_commands"])
    assert settings["socket_mode_enabled"] is False and "Socket Mode" in MANIFEST.read_text()
