"""The team's language for the channel, the user's own Slack language for their DM (signed requests, fake Slack)."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from scripts import catalogs
from tests.clitools import write_config
from tests.slack.conftest import VICTIM, start_bot, stop_bot
from tests.slack.fake_slack import FakeSlack, Fault

OPERATOR, DIRECTOR = "UOPERATOR1", "UDIRECTOR1"


def texts(value: Any) -> list[str]:
    """Every string in a Slack call's parameters (text, blocks, dialogs), as people would read it."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def english_left_in(shown: str) -> list[str]:
    """The English phrases of translated messages found in `shown`: the text of a message the Spanish catalog
    translates (a literal run of 12 characters or more, between its fields) that its Spanish does not contain."""
    spanish = catalogs.read("es_MX")
    found = set()
    for message in spanish:
        if not message.id or not isinstance(message.id, str) or message.string == message.id:
            continue
        for literal, *_rest in string.Formatter().parse(message.id):
            for phrase in (p.strip() for p in literal.split("\n")):
                if len(phrase) >= 12 and phrase not in str(message.string) and phrase in shown:
                    found.add(phrase)
    return sorted(found)


def channel_posts(slack: FakeSlack) -> str:
    """What the incident channel and its people were shown: posts, updates, ephemerals and command answers."""
    shown = [
        t
        for c in slack.calls
        if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "respond")
        and not str(c.params.get("channel", "")).startswith("D")
        for t in texts(c.params)
    ]
    return "\n".join(shown)


def dm(slack: FakeSlack) -> str:
    posted = next(c for c in slack.calls_to("chat.postMessage") if str(c.params["channel"]).startswith("D"))
    return "\n".join(texts(posted.params))


def run_to_the_dm(tmp_path: Path, slack: FakeSlack, language: str):
    config = tmp_path / "conf"
    config.mkdir()
    bot = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(write_config(config, extra=f'language = "{language}"')))
    try:
        bot.start_incident()
        bot.click_button("approve_cleanup", DIRECTOR)
        bot.wait_incident(lambda i: any(r.step == "notify_user" and r.status == "done" for r in i.steps), "the DM")
        bot.wait_state("monitoring")
        return bot, channel_posts(slack), dm(slack)
    finally:
        stop_bot(bot)


def test_a_spanish_team_reads_spanish_in_the_channel_and_an_english_user_gets_an_english_dm(tmp_path, slack):
    slack.locales[VICTIM] = "en-US"
    bot, channel, to_user = run_to_the_dm(tmp_path, slack, "es-MX")
    assert "Incidente #1" in channel and "Aprobar" in channel
    assert english_left_in(channel) == []
    assert "Your new password" in to_user and "Tu nueva contraseña" not in to_user
    (asked,) = slack.calls_to("users.info")
    assert asked.params["user"] == VICTIM and str(asked.params["include_locale"]).lower() in ("true", "1")


def test_an_english_team_sends_the_dm_in_the_users_own_spanish(tmp_path, slack):
    slack.locales[VICTIM] = "es-LA"  # Slack's Latin American Spanish
    bot, channel, to_user = run_to_the_dm(tmp_path, slack, "en")
    assert "Tu nueva contraseña" in to_user and "Your new password" not in to_user
    assert "Incident #1" in channel and "Incidente" not in channel


def test_when_slack_does_not_say_the_users_language_the_dm_goes_in_the_teams(tmp_path, slack):
    slack.locales[VICTIM] = "en-US"
    slack.fail("users.info", *[Fault(status=500)] * 5)
    bot, channel, to_user = run_to_the_dm(tmp_path, slack, "es-MX")
    assert "Tu nueva contraseña" in to_user  # delivered all the same, in the team's Spanish
    assert slack.calls_to("users.info")


def test_the_english_detector_finds_an_untranslated_message():
    """english_left_in would miss nothing: an English text of a translated message is found."""
    shown = "Incidente #1\nSomeone used your mail account *x* to send a flood of spam, so IT stopped it:"
    found = english_left_in(shown)
    assert found == ["* to send a flood of spam, so IT stopped it:", "Someone used your mail account *"]
    assert english_left_in("Incidente #1\nAlguien usó tu cuenta de correo *x*") == []
