"""Unit tests for the Postfix log parser and the check_sasl_access map editing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bot.mail.executor import reblocked
from bot.mail.sasl import LOG_FILTER, LOG_TRIM, blocked_keys, login_keys, parse_sasl_lines, rank_logins, set_block

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
    argv = reblocked([*LOG_FILTER, str(log)], through=LOG_TRIM)
    return subprocess.run(argv, capture_output=True, check=True).stdout


def test_the_server_side_filter_output_parses_the_same(tmp_path: Path) -> None:
    """What grep -F and sed send back is shorter than the log and parses like the whole lines."""
    for whole in (SYSLOG, MAILLOG):
        found = server_filter(tmp_path / "log", [whole])
        assert found.startswith((b"4ABC12: client=", b"4jbZV81P9LzBwdh: client=")) and len(found) < len(whole)
        assert parse_sasl_lines(found.splitlines()) == parse_sasl_lines([whole])
    # Of the noise, only the message accepted without SASL is sent (it clears a reused ID), and it names no login.
    kept = server_filter(tmp_path / "log", NOISE)
    assert kept == b"5DEF34: client=localhost[127.0.0.1]\n"
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
