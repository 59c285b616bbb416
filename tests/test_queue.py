"""Unit tests for the streaming `postqueue -j` parser, the selection of queue IDs and the suspect."""

from __future__ import annotations

import json

import pytest

from bot.core.diagnosis import from_json, to_json
from bot.core.mailserver import Diagnosis, Selection
from bot.mail.queue import (
    QueueAggregator,
    _parse_each,
    _parse_regular,
    account_aliases,
    parse_line,
)
from bot.mail.ranking import KEEP_RANKED, PRUNE_AT, TopCounter
from bot.mail.selection import SelectionMatcher, select_ids
from bot.mail.suspects import Verdict, find_suspect
from bot.terminal.diagnosis import render_diagnosis

DOMAIN = "lab.test"
NOW = 1_700_000_000


def line(
    queue_id: str,
    sender: str,
    *recipients: str,
    queue: str = "deferred",
    age: int = 60,
    size: int = 500,
    **extra: object,
) -> bytes:
    """Return one `postqueue -j` line as Postfix prints it."""
    message = {
        "queue_name": queue,
        "queue_id": queue_id,
        "arrival_time": NOW - age,
        "message_size": size,
        "forced_expire": False,
        "sender": sender,
        "recipients": [{"address": r, "delay_reason": "connect to 127.0.0.1: refused"} for r in recipients],
        **extra,
    }
    return json.dumps(message).encode()


QUEUE = [
    line("A1", "victim@lab.test", "x1@example.com", age=600),
    line("A2", "victim@lab.test", "x2@example.com", "x3@example.com"),
    line("A3", "promo1@spam.example", "x4@example.com"),  # forged sender, sent as victim
    line("A4", "Juana@Lab.Test", "partner@customer.example", queue="active"),
    line("A5", "juan@lab.test", "juana@lab.test", queue="hold"),
    line("A6", "", "victim@lab.test"),  # a bounce to the victim: null sender
    line("A7", "bob@lab.test", "VICTIM@lab.test", "alice@lab.test", queue="incoming", size=1000),
]
LOGINS = {"A1": "victim", "A2": "victim", "A3": "victim", "A4": "juana", "A5": "juan", "A7": "bob"}


def aggregate(lines: list[bytes], logins: dict[str, str] | None = None) -> QueueAggregator:
    aggregator = QueueAggregator(login_of=logins or {}, mail_domain=DOMAIN, now=NOW)
    aggregator.add_lines(lines)
    return aggregator


def ids(selection: Selection, lines: list[bytes] = QUEUE, **filters: object) -> list[str]:
    matcher = SelectionMatcher(selection, mail_domain=DOMAIN, login_of=LOGINS)
    return list(select_ids(lines, matcher, **filters))  # type: ignore[arg-type]


def test_snapshot_counts_every_queue_sender_recipient_and_login() -> None:
    """The snapshot totals the queues, ranks senders, recipients and logins, and finds the oldest."""
    snapshot = aggregate(QUEUE, LOGINS).snapshot()
    assert snapshot.total == 7
    assert snapshot.by_queue == {"active": 1, "deferred": 4, "hold": 1, "incoming": 1, "maildrop": 0}
    assert snapshot.top_senders[0].name == "victim@lab.test" and snapshot.top_senders[0].count == 2
    assert ("MAILER-DAEMON", 1) in [(r.name, r.count) for r in snapshot.top_senders]
    assert ("victim@lab.test", 2) in [(r.name, r.count) for r in snapshot.top_recipients]
    assert [(r.name, r.count) for r in snapshot.top_sasl_logins][0] == ("victim", 3)
    assert snapshot.oldest_age_seconds == 600
    assert snapshot.total_bytes == 6 * 500 + 1000
    assert snapshot.malformed_lines == 0


def test_empty_queue_gives_an_empty_snapshot_and_no_suspect() -> None:
    """An empty listing is a valid, empty snapshot."""
    aggregator = aggregate([])
    assert aggregator.snapshot().total == 0
    assert aggregator.snapshot().oldest_age_seconds == 0
    assert find_suspect(aggregator, DOMAIN, flood_threshold=1) == Verdict(None, None)


def test_malformed_lines_are_counted_not_fatal() -> None:
    """Broken JSON, non-objects and objects without a queue ID are counted; the rest still counts."""
    bad = [b"{not json", b"[1, 2]", b'{"queue_name": "active"}', b'"text"', b"\xff\xfe", b"   "]
    snapshot = aggregate([*bad, QUEUE[0]]).snapshot()
    assert snapshot.total == 1
    assert snapshot.malformed_lines == 5  # the blank line is not a message and not an error


def test_unknown_json_members_are_ignored() -> None:
    """Members Postfix may add later do not disturb the parse."""
    message = parse_line(line("B1", "a@lab.test", "b@example.com", future_member={"x": [1]}))
    assert message is not None and message["queue_id"] == "B1"
    assert aggregate([line("B1", "a@lab.test", "b@x.example", new=1)]).snapshot().total == 1


def test_selection_by_sender_is_exact_and_case_insensitive() -> None:
    """juan selects juan's mail only, never juana's; case does not matter."""
    assert ids(Selection(sender="juan@lab.test")) == ["A5"]
    assert ids(Selection(sender="juana@lab.test")) == ["A4"]
    assert ids(Selection(sender="JUAN@LAB.TEST")) == ["A5"]
    assert ids(Selection(sender="juan")) == ["A5"]  # a bare name is the account in the mail domain
    assert ids(Selection(sender="uan@lab.test")) == []


def test_selection_by_recipient_matches_any_recipient_exactly() -> None:
    """A recipient selection matches any one of the recipients, exactly."""
    assert ids(Selection(recipient="victim@lab.test")) == ["A6", "A7"]
    assert ids(Selection(recipient="juan@lab.test")) == []
    assert ids(Selection(recipient="juana@lab.test")) == ["A5"]


def test_selection_by_sasl_login_catches_forged_senders() -> None:
    """The SASL login selects the forged-sender message too, and juan never selects juana."""
    assert ids(Selection(sasl_login="victim")) == ["A1", "A2", "A3"]
    assert ids(Selection(sasl_login="victim@lab.test")) == ["A1", "A2", "A3"]
    assert ids(Selection(sasl_login="juan")) == ["A5"]


def test_selection_fields_combine_with_and() -> None:
    """Every given field must match."""
    assert ids(Selection(sasl_login="victim", sender="victim@lab.test")) == ["A1", "A2"]


def test_null_sender_is_selected_as_mailer_daemon() -> None:
    """The null sender shows, and is selected, as MAILER-DAEMON."""
    assert ids(Selection(sender="MAILER-DAEMON")) == ["A6"]


def test_queue_filters_limit_the_selection() -> None:
    """queues= keeps only those queues; skip_queues= drops some."""
    assert ids(Selection(sender="juan@lab.test"), queues=frozenset({"deferred"})) == []
    assert ids(Selection(recipient="victim@lab.test"), skip_queues=frozenset({"incoming"})) == ["A6"]


def test_selection_survives_malformed_lines_and_other_member_order() -> None:
    """A malformed line is skipped; a line with its members in another order is still parsed."""
    reordered = json.dumps(
        {
            "sender": "juan@lab.test",
            "queue_id": "C1",
            "queue_name": "deferred",
            "recipients": [{"address": "z@x.example"}],
        }
    ).encode()
    assert ids(Selection(sender="juan@lab.test"), [b"{oops", reordered, b""]) == ["C1"]


def test_account_aliases_name_the_same_local_account() -> None:
    """user and user@mail_domain are one account; a foreign domain is not shortened."""
    assert account_aliases("Victim", DOMAIN) == {"victim", "victim@lab.test"}
    assert account_aliases("victim@lab.test", DOMAIN) == {"victim", "victim@lab.test"}
    assert account_aliases("victim@other.example", DOMAIN) == {"victim@other.example"}


def test_suspect_is_the_top_sasl_login_over_the_threshold() -> None:
    """The login behind the most queued mail is the suspect; the next candidate is the runner-up."""
    aggregator = aggregate(QUEUE, LOGINS)
    verdict = find_suspect(aggregator, DOMAIN, flood_threshold=3)
    account, runner_up = verdict.account, verdict.runner_up
    assert account is not None and (account.address, account.login) == ("victim@lab.test", "victim")
    assert runner_up is not None and runner_up.count == 1 and verdict.evidence == "sasl_login"


def test_no_suspect_below_the_threshold_but_a_runner_up() -> None:
    """Nothing at the threshold: no suspect, and the top candidate is reported as runner-up."""
    verdict = find_suspect(aggregate(QUEUE, LOGINS), DOMAIN, flood_threshold=4)
    account, runner_up = verdict.account, verdict.runner_up
    assert account is None
    assert runner_up is not None and runner_up.name == "victim" and runner_up.count == 3


def test_excluded_accounts_are_skipped() -> None:
    """An account already rejected by the director is not named again."""
    flood = [line(f"V{i}", "victim@lab.test", "x@example.com") for i in range(5)]
    flood += [line(f"J{i}", "juana@lab.test", "x@example.com") for i in range(4)]
    account = find_suspect(aggregate(flood), DOMAIN, flood_threshold=3, exclude=frozenset({"victim"})).account
    assert account is not None and account.address == "juana@lab.test"


def test_forged_foreign_senders_are_never_suspects() -> None:
    """A foreign sender address is nobody's account here, however much mail it has."""
    flood = [line(f"F{i}", "promo1@spam.example", "x@example.com") for i in range(10)]
    assert find_suspect(aggregate(flood), DOMAIN, flood_threshold=3) == Verdict(None, None)


def test_a_login_is_the_suspect_even_when_a_forged_local_sender_has_more_mail() -> None:
    """Two stolen logins send as postmaster@: the login with the most mail is named, never the sender."""
    flood = [line(f"M{i}", "postmaster@lab.test", "x@example.com") for i in range(8)]
    flood += [line(f"B{i}", "postmaster@lab.test", "x@example.com") for i in range(5)]
    logins = {**{f"M{i}": "mallory" for i in range(8)}, **{f"B{i}": "bob" for i in range(5)}}
    verdict = find_suspect(aggregate(flood, logins), DOMAIN, flood_threshold=3)
    assert verdict.account is not None and verdict.account.login == "mallory" and verdict.evidence == "sasl_login"


def test_a_sender_is_named_only_for_mail_no_login_sent_and_only_if_the_account_exists() -> None:
    """Without a login over the threshold, a local sender of unattributed mail is named if Dovecot knows it."""
    flood = [line(f"J{i}", "juan@lab.test", "x@example.com") for i in range(6)]  # no login in the log
    flood += [line(f"R{i}", "root@lab.test", "x@example.com") for i in range(9)]  # forged, no login
    flood += [line(f"K{i}", "ghost@lab.test", "x@example.com") for i in range(7)]  # no such account
    flood += [line(f"V{i}", "victim@lab.test", "x@example.com") for i in range(9)]  # sent by a login: not counted
    logins = {f"V{i}": "carol" for i in range(9)}
    known = {"juan", "root", "carol"}
    verdict = find_suspect(
        aggregate(flood, logins), DOMAIN, flood_threshold=5, exclude=frozenset({"root"}), exists=known.__contains__
    )
    # carol's 9 are a login flood: named first.
    assert verdict.account is not None and verdict.account.login == "carol"
    verdict = find_suspect(
        aggregate(flood, logins), DOMAIN, flood_threshold=10, exclude=frozenset({"root"}), exists=known.__contains__
    )
    assert verdict.account is None  # victim@ has 9 queued "from" it, but all sent by carol's login
    verdict = find_suspect(
        aggregate(flood[:22], {}), DOMAIN, flood_threshold=5, exclude=frozenset({"root"}), exists=known.__contains__
    )
    assert verdict.account is not None and verdict.account.address == "juan@lab.test"
    assert verdict.evidence == "sender_address"  # root is protected, ghost does not exist


def test_diagnosis_json_has_the_documented_keys() -> None:
    """The JSON form follows the schema in bot.core.diagnosis, survives json.dumps and reads back the same."""
    aggregator = aggregate(QUEUE, LOGINS)
    verdict = find_suspect(aggregator, DOMAIN, flood_threshold=3)
    account, runner_up = verdict.account, verdict.runner_up
    from bot.core.mailserver import Suspect

    assert account is not None
    diagnosis = Diagnosis(aggregator.snapshot(), Suspect(account, 2, 2, 3, ("Hi",)), runner_up)
    data = json.loads(json.dumps(to_json(diagnosis)))
    assert from_json(data) == diagnosis
    assert set(data) == {"schema", "queue", "suspect", "runner_up", "warnings", "protected"}
    assert data["suspect"]["login"] == "victim" and data["suspect"]["queued_by_login"] == 3
    assert data["queue"]["top_sasl_logins"][0] == {"name": "victim", "count": 3}
    text = render_diagnosis(diagnosis)
    assert "Suspect: victim@lab.test (login victim)" in text and "subject: Hi" in text


def test_a_large_queue_is_aggregated_without_keeping_messages() -> None:
    """100,000 lines aggregate into counters; per message only the IDs of local senders' open mail stay."""
    lines = (line(f"Q{i}", "victim@lab.test", "dest@example.com") for i in range(100_000))
    aggregator = aggregate(list(lines), {})
    assert aggregator.total == 100_000
    assert len(aggregator.senders.counts) == 1 and len(aggregator.recipients.counts) == 1
    assert len(aggregator.samples["victim@lab.test"]) == 3
    assert len(aggregator.open_ids(senders=["victim@lab.test"])) == 100_000


def test_rankings_stay_bounded_whatever_the_distinct_addresses() -> None:
    """A spam run to 450,000 distinct addresses from 60,000 forged senders: the rankings hold at most
    PRUNE_AT names, the real heavy hitters stay on top with counts low by at most the stated error,
    and the local suspect's own counts stay exact."""
    lines = []
    for i in range(90_000):
        sender = "victim@lab.test" if i % 3 == 0 else f"forged{i}@spam{i}.example"
        recipients = [f"r{i * 5 + k}@example.com" for k in range(5)]
        if i % 4 == 0:
            recipients.append("hot@example.com")  # a heavy hitter among the distinct ones
        if i % 10 == 0:
            recipients.append("victim@lab.test")
        lines.append(line(f"Q{i}", sender, *recipients))
    aggregator = aggregate(lines, {})
    snapshot = aggregator.snapshot()
    assert aggregator.recipients.error > 0 and aggregator.senders.error > 0, "both summaries must have pruned"
    assert len(aggregator.recipients.counts) <= PRUNE_AT and len(aggregator.senders.counts) <= PRUNE_AT
    assert aggregator.recipients.error <= 90_000 * 6.35 / (KEEP_RANKED + 1)  # N / (keep + 1)
    top = snapshot.top_recipients[0]
    assert top.name == "hot@example.com" and 22_500 - snapshot.ranking_error <= top.count <= 22_500
    assert snapshot.top_senders[0].name == "victim@lab.test"
    assert aggregator.sent_from(account_aliases("victim@lab.test", DOMAIN)) == 30_000
    assert aggregator.sent_to(account_aliases("victim@lab.test", DOMAIN)) == 9_000


def test_top_counter_error_bound_holds_on_adversarial_streams() -> None:
    """Every name's count is within `error` below its true count, and error <= N / (keep + 1)."""
    import random
    from collections import Counter

    rng = random.Random(7)
    truth: Counter[str] = Counter()
    summary = TopCounter(keep=20, prune_at=200)
    total = 0
    for _ in range(300):
        batch = [f"n{int(rng.paretovariate(0.8))}" for _ in range(rng.randrange(1, 500))]
        truth.update(batch)
        summary.update(batch)
        total += len(batch)
    assert summary.error > 0 and summary.error <= total / 21
    for name, count in truth.items():
        assert count - summary.error <= summary.get(name) <= count, name
        if count > summary.error:
            assert name in summary.counts, name


@pytest.mark.parametrize("queue_id", ["A1", "A7"])
def test_parse_line_reads_queue_id(queue_id: str) -> None:
    """parse_line returns the object with its queue ID."""
    message = parse_line(next(x for x in QUEUE if queue_id.encode() in x))
    assert message is not None and message["queue_id"] == queue_id


def test_the_fast_batch_parse_agrees_with_the_message_by_message_one() -> None:
    """Postfix's usual lines take the fast path, which must count exactly like the careful one."""
    regular = [
        QUEUE,
        [QUEUE[0], b"", QUEUE[1]],  # a blank line is skipped by both
        [line("D1", "MAILER-DAEMON", "Victim@Lab.Test"), line("D2", "Bob@Lab.Test")],  # null sender, no recipient
        [line("D3", "a@lab.test", "X@example.com", "x@EXAMPLE.com", "y@example.com")],  # an address twice
        [line("D4", "a@lab.test"), line("D5", "a@lab.test", "z@example.com", "Z@example.com")],  # 0 and 2 recipients
        [],
    ]
    for lines in regular:
        fast = _parse_regular(lines)
        assert fast is not None
        assert fast == _parse_each(lines)
    assert _parse_each(regular[3]).recipients.count("x@example.com") == 1
    assert _parse_each(regular[4]).recipients == ["z@example.com"]


@pytest.mark.parametrize(
    "odd",
    [
        b"{oops",
        b"[1, 2]",
        b'{"queue_name": "active"}',  # no queue ID
        b"   ",
        line("E1", "a@lab.test", "b@example.com").replace(b'"message_size": 500', b'"message_size": "500"'),
        line("E3", "a@lab.test", "b@example.com").replace(b'"arrival_time": 1699999940', b'"arrival_time": 1.5'),
        line("E4", "a@lab.test", "b@example.com")[:-1] + b', "x": 1}, {"queue_id": "E5"}',  # two values, one line
        b'{"queue_name": "deferred", "queue_id": "E6", "sender": null, "recipients": []}',
    ],
)
def test_an_unusual_line_sends_its_batch_the_careful_way(odd: bytes) -> None:
    """Anything the fast path does not expect is left to the message-by-message parse, which agrees with it."""
    lines = [QUEUE[0], odd, QUEUE[1]]
    assert _parse_regular(lines) is None
    careful = _parse_each(lines)
    aggregator = aggregate(lines)
    assert aggregator.total == len(careful.ids) and aggregator.malformed == careful.malformed


def test_the_terminal_says_when_rankings_are_estimates() -> None:
    """A pruned ranking is said to be low by up to its error; an exact one says nothing."""
    from bot.core.mailserver import QueueSnapshot

    exact = Diagnosis(snapshot=QueueSnapshot(total=3), suspect=None)
    estimated = Diagnosis(snapshot=QueueSnapshot(total=3, ranking_error=12), suspect=None)
    assert "may be low" not in render_diagnosis(exact)
    assert "may be low by up to 12" in render_diagnosis(estimated)
    assert to_json(estimated)["queue"]["ranking_error"] == 12
    assert from_json(to_json(estimated)).snapshot.ranking_error == 12
