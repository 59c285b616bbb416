"""A busy or broken Slack (429 with Retry-After, 500s, answers that never come): the incident goes on, its
message ends showing its final state, and its thread holds every reply once, in order; a DM is sent once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError

from bot.config import Secrets
from bot.core.mailserver import Account, Password
from handlers import retries
from handlers.app import slack_client
from handlers.incident_blocks import incident_message
from handlers.notifier import INCIDENT_EVENT, REPLY_EVENT, SlackDeliveryFailed, SlackNotifier
from storage.db import make_engine, upgrade
from storage.outbox import Outbox
from storage.repository import Repository
from tests.conftest import make_config
from tests.slack.conftest import BOT_TOKEN, CHANNEL, VICTIM
from tests.slack.fake_slack import FakeSlack, Fault

DIRECTOR = "UDIRECTOR1"
LATE = retries.TIMEOUT + 1.5  # an answer this late is never waited for: the call's outcome is unknown
ROOT = Path(__file__).resolve().parents[2]


def client_for(slack: FakeSlack, timeout: int = 1):
    """The bot's own Web API client (its retry handlers), aimed at the fake, with a short timeout for speed."""
    client = slack_client(Secrets(slack_bot_token=BOT_TOKEN, slack_api_url=f"{slack.url}/api/"))
    client.timeout = timeout
    return client


def tagged(messages, event):
    return [m for m in messages if (m.get("metadata") or {}).get("event_type") == event]


def test_an_incident_runs_to_the_end_through_429s_500s_and_timeouts_and_slack_ends_up_right(bot):
    slack = bot.slack
    faults = (Fault(429, retry_after=1), Fault(500), Fault(500), Fault(500), Fault(delay=LATE))
    slack.fail("chat.postMessage", *faults)  # the incident message's first post meets them
    slack.fail("chat.update", *faults)
    bot.sender.command("start", "UOPERATOR1")
    bot.wait_incident(lambda i: i.state == "awaiting_approval", "awaited approval", timeout=90)
    slack.wait_for(lambda f: not f.faults["chat.postMessage"] and not f.faults["chat.update"], 90, "faults used up")
    outbox = Outbox(bot.repo)
    slack.wait_for(lambda f: not outbox.behind() and not outbox.with_pending_replies(), 60, "Slack caught up")
    # Now the thread exists: the replies of the cleanup meet the same faults.
    slack.fail("chat.postMessage", Fault(429, retry_after=1), Fault(500), Fault(delay=LATE))
    bot.click_button("approve_cleanup", DIRECTOR)
    incident = bot.wait_state("resolved", timeout=120)
    slack.wait_for(lambda f: not outbox.with_pending_replies() and not outbox.behind(), 60, "Slack caught up")
    incident = bot.incident()
    # The channel shows one message for the incident, in its final state.
    channel_messages = [dict(m, ts=ts) for (where, ts), m in slack.messages.items() if where == CHANNEL]
    posted = tagged(channel_messages, INCIDENT_EVENT)
    assert [m["ts"] for m in posted] == [incident.slack_ts]
    shown = slack.message(CHANNEL, incident.slack_ts)["blocks"][0]["text"]["text"]
    final = incident_message(incident, now=datetime.now(UTC)).blocks[0]["text"]["text"]
    assert shown == final and "resolved" in final
    # Every reply once, in the order the runbook logged them.
    replies = outbox.replies(incident_id=1)
    thread = slack.thread(CHANNEL, incident.slack_ts)
    assert [m["text"] for m in thread] == [r.text for r in replies]
    assert [m["metadata"]["event_payload"]["reply_id"] for m in tagged(thread, REPLY_EVENT)] == [r.id for r in replies]
    assert all(r.slack_ts and r.error is None for r in replies)
    texts = "\n".join(r.text for r in replies)
    assert "Suspect victim@example.org" in texts and "Changed the password" in texts
    # The faults did happen, on both methods, and unknown outcomes were looked up rather than re-posted.
    for method in ("chat.postMessage", "chat.update"):
        assert {c.fault for c in slack.calls_to(method)} >= {"429", "500", ""}
    assert slack.calls_to("conversations.history") and slack.calls_to("conversations.replies")
    dms = [where for (where, _) in slack.messages if where.startswith("D")]
    assert dms == ["D" + VICTIM.removeprefix("U")]  # one DM, to the user (its password withdrawn at the end)


def test_only_calls_that_are_harmless_twice_are_repeated_and_a_long_retry_after_is_not_waited_for(slack):
    client = client_for(slack)
    slack.messages[(CHANNEL, "1.000001")] = {"text": "old"}
    slack.fail("chat.update", Fault(500), Fault(delay=2))
    client.chat_update(channel=CHANNEL, ts="1.000001", text="new")  # 500, timeout, then served
    assert slack.message(CHANNEL, "1.000001")["text"] == "new" and len(slack.calls_to("chat.update")) == 3

    slack.fail("chat.postMessage", Fault(500))
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL, text="once")
    assert len(slack.calls_to("chat.postMessage")) == 1  # not repeated: Slack may have posted it

    slack.fail("chat.postMessage", Fault(429, retry_after=1))
    began = time.monotonic()
    client.chat_postMessage(channel=CHANNEL, text="after the wait")  # 429: Slack did nothing, so repeated
    assert time.monotonic() - began >= 1 and len(slack.calls_to("chat.postMessage")) == 3

    slack.fail("chat.postMessage", Fault(429, retry_after=retries.MAX_RETRY_AFTER + 30))
    began = time.monotonic()
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL, text="not now")
    assert time.monotonic() - began < 2


def test_a_dm_whose_answer_was_lost_is_found_not_sent_again(tmp_path, repo, slack):
    notifier = SlackNotifier(client_for(slack), make_config(tmp_path), Outbox(repo))
    incident = repo.open_incident(server="mail1", opened_by="UOPERATOR1", state="cleaning_up", now=datetime.now(UTC))
    account = Account("victim@example.org", "victim")
    slack.fail("chat.postMessage", Fault(delay=2))  # Slack posts the DM; its answer comes too late
    with pytest.raises(SlackDeliveryFailed, match="TimeoutError"):
        notifier.deliver_password(incident, account, Password("s3cret-Pass-0123456789-abc"))
    # The step, run again (a retry, or a restart after a crash between posting and recording it):
    delivery = notifier.deliver_password(incident, account, Password("s3cret-Pass-0123456789-abc"))
    dms = [(key, m) for key, m in slack.messages.items() if key[0].startswith("D")]
    assert len(dms) == 1 and delivery.ref is not None and (delivery.ref.channel, delivery.ref.ts) == dms[0][0]
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_a_flood_alert_whose_answer_was_lost_is_found_not_posted_again(tmp_path, repo, slack):
    notifier = SlackNotifier(client_for(slack), make_config(tmp_path), Outbox(repo))
    alert = repo.open_alert(
        server="mail1", kind="flood", account="victim@example.org", now=datetime.now(UTC), details={"count": 900}
    )
    slack.fail("chat.postMessage", Fault(delay=2))  # Slack posts the alert; its answer comes too late
    with pytest.raises(TimeoutError):
        notifier.alert_raised(alert)
    ref = notifier.alert_raised(alert)  # the next poll (this replica or another) tells it again
    posted = tagged([dict(m, ts=ts) for (where, ts), m in slack.messages.items() if where == CHANNEL], "mailfix_alert")
    assert [m["ts"] for m in posted] == [ref.ts] and len(slack.calls_to("chat.postMessage")) == 1


POSTER = """
import json, sys, time
from datetime import datetime, UTC
from bot.config import Secrets
from handlers.app import slack_client
from handlers.notifier import SlackNotifier
from storage.db import make_engine
from storage.outbox import Outbox
from storage.repository import Repository
from tests.conftest import make_config

url, api, out = sys.argv[1], sys.argv[2], __import__("pathlib").Path(sys.argv[3])
client = slack_client(Secrets(slack_bot_token="xoxb-test-token", slack_api_url=api))
posts = []
post = client.chat_postMessage
def recording(**kwargs):
    began = time.time()
    answer = post(**kwargs)
    posts.append([kwargs["metadata"]["event_payload"]["reply_id"], began, time.time()])
    return answer
client.chat_postMessage = recording
notifier = SlackNotifier(client, make_config(out.parent), Outbox(Repository(make_engine(url))))
out.with_suffix(".ready").touch()  # both start together, however long each took to load
while len(list(out.parent.glob("*.ready"))) < 2:
    time.sleep(0.01)
while notifier.outbox.with_pending_replies():
    notifier.catch_up()
out.write_text(json.dumps(posts))
"""


def test_two_processes_draining_one_outbox_post_each_reply_once_in_order(tmp_path, database_url, slack):
    upgrade(database_url)
    repo = Repository(make_engine(database_url))
    outbox = Outbox(repo)
    incident = repo.open_incident(server="mail1", opened_by="UOPERATOR1", state="monitoring", now=datetime.now(UTC))
    repo.set_fields(incident_id=incident.id, slack_channel=CHANNEL, slack_ts="1699999999.000001")
    ids = [outbox.add_reply(incident_id=incident.id, text=f"step {n}", now=datetime.now(UTC)) for n in range(60)]
    slack.fail("chat.postMessage", *[Fault(delay=0.02)] * 60)  # Slack at a realistic pace: time to interleave
    outs = [tmp_path / f"posts-{n}.json" for n in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-c", POSTER, database_url, f"{slack.url}/api/", str(out)], cwd=ROOT)
        for out in outs
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    posts = [json.loads(out.read_text()) for out in outs]
    # Both posted, at the same time: the claims, not turns, kept them apart.
    assert all(posts)
    (first_a, last_a), (first_b, last_b) = ((min(p[1] for p in ps), max(p[2] for p in ps)) for ps in posts)
    assert first_a < last_b and first_b < last_a
    thread = slack.thread(CHANNEL, "1699999999.000001")
    assert [m["metadata"]["event_payload"]["reply_id"] for m in thread] == ids
    assert [m["text"] for m in thread] == [f"step {n}" for n in range(60)]
    assert sorted(p[0] for ps in posts for p in ps) == ids
    repo.engine.dispose()
