"""Where a login block takes effect, read from the lab's real Postfix: main.cf and master.cf's `-o` overrides."""

from __future__ import annotations

import logging
import smtplib

import pytest

from bot.core.mailserver import Account
from bot.mail.postfix import PostfixServer, connect
from tests.integration.flood import flood
from tests.integration.lab import Lab

VICTIM = Account(address="victim@lab.test", login="victim")
WITHOUT_MAP = "permit_sasl_authenticated,permit_mynetworks,reject_unauth_destination"


@pytest.fixture
def server(clean_lab: Lab):
    mail = connect(clean_lab.server_config(user="mailfixop"))
    yield mail
    mail.close()


def send_as_victim(lab: Lab) -> int:
    """Send one message authenticated as victim; return how many were queued."""
    return flood(lab, count=1, forged_fraction=0, legit=0, bounces=0, inbox=0, connections=1, timeout=5).queued


def test_a_map_consulted_only_in_master_cf_for_the_submission_service_blocks_and_gets_no_warning(
    server: PostfixServer, clean_lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    # As Debian's master.cf suggests: the list lives in main.cf under a name of its own, and the
    # submission service's `-o` points at it.
    with_map = f"check_sasl_access hash:{clean_lab.sasl_access_map}, {WITHOUT_MAP}"
    with clean_lab.postfix_settings(
        main={"smtpd_recipient_restrictions": WITHOUT_MAP, "mua_recipient_restrictions": with_map},
        smtpd={"smtpd_recipient_restrictions": "$mua_recipient_restrictions"},
    ):
        main_cf = clean_lab.run(["postconf", "-h", "smtpd_recipient_restrictions"]).stdout
        assert "check_sasl_access" not in main_cf  # only master.cf names the map
        with caplog.at_level(logging.WARNING):
            where = server.block_login(VICTIM)
        assert where == (
            f"check_sasl_access hash:{clean_lab.sasl_access_map} is consulted by {clean_lab.smtpd_service}"
        )
        assert "blocking has no effect" not in caplog.text and "do not consult" not in caplog.text
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # and the block does hold
            send_as_victim(clean_lab)


def test_a_service_that_overrides_the_list_without_the_map_is_named_in_the_warning(
    server: PostfixServer, clean_lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    with clean_lab.postfix_settings(main={}, smtpd={"smtpd_recipient_restrictions": WITHOUT_MAP}):
        main_cf = clean_lab.run(["postconf", "-h", "smtpd_recipient_restrictions"]).stdout
        assert "check_sasl_access" in main_cf  # main.cf names the map, the service overrides it
        with caplog.at_level(logging.WARNING):
            where = server.block_login(VICTIM)
        service = clean_lab.smtpd_service
        assert where.startswith(
            f"check_sasl_access hash:{clean_lab.sasl_access_map} is consulted by no smtpd service;"
            f" not by {service} (accepts SASL logins). Warning: {service} accept SASL logins but do not consult"
        )
        assert f"{service} accept SASL logins but do not consult" in caplog.text
        assert send_as_victim(clean_lab) == 1  # the warning is true: the blocked login still sends
    assert "check_sasl_access" in clean_lab.run(["postconf", "-h", "smtpd_recipient_restrictions"]).stdout
    assert clean_lab.run(["postconf", "-P"]).stdout.count("smtpd_recipient_restrictions") == 0  # put back
