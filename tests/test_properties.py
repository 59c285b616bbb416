"""Random sequences of events from several actors keep the runbook's invariants."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bot.core.mailserver import Selection
from bot.core.runbook import Runbook
from bot.core.table import TERMINAL, State
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.errors import MailfixError
from storage.db import make_engine, upgrade
from storage.models import Incident
from storage.repository import Repository
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR, SECRET_KEY, STRANGER, Clock, make_config
from tests.fakes import FakeMailServer, RecordingNotifier

ACTORS = (DIRECTOR, DIRECTOR2, OPERATOR, STRANGER)
ACTIONS = (
    "start",
    "approve",
    "reject",
    "pick",
    "contain",
    "abort",
    "retry",
    "renew",
    "tick",
    "wait",
    "break",
    "mend",
    "resolve_now",
    "confirm",
)
# Drawn more often, so that random sequences reach a pick and a containment, not only the examples.
LIKELIER = ("approve", "pick", "contain", "tick")
DOMAIN = "example.org"


@dataclass(frozen=True)
class Offered:
    """The account at this position (modulo their number) among those the open incident offers."""

    index: int


# An account named by a pick or a containment: one the incident offers, or any string at all.
ACCOUNTS = st.one_of(
    st.integers(min_value=0, max_value=20).map(Offered),
    st.sampled_from(
        ["alice", "victim", "VICTIM@example.org", "alice@other.example", "MAILER-DAEMON", "nobody", "", "juan;id"]
    ),
    st.from_regex(r"[a-z][a-z0-9._-]{0,12}(@(example\.org|other\.example))?", fullmatch=True),
    st.text(max_size=40),
)


STEPS = st.tuples(st.sampled_from(ACTIONS + LIKELIER), st.sampled_from(ACTORS), ACCOUNTS)
# Every sequence opens with someone's `start` (refused for a stranger), or with an incident already
# cleaned up and monitored, whose first check saw alice's flood; then anything may happen.
OPENINGS = st.one_of(
    st.sampled_from(ACTORS).map(lambda opener: [("start", opener, "")]),
    st.just([("start", OPERATOR, ""), ("approve", DIRECTOR, ""), ("tick", OPERATOR, "")]),
)
SEQUENCES = st.builds(lambda opening, rest: [*opening, *rest], OPENINGS, st.lists(STEPS, min_size=4, max_size=25))


def offered(incident: Incident) -> list[str]:
    """The names the incident offers to pick or contain: the new flood of its latest check, and its
    diagnosis' top logins and senders, suspect and runner-up."""
    names: list[str] = []
    if incident.checks:  # first, so that Offered(0) is the new flood when there is one
        new_flood = incident.checks[-1].details.get("new_flood")
        if new_flood:
            names.append(new_flood["name"])
    diagnosis = incident.diagnosis or {}
    queue = diagnosis.get("queue") or {}
    for key in ("top_sasl_logins", "top_senders"):
        names += [ranked["name"] for ranked in queue.get(key) or []]
    suspect = diagnosis.get("suspect") or {}
    names += [suspect[key] for key in ("login", "address") if suspect.get(key)]
    if diagnosis.get("runner_up"):
        names.append(diagnosis["runner_up"]["name"])
    return list(dict.fromkeys(names))


def account_named(incident: Incident, choice: Offered | str) -> str | None:
    if isinstance(choice, str):
        return choice
    names = offered(incident)
    return names[choice.index % len(names)] if names else None


def check_named_account_contained(runbook: Runbook, server: FakeMailServer, incident_id: int, name: str) -> None:
    """After an accepted pick or containment, the named account is the suspect, held and blocked."""
    incident = runbook.get(incident_id)
    if incident.state == State.FAILED:  # a step failed (a broken server): retry is what follows
        return
    assert incident.state == State.AWAITING_APPROVAL, incident.state
    name = name.lower()
    address = name if "@" in name else f"{name}@{DOMAIN}"
    assert incident.suspect_address == address, (name, incident.suspect_address)
    assert incident.suspect_login is not None and incident.suspect_login in server.blocked
    assert server.count(Selection(sender=address), queues=frozenset({"active", "deferred", "incoming"})) == 0
    assert incident.picked_account is None  # used once, by the diagnosis that named it


def apply(
    runbook: Runbook, server: FakeMailServer, clock: Clock, action: str, actor: str, choice: Offered | str
) -> None:
    open_ = runbook.repo.list_incidents(open_only=True)
    incident_id = open_[0].id if open_ else None
    if action == "start":
        runbook.start(server="mail1", actor=actor)
    elif action == "wait":
        clock.advance(minutes=8)
    elif action == "break":
        server.fail_on, server.postfix_running = "delete", False
    elif action == "mend":
        server.fail_on, server.postfix_running = "", True
    elif incident_id is None:
        return
    elif action == "approve":
        runbook.approve(incident_id, actor=actor)
    elif action == "reject":
        runbook.reject(incident_id, actor=actor)
    elif action in ("pick", "contain"):
        name = account_named(runbook.get(incident_id), choice)
        if name is None:
            return
        kind = "offered" if isinstance(choice, Offered) else "arbitrary"
        try:
            if action == "pick":
                runbook.reject(incident_id, actor=actor, pick=name)
            else:
                runbook.contain(incident_id, actor=actor, account=name)
        except MailfixError as exc:
            event(f"{action} of an {kind} account refused: {type(exc).__name__}")
            raise
        event(f"{action} of an {kind} account accepted")
        check_named_account_contained(runbook, server, incident_id, name)
    elif action == "abort":
        runbook.abort(incident_id, actor=actor)
    elif action == "retry":
        runbook.retry(incident_id, actor=actor)
    elif action == "renew":
        runbook.fire(incident_id, "renew", actor=actor)  # type: ignore[arg-type]
    elif action == "tick":
        Upkeep(runbook).tick(incident_id)
    elif action == "resolve_now":
        runbook.resolve_now(incident_id, actor=actor)
    elif action == "confirm":
        runbook.confirm_password(incident_id, actor=actor)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Besides the random sequences, always: a pick of an offered login, a containment of the new flood
# seen while monitoring, and both with names nobody offered.
@example([("start", OPERATOR, ""), ("pick", DIRECTOR, Offered(1)), ("approve", DIRECTOR2, "")])
@example(
    [
        ("start", OPERATOR, ""),
        ("approve", DIRECTOR, ""),
        ("tick", OPERATOR, ""),
        ("contain", OPERATOR, Offered(0)),
        ("approve", DIRECTOR2, ""),
        ("tick", OPERATOR, ""),
    ]
)
@example([("start", OPERATOR, ""), ("pick", DIRECTOR, "nobody@other.example"), ("reject", DIRECTOR2, "")])
@example([("start", OPERATOR, ""), ("approve", DIRECTOR, ""), ("contain", DIRECTOR2, "Zed"), ("abort", OPERATOR, "")])
@given(SEQUENCES)
def test_random_event_sequences_keep_the_invariants(sequence):
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/p.db"
        upgrade(url)
        repo, clock = Repository(make_engine(url)), Clock()
        server = FakeMailServer()
        server.flood("victim", 200, forged=20, to_account=5)
        server.flood("alice", 120)
        runbook = Runbook(
            config=make_config(Path(tmp)),
            repository=repo,
            servers=lambda _: server,
            notifier=RecordingNotifier(),
            vault=Vault(SECRET_KEY),
            clock=clock,
        )
        closed: dict[int, str] = {}
        for action, actor, choice in sequence:
            with contextlib.suppress(MailfixError):  # refusing bad input or a wrong moment is an outcome
                apply(runbook, server, clock, action, actor, choice)
            for incident in repo.list_incidents():
                if incident.id in closed:  # terminal states stay terminal
                    assert incident.state == closed[incident.id]
                elif incident.state in TERMINAL:
                    closed[incident.id] = incident.state
        config = runbook.config
        for listed in repo.list_incidents():
            incident = runbook.get(listed.id)
            done = [(r.phase, r.step) for r in incident.steps if r.status == "done"]
            assert len(done) == len(set(done)), "a step ran twice in the same phase"
            cleanups = sum(1 for a in incident.approvals if a.what == "cleanup" and a.decision == "approved")
            # once per approved cleanup: an account contained later in the incident gets its own approval
            assert sum(1 for _, step in done if step == "change_password") <= cleanups
            for approval in incident.approvals:
                if approval.decision == "approved":
                    assert approval.decided_by in config.directors
                    assert approval.decided_by != incident.opened_by
            assert (incident.closed_at is not None) == (incident.state in TERMINAL)
        assert len(repo.list_incidents(open_only=True)) <= 1
        # change_password ran once per incident that reached it, and only after an approval
        approved = sum(
            1
            for i in repo.list_incidents()
            for a in runbook.get(i.id).approvals
            if a.what == "cleanup" and a.decision == "approved"
        )
        assert len(server.calls_to("change_password")) <= approved
        # Whatever was picked or contained, with whatever value: only the accounts that really flood (and
        # that mailfix offered) were ever touched; never root, a foreign address or a made-up name.
        acted_on = {"block_login", "unblock_login", "kick_sessions", "change_password", "purge_inbox"}
        touched = {arg for call, arg in server.calls if call in acted_on}
        assert touched <= {"victim", "alice"}, touched
