"""A new password never outlives its incident, and only the person who received it can confirm it."""

from __future__ import annotations

import pytest

from bot.errors import NotAuthorized
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR, STRANGER


def cleaned_up(runbook, notifier):
    notifier.confirm = False  # the user has not clicked "I have saved my new password"
    incident = runbook.start(server="mail1", actor=OPERATOR)
    return runbook.approve(incident.id, actor=DIRECTOR2, account="victim@example.org")


def test_an_undelivered_password_is_erased_when_the_incident_is_aborted(runbook, notifier):
    incident = cleaned_up(runbook, notifier)
    assert runbook.get(incident.id).password_ciphertext is not None
    runbook.abort(incident.id, actor=OPERATOR)
    assert runbook.get(incident.id).password_ciphertext is None
    assert [a.action for a in runbook.repo.audit_events(incident_id=incident.id)][
        -1
    ] == "password_erased_incident_closed"


def test_only_the_person_the_dm_went_to_can_confirm_it(runbook, notifier):
    incident = cleaned_up(runbook, notifier)
    for actor in (STRANGER, OPERATOR, DIRECTOR):
        with pytest.raises(NotAuthorized, match="only the person who received it"):
            runbook.confirm_password(incident.id, actor=actor, account="victim@example.org")
    assert runbook.get(incident.id).password_ciphertext is not None
    assert runbook.confirm_password(incident.id, actor="UVICTIM01", account="victim@example.org")
    assert runbook.get(incident.id).password_ciphertext is None
