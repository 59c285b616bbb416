"""What the incident's channel and thread say at 3 a.m., through signed requests and the fake Slack: the
directors pinged, exact figures, one reply per change of verdict, people and times as Slack shows them, and
the full report as a file."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.core import diagnosis as diagnosis_codec
from bot.core.report import report_markdown
from handlers import blocks, incident_blocks
from handlers.commands import report_title
from tests.clitools import write_config
from tests.conftest import DIRECTOR, DIRECTOR2
from tests.slack.conftest import CHANNEL, start_bot, stop_bot
from tests.slack.test_blocks import NOW, make_diagnosis, make_incident

OPERATOR = "UOPERATOR1"
# The fake mail server's flood (tests.clitools.fake_env): 300 sent as the login victim, 250 of them from
# victim@example.org (50 forged senders), and 10 bounces to it: 310 distinct messages, not 250 + 300 + 10.
DISTINCT = 310


def thread_texts(bot) -> list[str]:
    """Return the distinct replies in the incident's thread, in order (a retried post is one reply)."""
    ts = bot.incident().slack_ts
    posted = [
        c.params.get("text", "") for c in bot.slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts
    ]
    return list(dict.fromkeys(posted))


def wait_reply(bot, words: str) -> str:
    """Return the first thread reply containing `words`, once posted (replies go out in the background)."""
    return bot.slack.wait_for(
        lambda f: next((t for t in thread_texts(bot) if words in t), None), what=f"a reply with {words!r}"
    )


def confirm_text(message: dict, action_id: str) -> str:
    for block in message.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element["confirm"]["text"]["text"]
    raise AssertionError(f"no {action_id} button")


# -- approvers are told ----------------------------------------------------------------------


def test_the_directors_are_pinged_when_asked_and_once_more_on_the_reminder(tmp_path: Path, slack) -> None:
    (tmp_path / "cfg").mkdir()
    config = write_config(tmp_path / "cfg", extra="approval_timeout_minutes = 0.1")  # reminder after 3 s
    bot = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(config))
    try:
        bot.start_incident()
        bot.wait_incident(lambda i: i.approvals and i.approvals[-1].decision == "expired", "expired", timeout=30)
        asked = [t for t in thread_texts(bot) if "please decide on" in t]
        reminders = [t for t in thread_texts(bot) if "Reminder" in t]
        assert len(asked) == 1 and len(reminders) == 1
        for text in asked + reminders:  # mentions at the start, unescaped: Slack notifies both directors
            assert text.split(" ", 1)[1].startswith(f"<@{DIRECTOR}> <@{DIRECTOR2}> "), text
        assert "the cleanup of victim@example.org" in reminders[0] and "<!date^" in reminders[0]
    finally:
        stop_bot(bot)


def test_queue_data_cannot_forge_a_director_mention_in_the_thread() -> None:
    forged = f':warning: check: not normal: sender "<@{DIRECTOR}>"@spam.example has 900 queued'
    text = blocks.thread_text(forged, {DIRECTOR})
    assert f"<@{DIRECTOR}>" not in text and f"&lt;@{DIRECTOR}&gt;" in text
    # Only mailfix's own leading mentions, and only of directors, stay mentions.
    assert blocks.thread_text(f":sos: <@{DIRECTOR}> help", {DIRECTOR}).startswith(f":sos: <@{DIRECTOR}> help")
    assert "<@UOTHER01>" not in blocks.thread_text(":sos: <@UOTHER01> help", {DIRECTOR})


# -- figures exact ---------------------------------------------------------------------------


def test_every_count_before_the_cleanup_is_of_distinct_messages_and_the_thread_says_what_was_deleted(bot) -> None:
    bot.start_incident()
    bot.button_value("approve_cleanup")
    message = bot.incident_message()
    assert f"deletes the {DISTINCT} queued messages" in confirm_text(message, "approve_cleanup")
    assert f"{DISTINCT} distinct queued messages in all" in json.dumps(message["blocks"])
    asked = wait_reply(bot, "please decide on")
    assert f"which deletes {DISTINCT} queued messages" in asked

    bot.click_button("approve_cleanup", DIRECTOR)
    bot.wait_state("resolved")
    wait_reply(bot, "(to victim@example.org)")  # the last of the three deletions
    deleted = [t for t in thread_texts(bot) if t.startswith("Deleted ")]
    assert len(deleted) == 3 and sum(int(t.split()[1]) for t in deleted) == DISTINCT
    shown = bot.slack.wait_for(
        lambda f: "The cleanup deleted" in json.dumps(bot.incident_message()) and json.dumps(bot.incident_message()),
        what="the deleted count on the message",
    )
    assert f"The cleanup deleted {DISTINCT} queued messages" in shown


def test_a_diagnosis_stored_before_the_distinct_count_shows_no_figure_rather_than_a_wrong_one() -> None:
    stored = diagnosis_codec.to_json(make_diagnosis())
    del stored["suspect"]["queued_total"]  # as incidents diagnosed by an older mailfix have it
    incident = make_incident(diagnosis=diagnosis_codec.from_json(stored))
    assert diagnosis_codec.of(incident).suspect.queued_total is None  # type: ignore[union-attr]
    message = incident_blocks.incident_message(incident, now=NOW)
    text = confirm_text({"blocks": message.blocks}, "approve_cleanup")
    assert "deletes the queued messages from it, to it or sent by its login" in text
    assert not any(ch.isdigit() for ch in text)


# -- noise -----------------------------------------------------------------------------------


def test_monitoring_replies_once_per_verdict_and_the_message_keeps_the_trend(bot) -> None:
    bot.start_incident()
    bot.click_button("approve_cleanup", DIRECTOR)
    resolved = bot.wait_state("resolved")
    assert len(resolved.checks) >= 3 and all(c.normal for c in resolved.checks)
    shown = bot.slack.wait_for(
        lambda f: (
            "is resolved" in bot.incident_message()["text"] and json.dumps(bot.incident_message(), ensure_ascii=False)
        ),
        what="the message resolved",
    )
    assert re.search(r"queue 5( → 5){2,4}, steady", shown) and "*Last check*" in shown
    replies = [t for t in thread_texts(bot) if "check:" in t]
    assert replies == [":white_check_mark: check: normal (queue 5)"]


# -- people, not IDs -------------------------------------------------------------------------


def test_people_are_mentions_and_times_are_slack_dates(bot) -> None:
    incident = bot.start_incident()
    value = bot.button_value("approve_cleanup")
    shown = json.dumps(bot.incident_message())
    opened = int(incident.opened_at.timestamp())
    assert f"<@{OPERATOR}> <!date^{opened}^{{date_short_pretty}} {{time}}|" in shown
    assert "requested by mailfix <!date^" in shown and "(expires <!date^" in shown
    asked = wait_reply(bot, "please decide on")
    assert "(until <!date^" in asked and " UTC>)" in asked

    first = bot.sender.click("approve_cleanup", DIRECTOR, value=value)[1]
    bot.wait_state("monitoring")
    again = bot.sender.click("approve_cleanup", DIRECTOR2, value=value)[1]
    told = bot.slack.wait_response(again)["text"]
    approved = bot.incident().approvals[-1]
    at = int(approved.decided_at.timestamp())
    assert f"already approved by <@{DIRECTOR}> <!date^{at}^{{date_short_pretty}} {{time}}|" in told
    assert bot.slack.responses_to(first) == []


def test_a_slack_date_falls_back_to_utc_text() -> None:
    at = datetime(2026, 12, 1, 0, 3, tzinfo=UTC)
    assert blocks.when(at) == "<!date^1796083380^{date_short_pretty} {time}|2026-12-01 00:03 UTC>"
    assert blocks.when(at.replace(tzinfo=None)) == blocks.when(at)  # a naive time from the database is UTC
    assert blocks.person("mailfix") == "mailfix" and blocks.person("<!channel>") == "&lt;!channel&gt;"
    stamped = blocks.thread_text("expires 2026-12-01 00:03 UTC.", set())
    assert stamped == f"expires {blocks.when(at)}."
    assert blocks.when(at + timedelta(seconds=5), seconds=True).endswith("|2026-12-01 00:03:05 UTC>")


# -- confirm before containing ---------------------------------------------------------------


def test_start_incident_from_an_alert_asks_before_it_holds_mail_and_blocks_a_login(tmp_path: Path, slack) -> None:
    (tmp_path / "cfg").mkdir()
    config = write_config(tmp_path / "cfg", extra="watch_interval_seconds = 0.3")
    bot = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(config))
    try:
        alert = slack.wait_for(
            lambda f: next((c for c in f.calls_to("chat.postMessage") if "Flood on mail1" in c.params["text"]), None),
            what="the flood alert",
        )
        start = next(
            e for b in alert.params["blocks"] for e in b.get("elements", []) if e.get("action_id") == "start_incident"
        )
        asked = start["confirm"]
        assert asked["title"]["text"] == "Start an incident on mail1?" and asked["confirm"]["text"] == "Start"
        assert "holds the suspect's queued mail, blocks its login" in asked["text"]["text"]
        assert bot.repo.list_incidents() == [] and bot.mail().calls_to("hold") == []  # nothing until confirmed
    finally:
        stop_bot(bot)


# -- long output -----------------------------------------------------------------------------


def test_the_whole_report_is_shared_as_a_file_in_the_thread_with_its_summary(bot) -> None:
    incident = bot.start_incident()
    for n in range(150):  # a long incident: its report is far over one message's 3,900 characters
        bot.repo.audit(incident_id=incident.id, actor=OPERATOR, action="note", now=datetime.now(UTC), n=n)
    _, trigger = bot.sender.command("report 1", OPERATOR)
    reply = bot.slack.wait_response(trigger)
    assert "Report of incident #1 on mail1" in reply["text"] and "is in the incident's thread" in reply["text"]
    done = bot.slack.wait_call("files.completeUploadExternal")
    assert done.params["channel_id"] == CHANNEL and done.params["thread_ts"] == bot.incident().slack_ts
    assert f"<@{OPERATOR}>" in done.params["initial_comment"]
    full = bot.slack.uploaded(report_title(1))
    expected = report_markdown(bot.incident(), bot.repo.audit_events(incident_id=1))
    assert len(full) > blocks.MAX_RESPONSE_TEXT and full == expected
    assert "step hold_from: done" in full and full.count("| note |") == 150
