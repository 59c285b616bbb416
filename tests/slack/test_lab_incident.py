"""A whole incident driven from Slack against the real mail-server lab (sshd, Postfix, Dovecot on loopback)."""

from __future__ import annotations

import imaplib
import json
import re

import pytest

from tests.clitools import write_server_config
from tests.conftest import DIRECTOR, OPERATOR
from tests.integration.flood import flood, queue_entries
from tests.slack.conftest import VICTIM, start_bot, stop_bot
from tests.slack.test_commands import buttons

pytestmark = pytest.mark.integration


def test_a_full_incident_from_slack_against_the_lab(clean_lab, slack, tmp_path):
    report = flood(clean_lab, count=600, forged_fraction=0.3, legit=30, bounces=10, inbox=5)
    slack.users["victim@lab.test"] = VICTIM
    config = write_server_config(
        tmp_path,
        clean_lab.server_config(),
        settings="flood_threshold = 100\nnormal_queue_size = 200\nmonitor_minutes = 0.05\ncheck_interval_seconds = 0.5",
        name="lab.toml",
    )
    bot = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(config), MAILFIX_MAILSERVER="bot.mail.postfix:connect")
    try:
        ack, _ = bot.sender.command("start lab", OPERATOR)
        assert ack.status == 200 and ack.seconds < 3
        incident = bot.wait_contained()
        assert incident.suspect_address == "victim@lab.test"
        message = bot.slack.wait_for(
            lambda f: (
                "awaiting approval: suspect victim@lab.test" in bot.incident_message()["text"]
                and bot.incident_message()
            ),
            what="the contained incident posted, awaiting approval",
        )
        assert f"{report.from_login} queued from it" in json.dumps(message["blocks"])
        assert buttons(message)[0]["text"]["text"] == "Approve cleanup of victim@lab.test"
        assert not any(
            e.get("sender") == "victim@lab.test" and e["queue_name"] != "hold" for e in queue_entries(clean_lab)
        )  # contained: held, not sent

        _, refused = bot.click_button("approve_cleanup", OPERATOR)
        assert "only the IT director can approve this" in bot.slack.wait_response(refused)["text"]
        bot.click_button("approve_cleanup", DIRECTOR)
        incident = bot.wait_incident(
            lambda i: any(r.step == "notify_user" and r.status == "done" for r in i.steps), "told the user", timeout=120
        )
        assert not any(e.get("sender") == "victim@lab.test" for e in queue_entries(clean_lab))
        assert clean_lab.inbox_count("victim") == 0

        dm = next(c for c in bot.slack.calls_to("chat.postMessage") if c.params["channel"].startswith("D"))
        password = re.search(r"new password:\* `([^`]+)`", json.dumps(dm.params["blocks"])).group(1)
        with imaplib.IMAP4(clean_lab.host, clean_lab.imap_port) as imap:
            assert imap.login("victim", password)[0] == "OK"  # the password in the DM is the one set

        run = next(r for r in incident.steps if r.step == "notify_user")
        bot.sender.click(
            "confirm_password",
            VICTIM,
            value="1::victim@lab.test",
            channel=run.summary["message_channel"],
            message_ts=run.summary["message_ts"],
        )
        bot.slack.wait_call("chat.update", channel=run.summary["message_channel"], ts=run.summary["message_ts"])
        assert password not in json.dumps(bot.slack.message(run.summary["message_channel"], run.summary["message_ts"]))
        bot.wait_incident(lambda i: i.password_ciphertext is None, "erased the password")

        resolved = bot.wait_state("resolved", timeout=60)
        assert resolved.checks and resolved.checks[-1].normal
        assert password not in bot.log()
    finally:
        stop_bot(bot)
