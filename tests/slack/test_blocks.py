"""The incident message in every state: within Slack's limits, the right buttons, nothing unescaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core import diagnosis as diagnosis_codec
from bot.core import requests
from bot.core.mailserver import Account, Diagnosis, QueueSnapshot, Ranked, Suspect
from bot.core.table import Event, State
from handlers import blocks, incident_blocks, password_blocks
from handlers.actions import HANDLERS
from handlers.commands import parse_command
from handlers.ids import ActionId
from storage.models import Approval, Check, Incident

NOW = datetime(2026, 11, 27, 3, 10, tzinfo=UTC)
BUTTONS_BY_STATE = {
    State.AWAITING_APPROVAL: ["approve_cleanup", "not_this_account", "pick_account", "abort"],
    State.AWAITING_REBOOT_APPROVAL: ["approve_reboot", "abort"],
    State.FAILED: ["retry_step", "abort"],
    State.MONITORING: ["resolve_now", "abort"],
    State.RESOLVED: [],
    State.ABORTED: [],
    State.DIAGNOSING: ["abort"],
}


def make_diagnosis(
    address: str = "victim@example.org",
    subjects: tuple[str, ...] = ("<!channel> Cheap pills & more", "<https://evil.example|your bank>"),
    senders: tuple[Ranked, ...] = (
        Ranked("victim@example.org", 250),
        Ranked("MAILER-DAEMON", 10),
        Ranked("bob@example.org", 7),
    ),
) -> Diagnosis:
    snapshot = QueueSnapshot(
        total=420, top_senders=senders, top_sasl_logins=(Ranked("victim", 300), Ranked("alice", 5))
    )
    return Diagnosis(snapshot, Suspect(Account(address, address.split("@")[0]), 250, 10, 300, subjects))


def make_incident(state: State = State.AWAITING_APPROVAL, diagnosis: Diagnosis | None = None, **fields) -> Incident:
    diagnosis = diagnosis or make_diagnosis()
    values = dict(
        id=7,
        server="mail1",
        state=state,
        version=3,
        phase=2,
        opened_by="UOPERATOR1",
        opened_at=NOW - timedelta(minutes=4, seconds=5),
        suspect_address="victim@example.org",
        suspect_login="victim",
        diagnosis=diagnosis_codec.to_json(diagnosis),
        rejected_accounts=[],
        failure=None,
        contained_at=NOW - timedelta(minutes=4),
        closed_at=None,
        monitor_deadline=None,
    )
    values.update(fields)
    incident = Incident(**values)
    incident.approvals = [
        Approval(
            id=1,
            what="cleanup",
            subject="the cleanup of victim@example.org",
            requested_by="mailfix",
            requested_at=NOW - timedelta(minutes=4),
            expires_at=NOW + timedelta(minutes=26),
        )
    ]
    incident.checks = []
    return incident


def action_ids(message: blocks.Message) -> list[str]:
    return [e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


@pytest.mark.parametrize("state", list(BUTTONS_BY_STATE))
def test_each_state_shows_only_the_buttons_that_apply(state):
    message = incident_blocks.incident_message(make_incident(state, failure="delete_from: timed out"), now=NOW)
    assert action_ids(message) == BUTTONS_BY_STATE[state]
    assert blocks.check_limits(message) == []


def test_every_state_renders_within_slacks_limits():
    for state in State:
        message = incident_blocks.incident_message(make_incident(state), now=NOW)
        assert blocks.check_limits(message) == [], state
        assert message.text.startswith("Incident #7 on mail1")


def test_the_message_shows_counts_trend_people_and_elapsed_time():
    incident = make_incident(State.MONITORING)
    incident.checks = [
        Check(at=NOW, monitor_round=0, postfix_running=True, queue_size=q, normal=q < 50) for q in (400, 200, 80, 12)
    ]
    incident.approvals[0].decision, incident.approvals[0].decided_by = "approved", "UDIRECTOR1"
    incident.approvals[0].decided_at = NOW
    text = str(incident_blocks.incident_message(incident, now=NOW).blocks)
    for expected in (
        "250 queued from it",
        "10 queued to it",
        "300 sent by its login",
        "12 now",
        "420 at diagnosis",
        "█",
        "<@UOPERATOR1>",
        "4 min 5 s",
        "queue 400 → 200 → 80 → 12, draining",
        "cleanup: approved by <@UDIRECTOR1> <!date^1795749000^{date_short_pretty} {time}|2026-11-27 03:10 UTC>",
    ):
        assert expected in text


def test_spam_subjects_cannot_ping_the_channel_or_fake_links():
    text = str(incident_blocks.incident_message(make_incident(), now=NOW).blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt; Cheap pills &amp; more" in text
    assert "<https://evil.example" not in text


def test_the_select_offers_other_valid_accounts_only():
    message = incident_blocks.incident_message(make_incident(), now=NOW)
    select = next(
        e for b in message.blocks if b["type"] == "actions" for e in b["elements"] if e["type"] == "static_select"
    )
    picks = [requests.decode(o["value"], Event.PICK) for o in select["options"]]
    assert [p.pick for p in picks] == ["alice", "bob@example.org"]
    assert {(p.incident_id, p.approval_id, p.account) for p in picks} == {(7, 1, "victim@example.org")}


def test_an_expired_approval_offers_to_ask_again():
    incident = make_incident()
    incident.approvals[0].expires_at = NOW - timedelta(minutes=1)
    assert action_ids(incident_blocks.incident_message(incident, now=NOW)) == ["renew_approval", "abort"]


def test_a_huge_diagnosis_is_clipped_not_refused():
    address = "v" * 60 + "@example.org"
    senders = tuple(Ranked(f"user{i}@example.org", i) for i in range(300))
    diagnosis = make_diagnosis(address, subjects=("x" * 5000,) * 50, senders=senders)
    message = incident_blocks.incident_message(make_incident(diagnosis=diagnosis, suspect_address=address), now=NOW)
    assert blocks.check_limits(message) == []
    assert "xxxxxxxxxx" in str(message.blocks) and "user0@example.org" in str(message.blocks)


def test_the_password_is_in_the_dm_blocks_but_never_in_its_fallback_text():
    dm = password_blocks.password_dm(
        incident_id=7,
        address="victim@example.org",
        user_id="UVICTIM01",
        password="Secret-Password-1234567",
        keep_minutes=60,
    )
    assert "Secret-Password-1234567" in str(dm.blocks) and "Secret-Password-1234567" not in dm.text
    assert blocks.check_limits(dm) == []
    withdrawn = password_blocks.password_dm_withdrawn(address="victim@example.org")
    assert "Secret" not in str(withdrawn.blocks) and "removed" in str(withdrawn.blocks)


def test_every_action_id_has_a_handler():
    assert set(HANDLERS) == set(ActionId)


@pytest.mark.parametrize(
    ("text", "verb", "arg", "problem"),
    [
        ("", "help", None, ""),
        ("start", "start", None, ""),
        ("start mail1", "start", "mail1", ""),
        ("STATUS #12", "status", "12", ""),
        ("abort", "abort", None, "takes one argument"),
        ("report x", "report", None, "not an incident number"),
        ("reboot", "reboot", None, "Unknown command"),
        ("list all", "list", None, "takes no argument"),
    ],
)
def test_command_lines_parse_into_a_verb_and_argument_or_a_problem(text, verb, arg, problem):
    command = parse_command(text)
    assert (command.verb, command.arg) == (verb, arg) if not problem else problem in command.problem


def test_thread_replies_escape_queue_data_but_keep_director_mentions(tmp_path, repo):
    from datetime import UTC, datetime

    from handlers.notifier import SlackNotifier
    from storage.outbox import Outbox
    from tests.conftest import DIRECTOR, make_config

    posted = []

    class Client:
        def chat_postMessage(self, **kwargs):
            posted.append(kwargs)
            return {"ts": "1.1"}

    notifier = SlackNotifier(Client(), make_config(tmp_path), Outbox(repo))
    incident = repo.open_incident(server="mail1", opened_by="U1", state="opened", now=datetime.now(UTC))
    repo.set_fields(incident_id=incident.id, slack_channel="C0INCIDENT", slack_ts="1.0")
    notifier.step_logged(incident, f':sos: <@{DIRECTOR}> sender "<!channel>"@x & <http://evil|bank> has 900')
    text = posted[0]["text"]
    assert f"<@{DIRECTOR}>" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&lt;http://evil|bank&gt;" in text
