"""The count a director approves is the count the cleanup deletes, on the lab's real Postfix."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bot.core import diagnosis as diagnosis_codec
from bot.core.mailserver import Account, Selection
from bot.mail.postfix import connect
from handlers import incident_blocks
from storage.models import Incident
from tests.integration.flood import _send, flood, queue_size
from tests.integration.lab import Lab

VICTIM = Account(address="victim@lab.test", login="victim")


def test_the_cleanup_confirm_counts_each_message_once_and_the_cleanup_deletes_that_many(clean_lab: Lab) -> None:
    # Spam from the address by the login (both), forged senders by the login, bounces to the address, and a
    # few unauthenticated messages from the address (from it only): four kinds that overlap in pairs.
    report = flood(clean_lab, count=400, forged_fraction=0.25, legit=20, bounces=15, inbox=0)
    before = queue_size(clean_lab)
    _send(clean_lab, None, "bounce", [(VICTIM.address, ["someone@remote.example"])] * 7, seed=1)
    while queue_size(clean_lab) < before + 7:
        time.sleep(0.1)
    expected = report.from_login + report.forged + report.bounces + 7

    server = connect(clean_lab.server_config())
    try:
        diagnosis = server.diagnose(flood_threshold=100)
        suspect = diagnosis.suspect
        assert suspect is not None and suspect.account == VICTIM
        # Summing the three counts takes the spam from the address by the login twice.
        assert suspect.queued_from + suspect.queued_by_login + suspect.queued_to == expected + report.from_login
        assert suspect.queued_total == expected

        incident = Incident(
            id=1,
            server="mail1",
            state="awaiting_approval",
            suspect_address=VICTIM.address,
            suspect_login=VICTIM.login,
            diagnosis=diagnosis_codec.to_json(diagnosis),
            opened_by="UOPERATOR1",
            opened_at=datetime.now(UTC),
        )
        confirm = incident_blocks._confirm_cleanup(incident).to_dict()["text"]["text"]
        assert f"deletes the {expected:,} queued messages" in confirm

        # Held mail still counts (a re-diagnosis after containment), and the cleanup's three deletions,
        # in the steps' order, delete exactly that many.
        server.hold(Selection(sasl_login=VICTIM.login))
        assert server.diagnose(flood_threshold=100).suspect.queued_total == expected  # type: ignore[union-attr]
        deleted = sum(
            server.delete(selection)
            for selection in (
                Selection(sender=VICTIM.address),
                Selection(sasl_login=VICTIM.login),
                Selection(recipient=VICTIM.address),
            )
        )
        assert deleted == expected
    finally:
        server.close()
