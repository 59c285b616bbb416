"""Random sequences of events from several actors keep the runbook's invariants."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.runbook import Runbook
from bot.core.table import TERMINAL
from bot.core.upkeep import Upkeep
from bot.core.vault import Vault
from bot.errors import MailfixError
from storage.db import make_engine, upgrade
from storage.repository import Repository
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR, SECRET_KEY, STRANGER, Clock, make_config
from tests.fakes import FakeMailServer, RecordingNotifier

ACTORS = (DIRECTOR, DIRECTOR2, OPERATOR, STRANGER)
ACTIONS = (
    "start",
    "approve",
    "reject",
    "pick",
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


def apply(runbook: Runbook, server: FakeMailServer, clock: Clock, action: str, actor: str) -> None:
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
    elif action == "pick":
        runbook.reject(incident_id, actor=actor, pick="alice")
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from(ACTORS)), max_size=25))
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
        for action, actor in sequence:
            with contextlib.suppress(MailfixError):
                apply(runbook, server, clock, action, actor)
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
            assert sum(1 for _, step in done if step == "change_password") <= 1
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
