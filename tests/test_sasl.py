"""Unit tests for the Postfix log parser and the check_sasl_access map editing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mail.commands import reblocked
from bot.mail.sasl import LOG_FILTER, LOG_SELECT, blocked_keys, login_keys, parse_sasl_lines, rank_logins, set_block

SYSLOG = (
    b"Nov 27 13:45:01 mail postfix/smtpd[812]: 4ABC12: client=localhost[127.0.0.1], "
    b"sasl_method=PLAIN, sasl_username=victim"
)
MAILLOG = (
    b"2024-11-27T13:45:02.123456+00:00 mail postfix/lab-smtpd/smtpd[813]: 4jbZV81P9LzBwdh: "
    b"client=client.flood.example[127.0.0.1], sasl_method=PLAIN, sasl_username=Juana@Lab.Test, "
    b"sasl_sender=juana@lab.test"
)
NOISE = [
    b"Nov 27 13:45:01 mail postfix/smtpd[812]: connect from localhost[127.0.0.1]",
    b"Nov 27 13:45:01 mail postfix/smtpd[812]: 5DEF34: client=localhost[127.0.0.1]",  # no SASL
    b"Nov 27 13:45:01 mail postfix/qmgr[700]: 4ABC12: from=<victim@lab.test>, size=512, nrcpt=1",
    b"Nov 27 13:45:03 mail postfix/smtpd[812]: warning: SASL authentication failed; sasl_username=bob",
]


def test_both_log_formats_are_parsed() -> None:
    """Syslog and maillog_file lines both give queue ID -> lower-cased login."""
    assert parse_sasl_lines([SYSLOG, MAILLOG]) == {"4ABC12": "victim", "4jbZV81P9LzBwdh": "juana@lab.test"}


def test_lines_without_a_sasl_login_are_ignored() -> None:
    """Connects, unauthenticated clients, qmgr lines and failed AUTH warnings attribute nothing."""
    assert parse_sasl_lines(NOISE) == {}


def test_a_reused_queue_id_keeps_the_newest_login() -> None:
    """Queue IDs can be reused: the later line (the current file after the rotated one) wins."""
    older = SYSLOG
    newer = SYSLOG.replace(b"13:45:01", b"14:00:00").replace(b"victim", b"alice")
    assert parse_sasl_lines([older, newer]) == {"4ABC12": "alice"}


def server_filter(log: Path, lines: list[bytes]) -> bytes:
    """Return what the server-side filter of read_sasl_log sends back for a log of `lines`."""
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    argv = reblocked([*LOG_FILTER, str(log)], through=LOG_SELECT)
    return subprocess.run(argv, capture_output=True, check=True).stdout


def test_the_server_side_filter_output_parses_the_same(tmp_path: Path) -> None:
    """The server sends smtpd's client= lines whole (the prefix is what makes them genuine); they parse the same."""
    for whole in (SYSLOG, MAILLOG):
        found = server_filter(tmp_path / "log", [whole])
        assert found == whole + b"\n"
        assert parse_sasl_lines(found.splitlines()) == parse_sasl_lines([whole])
    # Of the noise, only the message accepted without SASL is sent (it clears a reused ID), and it names no login.
    kept = server_filter(tmp_path / "log", NOISE)
    assert kept == NOISE[1] + b"\n"
    assert parse_sasl_lines(kept.splitlines()) == {}


def test_rank_logins_counts_only_queued_ids() -> None:
    """Only IDs still queued count; the most messages come first."""
    login_of = {"A": "victim", "B": "victim", "C": "bob", "D": "victim"}
    ranked = rank_logins(login_of, ["A", "B", "C", "Z"], 5)
    assert [(r.name, r.count) for r in ranked] == [("victim", 2), ("bob", 1)]


def test_login_keys_cover_both_spellings() -> None:
    """Postfix may see the SASL username with or without the domain: both are blocked."""
    assert login_keys("victim", "lab.test") == ("victim", "victim@lab.test")


def test_set_block_adds_and_removes_only_the_given_keys() -> None:
    """Blocking is idempotent, keeps other entries and comments; unblocking removes just the keys."""
    original = "# managed by IT\nbob REJECT\njuana HOLD\n"
    blocked = set_block(original, ["juan", "juan@lab.test"], blocked=True)
    assert set_block(blocked, ["juan", "juan@lab.test"], blocked=True) == blocked
    assert blocked_keys(blocked) == {"bob", "juana", "juan", "juan@lab.test"}
    assert re.search(r"^juan REJECT", blocked, re.MULTILINE)
    unblocked = set_block(blocked, ["juan", "juan@lab.test"], blocked=False)
    assert unblocked == original
    assert "juana HOLD" in unblocked  # juan's rules never touch juana


@pytest.mark.parametrize("text", ["", "\n", "# nothing\n"])
def test_an_empty_map_blocks_nobody(text: str) -> None:
    """An empty or comment-only map has no blocked keys."""
    assert blocked_keys(text) == set()


def test_a_reused_queue_id_without_a_sasl_login_is_no_longer_attributed():
    lines = [
        b"Nov 27 13:45:01 mail postfix/smtpd[812]: 4XyZ: client=h[10.0.0.9], sasl_method=PLAIN, sasl_username=victim",
        b"Nov 27 13:45:02 mail postfix/smtpd[812]: 5AbC: client=h[10.0.0.9], sasl_method=PLAIN, sasl_username=victim",
        b"Nov 27 14:02:11 mail postfix/smtpd[901]: 4XyZ: client=mx.example.com[192.0.2.7]",
        b"Nov 27 14:02:12 mail postfix/pickup[902]: 5AbC: uid=0 from=<root>",
    ]
    assert parse_sasl_lines(lines) == {}
    assert parse_sasl_lines(lines[:2]) == {"4XyZ": "victim", "5AbC": "victim"}


def test_blocks_of_many_lines_parse_like_the_lines_one_by_one() -> None:
    """A block of whole lines, as the SSH stream delivers them, gives the same map, reuse rules included."""
    reused = SYSLOG.replace(b"13:45:01", b"14:00:00").replace(b"sasl_method=PLAIN, sasl_username=victim", b"")
    lines = [SYSLOG, MAILLOG, *NOISE, reused, SYSLOG.replace(b"4ABC12", b"7XYZ")]
    assert (
        parse_sasl_lines([b"\n".join(lines) + b"\n"])
        == parse_sasl_lines(lines)
        == {
            "4jbZV81P9LzBwdh": "juana@lab.test",
            "7XYZ": "victim",
        }
    )


# ---- attribution comes only from smtpd's and pickup's own lines, at their fixed position ------

# mallory (a stolen login) queued 4jdk8z1KtyzBs2g; every forgery below tries to hand it to alice.
MALLORY_ID = "4jdk8z1KtyzBs2g"
GENUINE = (
    f"Dec  1 01:02:03 mail postfix/submission/smtpd[812]: {MALLORY_ID}: client=localhost[127.0.0.1], "
    "sasl_method=PLAIN, sasl_username=mallory"
).encode()
FORGED_CLIENT = f"{MALLORY_ID}: client=x, sasl_method=PLAIN, sasl_username=alice"
FORGED_PICKUP = f"{MALLORY_ID}: uid=0 from=<root>"
FORGED_LINE = f"Dec  1 01:02:03 mail postfix/smtpd[1]: {FORGED_CLIENT}"
QMGR = "Dec  1 01:02:04 mail postfix/qmgr[700]: 4jdk8z2AAAAAAAA: from=<{}>, size=512, nrcpt=1 (queue active)"
CLEANUP = (
    "Dec  1 01:02:04 mail postfix/cleanup[901]: 4jdk8z2AAAAAAAA: warning: header Subject: {} from "
    "localhost[127.0.0.1]; from=<mallory@lab.test> to=<u@example.com> proto=ESMTP helo=<client.flood.example>"
)
REJECT = (
    "Dec  1 01:02:04 mail postfix/submission/smtpd[812]: NOQUEUE: reject: RCPT from localhost[127.0.0.1]: "
    "554 5.7.1 <u@example.com>: Relay access denied; from=<{}> to=<u@example.com> proto=ESMTP helo=<x>"
)
# (name, injected line, what it must attribute besides mallory's genuine entry)
ATTACKS: list[tuple[str, str, dict[str, str]]] = [
    ("qmgr from= quoted client=", QMGR.format(f'"{FORGED_CLIENT}, "@evil.example'), {}),
    ("qmgr from= whole forged line", QMGR.format(f'"{FORGED_LINE}"@evil.example'), {}),
    ("qmgr from= pickup imitation", QMGR.format(f'"{FORGED_PICKUP}"@evil.example'), {}),
    (
        "qmgr from= pickup line imitation",
        QMGR.format(f'"Dec  1 01:02:03 mail postfix/pickup[9]: {FORGED_PICKUP}"@evil.example'),
        {},
    ),
    ("cleanup header Subject", CLEANUP.format(FORGED_CLIENT), {}),
    ("cleanup header Subject, whole line", CLEANUP.format(FORGED_LINE), {}),
    ("cleanup header Subject, pickup", CLEANUP.format(f"x postfix/pickup[9]: {FORGED_PICKUP}"), {}),
    ("smtpd NOQUEUE reject from=", REJECT.format(f'"{MALLORY_ID}: client=x, sasl_username=alice"@x'), {}),
    ("smtpd NOQUEUE reject from=, whole line", REJECT.format(f'"{FORGED_LINE}"@x'), {}),
    (
        "sasl_username in a later field of a genuine line for another ID",
        "Dec  1 01:02:05 mail postfix/submission/smtpd[813]: 4jdk8z3BBBBBBBB: client=localhost[127.0.0.1], "
        f"sasl_method=PLAIN, sasl_username=mallory, sasl_sender={FORGED_CLIENT}",
        {"4jdk8z3BBBBBBBB": "mallory"},
    ),
    (
        "unauthenticated client, sasl fields forged in the AUTH= sender",
        "Dec  1 01:02:05 mail postfix/smtpd[814]: 4jdk8z3CCCCCCCC: client=mx.example.com[192.0.2.7], "
        "sasl_sender=x, sasl_method=PLAIN, sasl_username=alice",
        {},
    ),
    (
        "orig_client after a genuine unauthenticated client=",
        "Dec  1 01:02:05 mail postfix/smtpd[814]: 4jdk8z3DDDDDDDD: client=mx.example.com[192.0.2.7], "
        "orig_queue_id=x, orig_client=y, sasl_method=PLAIN, sasl_username=alice",
        {},
    ),
    (
        "RFC 3339 line whose 5th field is attacker text",
        f"2026-12-01T01:02:04.000000+00:00 mail postfix/qmgr[700]: 4jdk8z2AAAAAAAA: from=<x/smtpd[1]: "
        f"{FORGED_CLIENT}>, size=512",
        {},
    ),
    (
        "traditional line whose 3rd field is attacker text",
        f"Dec  1 01:02:04 mail postfix/qmgr[700]: 4jdk8z2AAAAAAAA: from=<2026-12-01T01:02:03Z mail x/smtpd[1]: "
        f"{FORGED_CLIENT}>",
        {},
    ),
    ("a CR then a whole forged line", QMGR.format(f'"x\r{FORGED_LINE}"@evil.example'), {}),
    (
        "a CR then a forged pickup line",
        QMGR.format(f'"x\rDec  1 01:02:03 mail postfix/pickup[9]: {FORGED_PICKUP}"@x'),
        {},
    ),
    ("an LF then a bare client= entry", QMGR.format(f'"x\n{FORGED_CLIENT}"@evil.example'), {}),
    ("an LF then a bare uid= entry", QMGR.format(f'"x\n{FORGED_PICKUP}"@evil.example'), {}),
    ("an LF, a space, then a forged line", QMGR.format(f'"x\n {FORGED_LINE}"@evil.example'), {}),
    ("a bare client= line", FORGED_CLIENT, {}),
    ("a bare smtpd message without the syslog prefix", f"postfix/smtpd[1]: {FORGED_CLIENT}", {}),
    ("a line that starts with spaces", f"  {FORGED_LINE}", {}),
    ("a line after a unicode line separator", QMGR.format(f'"x\u2028{FORGED_LINE}\x85{FORGED_LINE}"@x'), {}),
]


@pytest.mark.parametrize("line", [attack[1] for attack in ATTACKS], ids=[attack[0] for attack in ATTACKS])
def test_injected_text_neither_gives_nor_changes_an_attribution(line: str) -> None:
    """Text an attacker controls (sender, header, AUTH=) never attributes: before or after the genuine line."""
    extra = dict(next(attack[2] for attack in ATTACKS if attack[1] == line))
    injected = line.encode()
    assert parse_sasl_lines([injected]) == {key: value for key, value in extra.items() if key != MALLORY_ID}
    assert parse_sasl_lines([GENUINE, injected]) == {MALLORY_ID: "mallory", **extra}
    assert parse_sasl_lines([GENUINE + b"\n" + injected + b"\n"]) == {MALLORY_ID: "mallory", **extra}


@pytest.mark.parametrize("line", [attack[1] for attack in ATTACKS], ids=[attack[0] for attack in ATTACKS])
def test_injected_lines_do_not_get_through_the_server_side_filter(tmp_path: Path, line: str) -> None:
    """What the server sends for a log with an injection parses to mallory's genuine attribution."""
    extra = dict(next(attack[2] for attack in ATTACKS if attack[1] == line))
    sent = server_filter(tmp_path / "log", [GENUINE, line.encode()])
    assert parse_sasl_lines([sent]) == {MALLORY_ID: "mallory", **extra}
    assert FORGED_CLIENT.encode() not in sent.replace(b"sasl_sender=" + FORGED_CLIENT.encode(), b"")


PREFIXES = [
    "Nov 27 13:45:01 mail",  # syslog
    "Dec  1 01:02:03 mail",  # syslog, space-padded day
    "Dec 01 02:07:37 mail",  # Postfix's maillog_file (postlogd)
    "Dec 01 02:07:37.123456 mail",  # with sub-second time
    "2026-12-01T01:02:03.456789+00:00 mail",  # rsyslog's RFC 3339 (RSYSLOG_FileFormat)
    "2026-12-01T01:02:03+01:00 mail.example.org",
    "2026-12-01T01:02:03.456Z mx-1",
]
SYSLOG_NAMES = ["postfix", "postfix/submission", "postfix-out", "postfix/smtps", "postfix/lab-smtpd", "mx"]


@pytest.mark.parametrize("name", SYSLOG_NAMES)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_genuine_lines_of_every_prefix_and_syslog_name_attribute(prefix: str, name: str) -> None:
    """smtpd's client= line attributes in each log format and under any syslog_name; later lines clear."""
    smtpd, pickup = f"{prefix} {name}/smtpd[812]: ", f"{prefix} {name}/pickup[90]: "
    lines = [
        f"{smtpd}4A1: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=Victim",
        f"{smtpd}4A2: client=h.example[192.0.2.1]:54321, sasl_method=LOGIN, sasl_username=bob@lab.test, "
        "sasl_sender=bob@lab.test",
        f"{smtpd}4A3: client=unknown[2001:db8::1], sasl_method=PLAIN, sasl_username=juana",
        f"{smtpd}4A4: client=unknown[2001:db8::1], sasl_method=PLAIN, sasl_username=juana",
        f"{smtpd}4A5: client=unknown[2001:db8::1], sasl_method=PLAIN, sasl_username=juana",
    ]
    assert parse_sasl_lines([line.encode() for line in lines]) == {
        "4A1": "victim",
        "4A2": "bob@lab.test",
        "4A3": "juana",
        "4A4": "juana",
        "4A5": "juana",
    }
    newer = [f"{smtpd}4A3: client=mx.example.com[192.0.2.7]", f"{pickup}4A4: uid=0 from=<root>"]
    newer.append(f"{smtpd}4A5: client=mx.example.com[192.0.2.7], sasl_sender=juana@lab.test")
    block = "".join(f"{line}\n" for line in lines + newer).encode()
    assert parse_sasl_lines([block]) == {"4A1": "victim", "4A2": "bob@lab.test"}


def test_genuine_lines_of_every_format_get_through_the_server_side_filter(tmp_path: Path) -> None:
    """The server's filter keeps the genuine lines of each format whole."""
    lines = [
        f"{prefix} {name}/smtpd[812]: 4A{i}{j}: client=h[10.0.0.1], sasl_method=PLAIN, sasl_username=u{i}"
        for i, prefix in enumerate(PREFIXES)
        for j, name in enumerate(SYSLOG_NAMES)
    ]
    sent = server_filter(tmp_path / "log", [line.encode() for line in lines])
    assert sent.decode().splitlines() == lines
    assert len(parse_sasl_lines([sent])) == len(lines)


# Fragments an attacker would combine, plus arbitrary text between them. No LF: Postfix escapes
# it, and a whole forged line after an LF would be indistinguishable from a genuine one.
FRAGMENTS = [
    f"{MALLORY_ID}: ",
    "client=x[1.2.3.4]",
    ", sasl_method=PLAIN",
    ", sasl_username=alice",
    "uid=0 from=<root>",
    "Dec  1 01:02:03 mail ",
    "2026-12-01T01:02:03.456789+00:00 mail ",
    "postfix/smtpd[1]: ",
    "postfix/submission/smtpd[1]: ",
    "postfix/pickup[1]: ",
    FORGED_LINE,
    f"Dec  1 01:02:03 mail postfix/pickup[1]: {FORGED_PICKUP}",
    "\r",
    "\r\n",  # becomes "\r?" below: an LF never gets through
    " ",
    '"',
    "<",
    ">",
    ", ",
]
injected_text = st.lists(
    st.one_of(st.text(st.characters(blacklist_characters="\n")), st.sampled_from(FRAGMENTS)), max_size=12
).map(lambda parts: "".join(parts).replace("\n", "?"))


@settings(max_examples=300, deadline=None)
@given(text=injected_text, template=st.sampled_from([QMGR, CLEANUP, REJECT]))
def test_no_text_inside_a_field_ever_attributes(text: str, template: str) -> None:
    """Arbitrary text in from=<...> (or a logged header) of qmgr, cleanup and smtpd reject lines attributes nothing."""
    injected = template.format(text).encode("utf-8", "surrogatepass")
    assert parse_sasl_lines([injected]) == {}
    assert parse_sasl_lines([GENUINE + b"\n" + injected + b"\n"]) == {MALLORY_ID: "mallory"}
    assert parse_sasl_lines([injected + b"\n" + GENUINE + b"\n"]) == {MALLORY_ID: "mallory"}


def test_a_nul_in_the_log_does_not_hide_the_lines_after_it(tmp_path: Path) -> None:
    """After a crash a log may hold NUL bytes: grep must still send the lines (not "binary file matches")."""
    sent = server_filter(tmp_path / "log", [SYSLOG, b"\0\0\0", MAILLOG])
    assert parse_sasl_lines([sent]) == {"4ABC12": "victim", "4jbZV81P9LzBwdh": "juana@lab.test"}
