"""Approvals by button: only directors, four eyes, exactly once; then the DM with the new password."""

from __future__ import annotations

import json
import threading

from tests.slack.conftest import CHANNEL, VICTIM
from tests.slack.test_commands import buttons

OPERATOR, DIRECTOR, DIRECTOR2 = "UOPERATOR1", "UDIRECTOR1", "UDIRECTOR2"


def approve(bot, user, value=None, **kwargs):
    """Click "Approve cleanup" as `user`: the button as the message shows it now, or the `value` seen earlier."""
    ack, trigger = bot.sender.click(
        "approve_cleanup", user, value=value or bot.button_value("approve_cleanup"), **kwargs
    )
    assert ack.status == 200 and ack.seconds < 3
    return trigger


def test_a_non_director_is_told_only_the_director_can_approve_and_nothing_changes(bot):
    before = bot.start_incident()
    reply = bot.slack.wait_response(approve(bot, OPERATOR))
    assert "only the IT director can approve this" in reply["text"] and reply["response_type"] == "ephemeral"
    after = bot.incident()
    assert (after.state, after.version) == ("awaiting_approval", before.version)
    assert bot.mail().calls_to("change_password") == []


def test_the_director_who_opened_it_is_told_another_director_must_approve(bot):
    bot.start_incident(user=DIRECTOR)
    reply = bot.slack.wait_response(approve(bot, DIRECTOR))
    assert "another director must approve" in reply["text"]
    assert bot.incident().state == "awaiting_approval"


def test_a_director_approves_the_user_gets_the_password_by_dm_and_it_leaves_slack_once_saved(bot):
    bot.start_incident()
    approve(bot, DIRECTOR)
    bot.wait_incident(lambda i: any(r.step == "notify_user" and r.status == "done" for r in i.steps), "told the user")
    server = bot.mail()
    password = server.passwords["victim"]
    assert server.inbox["victim"] == 0 and all(m.login != "victim" for m in server.messages)
    assert len(server.calls_to("change_password")) == 1

    assert bot.slack.calls_to("users.lookupByEmail")[0].params["email"] == "victim@example.org"
    assert bot.slack.calls_to("conversations.open")[0].params["users"] == VICTIM
    dm = next(c for c in bot.slack.calls_to("chat.postMessage") if c.params["channel"].startswith("D"))
    shown = json.dumps(dm.params["blocks"])
    assert password in shown and "INBOX was emptied" in shown and "attachments" in shown
    assert password not in dm.params["text"]  # the fallback lands in push notifications
    assert "confirm_password" in shown

    dm_ts = dm_channel = None
    for run in bot.incident().steps:
        if run.step == "notify_user":
            dm_channel, dm_ts = run.summary["message_channel"], run.summary["message_ts"]
    ack, _ = bot.sender.click(
        "confirm_password", VICTIM, value="1::victim@example.org", channel=dm_channel, message_ts=dm_ts
    )
    assert ack.status == 200
    bot.slack.wait_call("chat.update", channel=dm_channel, ts=dm_ts)
    assert password not in json.dumps(bot.slack.message(dm_channel, dm_ts))
    assert bot.incident().password_ciphertext is None

    resolved = bot.wait_state("resolved")  # monitor_minutes = 0.02 in the test config
    assert resolved.checks and resolved.checks[-1].normal
    message = bot.slack.wait_for(
        lambda f: "resolved" in bot.incident_message()["text"] and bot.incident_message(), what="message shows resolved"
    )
    # Closed: only the directors' way back remains, the INBOX the cleanup archived.
    assert [b["action_id"] for b in buttons(message)] == ["restore_inbox"]
    assert "cleanup: approved by <@UDIRECTOR1>" in json.dumps(message["blocks"])
    everything = json.dumps([c.params for c in bot.slack.calls if c.params.get("channel") != dm_channel])
    assert password not in everything and password not in bot.log()


def test_a_user_not_in_slack_gets_the_password_through_the_operator(bot):
    bot.slack.users.clear()
    bot.start_incident()
    approve(bot, DIRECTOR2)
    note = bot.slack.wait_call("chat.postEphemeral", user=OPERATOR)
    password = bot.mail().passwords["victim"]
    assert note.params["channel"] == CHANNEL and password in json.dumps(note.params["blocks"])
    incident = bot.wait_incident(
        lambda i: any(r.step == "notify_user" and r.status == "done" for r in i.steps), "told the operator"
    )
    run = next(r for r in incident.steps if r.step == "notify_user")
    assert run.summary["via"] == "operator" and run.summary["note"] == "user not in Slack: tell them by phone"
    bot.slack.wait_for(
        lambda f: any("tell them by phone" in c.params.get("text", "") for c in f.calls_to("chat.postMessage")),
        what="the note in the thread",
    )

    _, trigger = bot.sender.click("confirm_password", OPERATOR, value="1::victim@example.org", ephemeral=True)
    reply = bot.slack.wait_response(trigger)
    assert reply["replace_original"] is True and "erased" in reply["text"]
    assert bot.incident().password_ciphertext is None


def test_a_double_click_approves_once_and_the_other_click_says_by_whom(bot):
    bot.start_incident()
    value = bot.button_value("approve_cleanup")
    clicks = [approve(bot, DIRECTOR, value), approve(bot, DIRECTOR, value)]
    # Both clicks run on worker threads: whichever comes second is told who approved.
    told = bot.slack.wait_for(lambda f: [t for t in clicks if f.responses_to(t)], what="one click told")
    bot.wait_state("monitoring")
    assert len(told) == 1
    assert "already approved by <@UDIRECTOR1> <!date^" in bot.slack.responses_to(told[0])[0]["text"]
    assert len(bot.mail().calls_to("change_password")) == 1


def test_a_retried_click_is_acked_and_runs_once(bot):
    bot.start_incident()
    value = bot.button_value("approve_cleanup")
    trigger = approve(bot, DIRECTOR, value)
    approve(bot, DIRECTOR, value, retry=1, trigger_id=trigger)
    bot.wait_state("monitoring")
    assert len(bot.mail().calls_to("change_password")) == 1
    assert bot.slack.responses_to(trigger) == []


def test_two_directors_clicking_at_once_make_one_approval(bot):
    bot.start_incident()
    triggers, barrier, value = {}, threading.Barrier(2), bot.button_value("approve_cleanup")

    def click(user):
        barrier.wait()
        triggers[user] = approve(bot, user, value)

    threads = [threading.Thread(target=click, args=(u,)) for u in (DIRECTOR, DIRECTOR2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loser = bot.slack.wait_for(
        lambda f: next((u for u, t in triggers.items() if f.responses_to(t)), None), what="the second director told"
    )
    winner = DIRECTOR2 if loser == DIRECTOR else DIRECTOR
    assert f"already approved by <@{winner}>" in bot.slack.responses_to(triggers[loser])[0]["text"]
    bot.wait_state("monitoring")
    approvals = [a for a in bot.incident().approvals if a.what == "cleanup"]
    assert [(a.decision, a.decided_by) for a in approvals] == [("approved", winner)]
    assert len(bot.mail().calls_to("change_password")) == 1
    assert bot.slack.responses_to(triggers[winner]) == []


def test_a_director_picks_another_account_from_the_select(bot):
    bot.start_incident()
    ack, _ = bot.sender.click("pick_account", DIRECTOR, selected=bot.option_value("pick_account", "alice"))
    assert ack.status == 200

    def contained_again(i):
        # The containment ran in the `containing` phase just before the one that awaits approval.
        done = {r.step for r in i.steps if r.phase == i.phase - 1 and r.status == "done"}
        return (
            i.state == "awaiting_approval" and i.suspect_address == "alice@example.org" and "record_containment" in done
        )

    incident = bot.wait_incident(contained_again, "switched to alice and contained it")
    assert "victim@example.org" in incident.rejected_accounts
    assert bot.mail().blocked == {"alice"}
    message = bot.slack.wait_for(  # the message of alice awaiting approval, not of her containment
        lambda f: "awaiting approval: suspect alice" in bot.incident_message()["text"] and bot.incident_message()
    )
    assert buttons(message)[0]["text"]["text"] == "Approve cleanup of alice@example.org"
