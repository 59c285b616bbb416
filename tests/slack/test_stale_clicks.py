"""Stale and forged clicks through signed Slack requests: each is refused with a message that says what it
was for and what the incident asks now, and nothing changes on the (fake) mail server."""

from __future__ import annotations

import json

import pytest

from bot.core import requests
from tests.clitools import write_config
from tests.fakes import FakeMailServer
from tests.slack.conftest import start_bot, stop_bot

OPERATOR, DIRECTOR, DIRECTOR2, STRANGER = "UOPERATOR1", "UDIRECTOR1", "UDIRECTOR2", "USTRANGER1"
SERVER_CHANGES = ("change_password", "delete", "purge_inbox", "block_login", "hold", "reboot", "restart")


@pytest.fixture
def bot(tmp_path, slack):
    """mailfix serve on a queue where victim floods most, bob less, and postmaster (protected) too."""
    fake = FakeMailServer(domain="example.org", state_file=tmp_path / "fake.json")
    fake.flood("victim", 300, forged=50, to_account=10)
    fake.flood("bob", 150)
    fake.flood("postmaster", 200)
    fake.flood("alice", 5)
    fake._save()
    running = start_bot(tmp_path, slack)
    try:
        yield running
    finally:
        stop_bot(running)


def changes(bot) -> list[tuple[str, str]]:
    return [c for c in bot.mail().calls if c[0] in SERVER_CHANGES]


def refused(bot, action_id, user, *, value=None, selected=None):
    """Click as `user`; return the ephemeral reply, after checking nothing changed on the incident or server."""
    before, server_before = bot.incident(), changes(bot)
    ack, trigger = bot.sender.click(action_id, user, value=value, selected=selected)
    assert ack.status == 200 and ack.seconds < 3
    reply = bot.slack.wait_response(trigger)
    assert reply["response_type"] == "ephemeral"
    after = bot.incident()
    assert (after.state, after.version, after.suspect_address) == (before.state, before.version, before.suspect_address)
    assert changes(bot) == server_before
    return reply["text"]


def move_on_to_bob(bot):
    """A director says "Not this account" on victim; the incident moves on to bob and awaits approval again."""
    bot.click_button("not_this_account", DIRECTOR)
    return bot.wait_incident(
        lambda i: i.state == "awaiting_approval" and i.suspect_address == "bob@example.org" and i.contained_at,
        "moved on to bob",
    )


def test_an_old_approve_click_after_not_this_account_is_refused_and_says_what_the_incident_asks_now(bot):
    bot.start_incident()
    old_approve = bot.button_value("approve_cleanup")
    move_on_to_bob(bot)
    text = refused(bot, "approve_cleanup", DIRECTOR2, value=old_approve)
    assert "this was about the cleanup of victim@example.org" in text
    assert "the incident now asks about the cleanup of bob@example.org" in text
    assert bot.mail().calls_to("change_password") == []


def test_an_old_not_this_account_or_pick_after_the_incident_moved_on_is_refused(bot):
    bot.start_incident()
    old_reject = bot.button_value("not_this_account")
    old_pick = bot.option_value("pick_account", "alice")
    move_on_to_bob(bot)
    assert "the cleanup of victim@example.org" in refused(bot, "not_this_account", DIRECTOR2, value=old_reject)
    assert "the cleanup of victim@example.org" in refused(bot, "pick_account", DIRECTOR2, selected=old_pick)
    assert bot.incident().rejected_accounts == ["victim@example.org"]


def test_a_cleanup_click_while_a_reboot_is_pending_never_approves_the_reboot(bot):
    bot.start_incident()
    old_approve = bot.button_value("approve_cleanup")
    bot.click_button("approve_cleanup", DIRECTOR2)
    # bob keeps flooding: the monitoring escalates to a restart, then to a reboot approval.
    bot.wait_state("awaiting_reboot_approval", timeout=60)
    # The old click answers the cleanup approval, decided long ago: it says so and approves nothing else.
    assert "already approved by <@UDIRECTOR2>" in refused(bot, "approve_cleanup", DIRECTOR2, value=old_approve)
    # A cleanup click forged with the pending reboot request's id is still a cleanup click.
    reboot = bot.incident().approvals[-1]
    forged = requests.encode(1, approval_id=reboot.id, account="victim@example.org")
    assert "already approved by <@UDIRECTOR2>" in refused(bot, "approve_cleanup", DIRECTOR, value=forged)
    assert bot.mail().calls_to("reboot") == [] and bot.incident().state == "awaiting_reboot_approval"


@pytest.mark.parametrize(
    ("pick", "reason"),
    [
        ("root", "protected"),
        ("postmaster", "protected"),
        ("admin@gmail.com", "not an account of example.org"),
        ("carol", "mailfix did not offer this account"),
    ],
)
def test_a_forged_pick_is_refused_with_the_reason(bot, pick, reason):
    bot.start_incident()
    incident = bot.incident()
    approval = incident.approvals[-1]
    forged = requests.encode(incident.id, approval_id=approval.id, account="victim@example.org", pick=pick)
    assert reason in refused(bot, "pick_account", DIRECTOR, selected=forged)
    assert bot.mail().blocked == {"victim"}


def test_a_value_mailfix_never_wrote_is_refused_and_changes_nothing(bot):
    bot.start_incident()
    cases = {
        "1": "not one mailfix wrote",  # no approval id, no account: an approval must say what it approves
        "1:root": "not an approval number",
        "²": "not an incident number",
        "1" * 30: "not an incident number",
        "1:1:victim@example.org:x:y": "not one mailfix wrote",
        json.dumps({"id": 1}): "not an incident number",
    }
    for value, reason in cases.items():
        assert reason in refused(bot, "approve_cleanup", DIRECTOR2, value=value)
    assert bot.mail().calls_to("change_password") == []


def test_the_select_offers_neither_protected_nor_foreign_accounts(bot):
    bot.start_incident()
    bot.option_value("pick_account", "bob")  # waits until the message shows the select
    message = bot.incident_message()
    options = [o["text"]["text"].split(" ")[0] for b in message["blocks"] for e in b.get("elements", [])
               for o in e.get("options", [])]  # fmt: skip
    assert "bob" in options and "alice" in options
    assert not [o for o in options if o in ("postmaster", "root") or "spam.example" in o or o.startswith("postmaster@")]


def test_status_list_and_report_are_refused_to_people_without_a_role(bot):
    bot.start_incident()
    for command in ("status", "status 1", "list", "report 1"):
        _, trigger = bot.sender.command(command, STRANGER)
        reply = bot.slack.wait_response(trigger)
        assert "only operators, directors and readers" in reply["text"] and reply["response_type"] == "ephemeral"
        assert "victim" not in reply["text"]


def test_an_old_approve_click_after_a_pick_is_refused(bot):
    bot.start_incident()
    old_approve = bot.button_value("approve_cleanup")
    bot.sender.click("pick_account", DIRECTOR, selected=bot.option_value("pick_account", "bob"))
    bot.wait_incident(
        lambda i: i.state == "awaiting_approval" and i.suspect_address == "bob@example.org" and i.contained_at,
        "switched to bob",
    )
    text = refused(bot, "approve_cleanup", DIRECTOR2, value=old_approve)
    assert "the cleanup of victim@example.org" in text and "now asks about the cleanup of bob@example.org" in text
    assert bot.mail().calls_to("change_password") == []


def test_only_the_user_the_dm_went_to_can_confirm_the_password(tmp_path, slack):
    config_dir = tmp_path / "long"
    config_dir.mkdir()
    config = write_config(config_dir, monitor_minutes=60)  # the incident stays open while we click
    running = start_bot(tmp_path, slack, MAILFIX_CONFIG=str(config))
    try:
        running.start_incident()
        running.click_button("approve_cleanup", DIRECTOR2)
        running.wait_incident(lambda i: any(r.step == "notify_user" and r.status == "done" for r in i.steps), "told")
        value = requests.encode(1, account="victim@example.org")
        for clicker in (STRANGER, OPERATOR):
            _, trigger = running.sender.click("confirm_password", clicker, value=value, channel="DVICTIM01")
            assert "only the person who received it" in running.slack.wait_response(trigger)["text"]
        assert running.incident().password_ciphertext is not None
        running.sender.click("confirm_password", "UVICTIM01", value=value, channel="DVICTIM01")
        running.wait_incident(lambda i: i.password_ciphertext is None, "erased the password once the user confirmed")
    finally:
        stop_bot(running)


def test_the_directors_are_mentioned_in_the_thread_when_an_approval_is_requested(bot):
    bot.start_incident()
    asked = bot.slack.wait_for(
        lambda f: [c for c in f.calls_to("chat.postMessage") if "please decide on" in c.params.get("text", "")],
        what="the approval request in the thread",
    )
    text = asked[0].params["text"]
    assert asked[0].params.get("thread_ts") and "<@UDIRECTOR1>" in text and "<@UDIRECTOR2>" in text
    assert "the cleanup of victim@example.org" in text
