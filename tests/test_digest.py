"""The queue's digest (bot.mail.digest): the real perl script run on crafted and random listings must
leave the aggregates exactly as parsing the whole JSON listing does, and never read a crafted line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import CommandFailed
from bot.mail.digest import HEADER, WHOLE, DigestReader, digest_filter
from bot.mail.queue import QueueAggregator
from bot.mail.ranking import KEEP_RANKED, PRUNE_AT

DOMAIN = "lab.test"
NOW = 1_700_000_000
LOGINS = {"Q1": "victim", "Q2": "victim", "Q9": "Other"}


def message(queue_id: str, sender: str, *recipients: str, queue: str = "deferred", **extra: object) -> dict:
    return {
        "queue_name": queue,
        "queue_id": queue_id,
        "arrival_time": NOW - 60,
        "message_size": 900,
        "forced_expire": False,
        "sender": sender,
        "recipients": [{"address": r, "delay_reason": "connect to mx: refused"} for r in recipients],
        **extra,
    }


def dumps(value: object, *, ascii_only: bool = True) -> bytes:
    """A line as Postfix prints it: ", " and ": " separators, quotes and backslashes escaped."""
    return json.dumps(value, ensure_ascii=ascii_only).encode()


def tricky(queue_id: str, address: str, reason: str) -> bytes:
    """A message whose delay_reason (text a remote server chose) is `reason`."""
    value = message(queue_id, "victim@lab.test")
    value["recipients"] = [{"address": address, "delay_reason": reason}]
    return dumps(value)


CRAFTED = [
    dumps(message("Q1", "Victim@Lab.Test", "A@example.com", "a@example.com", "boss@lab.test", "root")),
    dumps(message("Q2", "", "victim@lab.test", queue="hold")),
    dumps(message("Q3", "MAILER-DAEMON", "victim@LAB.test", queue="active")),
    # A delay_reason that spells out another recipient and the end of the line.
    tricky("Q4", "x@example.com", '"}, {"address": "boss@lab.test"}]}\n{"queue_name": "hold'),
    tricky("Q5", "y@example.com", "ends in a backslash \\"),
    tricky("Q6", "z@example.com", "\t tab, \u202e and señal"),
    # Addresses only JSON's escapes can spell: parsed by the bot, never by the script.
    dumps(message("Q7", 'a"b@lab.test', "c\\d@lab.test", "e\tf@lab.test")),
    dumps(message("Q8", "josé@lab.test", "ñu@lab.test"), ascii_only=False),
    dumps(message("Q9", "josé@lab.test", "ñu@lab.test")),
    dumps(message("Q10", "victim@lab.test.evil.example", "victim@lab.test.evil.example", "victim@evil-lab.test")),
    # Members or shapes the script does not know, and lines that are no message at all.
    dumps(message("Q11", "victim@lab.test", "boss@lab.test", extra_member=1)),
    # Postfix before 3.5 prints no forced_expire: read all the same.
    dumps({k: v for k, v in message("Q12", "victim@lab.test", "x@example.com").items() if k != "forced_expire"}),
    dumps({**message("Q13", "victim@lab.test", "boss@lab.test"), "message_size": True}),
    dumps({**message("Q14", "victim@lab.test"), "recipients": [{"address": "w@lab.test", "orig": 1}]}),
    dumps(message("Q15", "victim@lab.test")),
    dumps(message("Q-16", "victim@lab.test", "boss@lab.test")),
    # One address with two "@" and one with none: the quick search for local recipients must see "root".
    dumps(message("Q20", "spam@example.com", "a@@b.example", "root")),
    # Lines a JSON parser reads differently from, or refuses unlike, a pattern (found in review).
    b'{"queue_name": "deferred", "queue_id": "Q22", "arrival_time": 1699999940, "message_size": 900, '
    b'"sender": "spam@example.com", "recipients": [{"address": "x@example.com", "address": "boss@lab.test"}]}',
    *(
        tricky(queue_id, "boss@lab.test", "@").replace(b'"@"', reason)
        for queue_id, reason in [
            ("Q23", b'"a\x01b"'),
            ("Q24", b'"a\xffb"'),
            ("Q25", b'"a\\qb"'),
            ("Q26", b'"\\ud800"'),
            ("Q27", b'"\\ud83d\\ude00"'),
        ]
    ),
    tricky("Q28", "boss@lab.test", "x").replace(b'"message_size": 900', b'"message_size": 0900'),
    # An active message's recipient has no delay_reason yet.
    dumps({**message("Q21", "victim@lab.test"), "recipients": [{"address": "boss@lab.test"}]}),
    b"garbage",
    b"   ",
    b' {"queue_name": "deferred", "queue_id": "Q18", "sender": "", "recipients": []}',
    b"d\tQ19\tvictim@lab.test",
    b".\t1\t1",
    b"R\t99999\tboss@lab.test",
    b'{"queue_name": "deferred", "queue_id": "Q17"',
    b"[1, 2]",
    b"",
]


def run_digest(listing: list[bytes], env: dict[str, str] | None = None) -> bytes:
    data = b"".join(line + b"\n" for line in listing)
    script = digest_filter()
    return subprocess.run(["sh", "-c", script], input=data, capture_output=True, check=True, env=env).stdout


def through_digest(listing: list[bytes], *, block_lines: int = 3) -> QueueAggregator:
    """Aggregate `listing` as a diagnosis does: digested by the script, read in blocks of lines."""
    aggregator = QueueAggregator(login_of=LOGINS, mail_domain=DOMAIN, now=NOW)
    reader = DigestReader(aggregator, "lab")
    lines = run_digest(listing).splitlines()
    assert lines[0] == HEADER
    reader.add_batch(lines[:1])
    for start in range(1, len(lines), block_lines):  # batches of messages as add_lines makes them
        reader.add_batch(lines[start : start + block_lines])
    reader.finish()
    return aggregator


def parsed_whole(listing: list[bytes]) -> QueueAggregator:
    aggregator = QueueAggregator(login_of=LOGINS, mail_domain=DOMAIN, now=NOW)
    aggregator.add_lines(listing)
    return aggregator


def findings(aggregator: QueueAggregator) -> dict[str, object]:
    """Everything a diagnosis reads from the aggregator (the order of IDs aside)."""

    def ids(by_name: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: sorted(found) for name, found in by_name.items()}

    return {
        "snapshot": aggregator.snapshot(),
        "senders": dict(aggregator.senders.counts),
        "recipients": dict(aggregator.recipients.counts),
        "error": (aggregator.senders.error, aggregator.recipients.error),
        "local": (aggregator.local_senders, aggregator.local_recipients, aggregator.logins),
        "unattributed": aggregator.unattributed_senders,
        "ids": [ids(x) for x in (aggregator.open_ids_by_sender, aggregator.held_ids_by_sender,
                                 aggregator.open_ids_by_login, aggregator.held_ids_by_login,
                                 aggregator.ids_by_recipient)],
        "samples": {name: sorted(found) for name, found in aggregator.samples.items()},
    }  # fmt: skip


def test_the_digest_finds_what_the_whole_listing_shows_on_crafted_lines() -> None:
    assert findings(through_digest(CRAFTED)) == findings(parsed_whole(CRAFTED))


def test_the_script_reads_only_lines_of_postfix_shape_and_passes_the_rest_as_they_came() -> None:
    lines = run_digest(CRAFTED).splitlines()
    read = {line.split(b"\t")[1] for line in lines if line[:2] in (b"a\t", b"d\t", b"h\t")}
    assert read == {b"Q1", b"Q2", b"Q3", b"Q4", b"Q5", b"Q6", b"Q10", b"Q12", b"Q15", b"Q20", b"Q21"}
    passed = [line.removeprefix(b"j\t") for line in lines if line.startswith(b"j\t")]
    assert passed == [line for line in CRAFTED if line and json_id(line) not in read]
    # What the delay_reason spelled out is not read as a recipient, and local recipients are exact.
    assert b"d\tQ4\tvictim@lab.test\tx@example.com" in lines
    assert b"d\tQ1\tvictim@lab.test\ta@example.com\ta@example.com\tboss@lab.test\troot" in lines
    assert lines[-1] == b".\t9900\t1699999940"  # the 11 messages it read


def json_id(line: bytes) -> bytes | None:
    try:
        return json.loads(line)["queue_id"].encode()
    except (ValueError, KeyError, TypeError):
        return None


addresses = st.one_of(
    st.sampled_from(["victim@lab.test", "VICTIM@lab.test", "boss@lab.test", "root", "x@example.com", ""]),
    st.sampled_from(["a@@b.example", "x@lab.test@evil.example", "@", "@lab.test", "lab.test"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.text(alphabet='ab@."\\\t ', max_size=8),
)
messages = st.builds(
    lambda queue_id, queue, sender, recipients, reasons: {
        **message(queue_id, sender, queue=queue),
        "recipients": [
            {"address": a} if r is None else {"address": a, "delay_reason": r}
            for a, r in zip(recipients, reasons, strict=False)
        ],
    },
    queue_id=st.sampled_from(["Q1", "Q2", "Q9", "QA", "QB"]),
    queue=st.sampled_from(["active", "deferred", "hold", "incoming"]),
    sender=addresses,
    recipients=st.lists(addresses, max_size=5),
    reasons=st.lists(st.none() | st.text(max_size=20), min_size=5, max_size=5),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(messages, st.booleans()), max_size=12))
def test_the_digest_finds_what_the_whole_listing_shows_on_any_listing(drawn: list[tuple[dict, bool]]) -> None:
    listing = [dumps(value, ascii_only=ascii_only) for value, ascii_only in drawn]
    assert findings(through_digest(listing, block_lines=4)) == findings(parsed_whole(listing))


def test_the_digest_ranks_as_the_whole_listing_does_beyond_the_pruning() -> None:
    """Past PRUNE_AT distinct recipients the ranking is a summary: fed in the same batches, the same one; the
    heavy hitters within its bound and the local counts exact."""
    heavy = {f"heavy{i}@example.com": 400 - i for i in range(20)}
    listing, n = [], 0
    for i in range(PRUNE_AT + 20_000):
        recipients = [f"once{i}@example.com", *(a for a, count in heavy.items() if i < count), "victim@lab.test"]
        listing.append(dumps(message(f"M{i}", "spam@example.com", *recipients)))
        n += len(recipients)
    aggregator = through_digest(listing, block_lines=4096)
    assert findings(aggregator) == findings(parsed_whole(listing))
    error = aggregator.recipients.error
    assert 0 < error <= n // (KEEP_RANKED + 1)
    for address, count in heavy.items():
        assert count - error <= aggregator.recipients.get(address) <= count
    assert aggregator.local_recipients["victim@lab.test"] == len(listing)  # the suspect's own: exact


def test_a_message_with_40000_recipients_is_counted_whole() -> None:
    """Older perls stop repeating a complex group at 32,766 (the line would then travel as JSON); either way
    every recipient counts."""
    recipients = [f"r{i}@example.com" for i in range(40_000)] + ["victim@lab.test"]
    listing = [dumps(message("BIG", "spam@example.com", *recipients)), dumps(message("Q1", "victim@lab.test", "x@y"))]
    aggregator = through_digest(listing)
    assert findings(aggregator) == findings(parsed_whole(listing))
    assert aggregator.local_recipients["victim@lab.test"] == 1 and aggregator.total == 2


def test_a_digest_cut_short_is_an_error_not_a_short_listing() -> None:
    lines = run_digest(CRAFTED[:3]).splitlines()
    reader = DigestReader(QueueAggregator(login_of={}, mail_domain=DOMAIN), "lab")
    reader.add_batch(lines[:-1])
    with pytest.raises(CommandFailed, match="cut short"):
        reader.finish()


def test_output_that_is_empty_or_goes_on_after_the_end_is_an_error() -> None:
    reader = DigestReader(QueueAggregator(login_of={}, mail_domain=DOMAIN), "lab")
    with pytest.raises(CommandFailed, match="empty"):
        reader.finish()  # perl killed before it wrote anything: not an empty queue
    lines = run_digest(CRAFTED[:2]).splitlines()
    with pytest.raises(CommandFailed, match="after its end"):
        reader.add_batch([*lines, b"d\tQ9\tvictim@lab.test"])
    with pytest.raises(CommandFailed, match="did not start"):
        DigestReader(QueueAggregator(login_of={}, mail_domain=DOMAIN), "lab").add_batch(CRAFTED[:1])


def test_an_empty_queue_is_a_whole_digest() -> None:
    aggregator = through_digest([])
    assert aggregator.total == 0 and aggregator.snapshot().oldest_age_seconds == 0


def test_without_perl_the_diagnosis_reads_the_whole_listing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "echo"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    plain = run_digest(CRAFTED, env={"PATH": str(bin_dir)})
    assert plain == WHOLE + b"\n" + b"".join(line + b"\n" for line in CRAFTED)
    aggregator = QueueAggregator(login_of=LOGINS, mail_domain=DOMAIN, now=NOW)
    reader = DigestReader(aggregator, "lab")
    reader.add_batch(plain.splitlines())
    reader.finish()
    assert findings(aggregator) == findings(parsed_whole(CRAFTED))
