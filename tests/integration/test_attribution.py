"""A stolen login cannot pin its flood on another user by writing imitation log lines into its mail.

Postfix logs envelope senders (qmgr, smtpd rejects), AUTH= senders (smtpd) and, with header_checks,
headers (cleanup) verbatim. The stolen login floods, learns its queue IDs from the `queued as`
replies, then sends messages whose sender, headers and subject imitate smtpd's `client=` and
pickup's `uid=` lines for those IDs, naming alice. The diagnosis must still name the stolen login,
with its true count, and give alice nothing.
"""

from __future__ import annotations

import base64
import re
import smtplib
import time
from collections.abc import Iterator

import pytest

from bot.core.mailserver import Account, Selection
from bot.mail.postfix import PostfixServer, connect
from tests.integration.flood import queue_size
from tests.integration.lab import Lab

MALLORY = "victim"  # the lab's stolen login plays mallory: the lab has no account of that name
OTHER = "alice"  # the innocent user the forgeries name
SPAM = 60
PACK = 10  # forged entries per crafted sender
SMTPD = "Dec  1 01:02:03 mail postfix/smtpd[4242]: "
PICKUP = "Dec  1 01:02:03 mail postfix/pickup[4243]: "


def client_entry(queue_id: str) -> str:
    return f"{queue_id}: client=x, sasl_method=PLAIN, sasl_username={OTHER}"


def pickup_entry(queue_id: str) -> str:
    return f"{queue_id}: uid=0 from=<root>"


def xtext(text: str) -> str:
    """Encode `text` as an RFC 3461 xtext (what AUTH= carries): `+XX` for space, `+`, `=` and controls."""
    return "".join(f"+{ord(c):02X}" if c in " +=" or not 33 <= ord(c) <= 126 else c for c in text)


def session(lab: Lab, login: str | None) -> smtplib.SMTP:
    """Open an SMTP session to the lab's submission smtpd, authenticated as `login` (None: anonymous)."""
    smtp = smtplib.SMTP(lab.host, lab.smtp_port, local_hostname="client.attack.example", timeout=30)
    smtp.ehlo()
    if login is not None:
        token = base64.b64encode(f"\0{login}\0{lab.passwords[login]}".encode()).decode()
        code, reply = smtp.docmd("AUTH", "PLAIN " + token)
        assert code == 235, f"AUTH PLAIN as {login}: {code} {reply!r}"
    return smtp


def submit(smtp: smtplib.SMTP, sender: str, recipient: str, headers: str = "", params: str = "") -> str | None:
    """Send one message with MAIL FROM:<sender> exactly as written; return its queue ID, None if refused."""
    code, _ = smtp.docmd("MAIL", f"FROM:<{sender}>{params}")
    if code != 250:
        smtp.rset()
        return None
    code, _ = smtp.docmd("RCPT", f"TO:<{recipient}>")
    if code not in (250, 251):
        smtp.rset()
        return None
    subject = "" if "Subject:" in headers else "Subject: hello\r\n"
    message = f"From: <spam@spam.example>\r\nTo: <{recipient}>\r\n{headers}{subject}\r\nHello.\r\n"
    code, reply = smtp.data(message.encode())
    queued = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert code == 250 and queued, f"DATA: {code} {reply!r}"
    return queued[1].decode()


@pytest.fixture
def lab_logging_headers(clean_lab: Lab) -> Iterator[Lab]:
    """The lab with header_checks that log Subject and X-Note (WARN), as sites with header checks do."""
    checks = clean_lab.dir / "attribution-header-checks"
    checks.write_text("/^(Subject|X-Note):/ WARN\n")
    clean_lab.run(["postconf", "-e", f"header_checks = regexp:{checks}"])
    clean_lab.run(["postfix", "reload"])
    time.sleep(1)  # cleanup processes started before the reload finish with the old settings
    try:
        yield clean_lab
    finally:
        clean_lab.run(["postconf", "-X", "header_checks"])
        clean_lab.run(["postfix", "reload"])


@pytest.fixture
def mail(lab_logging_headers: Lab) -> Iterator[PostfixServer]:
    server = connect(lab_logging_headers.server_config())
    yield server
    server.close()


def test_imitation_log_lines_in_senders_headers_and_subjects_attribute_nothing(
    lab_logging_headers: Lab, mail: PostfixServer
) -> None:
    lab = lab_logging_headers
    before = queue_size(lab)
    # 1. The flood, from forged foreign senders (so only the SASL login ties it to the account).
    with session(lab, MALLORY) as smtp:
        spam = [submit(smtp, f"promo{n}@spam.example", f"user{n}@example.com") for n in range(SPAM)]
    assert None not in spam
    spam_ids = [queue_id for queue_id in spam if queue_id]

    # 2. As the same stolen login: one message per forgery; each names alice for mallory's queue IDs.
    crafted: list[str | None] = []
    relay = "target@example.com"
    with session(lab, MALLORY) as smtp:
        for start in range(0, SPAM, PACK):
            packed = ", ".join(client_entry(queue_id) for queue_id in spam_ids[start : start + PACK])
            crafted.append(submit(smtp, f'"{packed}, "@evil.example', relay))  # qmgr from=<...>
        for queue_id in spam_ids[:5]:
            crafted.append(submit(smtp, f'"{client_entry(queue_id)}, "@evil.example', relay))
            crafted.append(submit(smtp, f'"{SMTPD}{client_entry(queue_id)}"@evil.example', relay))
        headers = "".join(
            f"X-Note: {SMTPD}{client_entry(queue_id)}\r\nX-Note: x {client_entry(queue_id)}\r\n"
            f"X-Note: folded\r\n {SMTPD}{client_entry(queue_id)}\r\n"
            for queue_id in spam_ids[5:10]
        )
        crafted.append(submit(smtp, f"{MALLORY}@{lab.domain}", relay, headers=headers))
        subject = "Subject: " + " ".join(client_entry(queue_id) for queue_id in spam_ids[10:15]) + "\r\n"
        crafted.append(submit(smtp, f"{MALLORY}@{lab.domain}", relay, headers=subject))
        # AUTH= is logged as sasl_sender, after this very line's genuine sasl_username (as xtext:
        # Postfix 3.7 logs it undecoded, `+20` for a space, but another version might decode it).
        forged_auth = xtext(", " + ", ".join(client_entry(queue_id) for queue_id in spam_ids[15:20]))
        crafted.append(submit(smtp, f"{MALLORY}@{lab.domain}", relay, params=f" AUTH=x{forged_auth}"))
        # pickup imitations would clear mallory's own attribution of the crafted messages sent so far.
        pickups = [queue_id for queue_id in crafted if queue_id]
        crafted.append(submit(smtp, f'"{pickup_entry(pickups[0])}"@evil.example', relay))
        crafted.append(submit(smtp, f'"{PICKUP}{pickup_entry(pickups[1])}"@evil.example', relay))
        crafted.append(
            submit(smtp, f"{MALLORY}@{lab.domain}", relay, headers=f"X-Note: {PICKUP}{pickup_entry(pickups[2])}\r\n")
        )
        # Later crafted messages name alice for the earlier ones too.
        crafted.append(submit(smtp, '"' + ", ".join(client_entry(q) for q in pickups[3:]) + ', "@evil.example', relay))
    crafted_ids = [queue_id for queue_id in crafted if queue_id]
    assert len(crafted_ids) >= len(crafted) - 2, f"Postfix refused too many crafted senders: {crafted}"

    # 3. Anyone on the Internet may write to alice: unauthenticated, with forged senders and AUTH=.
    inbound: list[str | None] = []
    with session(lab, None) as smtp:
        to_other = f"{OTHER}@{lab.domain}"
        inbound.append(submit(smtp, f'"{client_entry(spam_ids[20])}, "@evil.example', to_other))
        forged = xtext(f"x, sasl_method=PLAIN, sasl_username={OTHER}")
        inbound.append(submit(smtp, "stranger@evil.example", to_other, params=f" AUTH={forged}"))
        inbound.append(submit(smtp, f'"{SMTPD}{client_entry(spam_ids[21])}"@evil.example', to_other))
    inbound_ids = [queue_id for queue_id in inbound if queue_id]

    # Every message is queued and qmgr has logged each sender before the diagnosis reads the log.
    everything = spam_ids + crafted_ids + inbound_ids
    deadline = time.monotonic() + 60
    while True:
        log_text = lab.postfix_log.read_text(errors="replace")
        logged = {queue_id for queue_id in everything if f" {queue_id}: from=<" in log_text}
        if queue_size(lab) >= before + len(everything) and len(logged) == len(everything):
            break
        assert time.monotonic() < deadline, f"not queued or not logged yet: {set(everything) - logged}"
        time.sleep(0.2)
    # The imitations really are in the log, outside smtpd's client= and pickup's uid= lines.
    qmgr = [line for line in log_text.splitlines() if "/qmgr[" in line]
    assert sum(f"sasl_username={OTHER}" in line for line in qmgr) >= SPAM // PACK + 10
    assert any("/pickup[" in line and "uid=0 from=<root>" in line for line in qmgr)
    cleanup = [line for line in log_text.splitlines() if "/cleanup[" in line and "warning: header" in line]
    assert any(f"sasl_username={OTHER}" in line for line in cleanup), "header_checks did not log the headers"

    diagnosis = mail.diagnose(flood_threshold=SPAM)
    mallory_count = len(spam_ids) + len(crafted_ids)
    assert diagnosis.snapshot.total == len(everything)
    assert diagnosis.suspect is not None
    assert diagnosis.suspect.account == Account(address=f"{MALLORY}@{lab.domain}", login=MALLORY)
    assert diagnosis.suspect.queued_by_login == mallory_count
    logins = {ranked.name: ranked.count for ranked in diagnosis.snapshot.top_sasl_logins}
    assert logins == {MALLORY: mallory_count}
    assert OTHER not in logins and f"{OTHER}@{lab.domain}" not in logins
    assert mail.count(Selection(sasl_login=OTHER)) == 0
    assert mail.count(Selection(sasl_login=MALLORY)) == mallory_count
