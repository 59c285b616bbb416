"""Ack latency and correctness of `mailfix serve` under a mixed load: 5 servers with open incidents, 1,000
signed requests (commands, status, clicks, double clicks, stale clicks, Slack retries), 50 at a time,
on SQLite and on PostgreSQL.

    python3 bench/load.py [--db sqlite|postgres|both] [--requests 1000] [--concurrency 50] [--seed 12]

The bot runs for real (gunicorn `mailfix serve`, the scheduler checking the monitored incidents every
30 s, the default) against the tests' fake Slack Web API and five file-backed fake mail servers (bench/fleet.py).
Set-up, not measured: an incident is started on each server through Slack; on mail2 a director says
"Not this account" (the victim's approval goes stale, mallory is asked about); mail4's cleanup is
approved and fails at the password change. Then the measured burst, each click answering what the
incident asks now or something it no longer asks:

    mail1  "Approve cleanup" by a director, clicked twice at once, again and again   → approved once
    mail2  "Not this account" on mallory, and the victim's stale approval            → rejected once
    mail3  "Abort", clicked twice at once, again and again                            → aborted once
    mail4  "Retry step", clicked twice at once, again and again                       → retried once
    mail5  "Approve" by an operator, and a reboot approval nobody asked for            → nothing
    plus   /mailfix status N, status, list, and start <server> on servers with an open incident
           ("already open"), and Slack's redeliveries (X-Slack-Retry-Num) of requests already sent.

Errors: a non-2xx ack, an ack slower than Slack's 3 s (or none), an ERROR line in the bot's log,
"Something went wrong" posted to Slack, a command never answered. After the burst the incidents'
audit trails must hold exactly the person events above, no incident may be opened by the "start"s,
and each server's password must have been changed only where a cleanup ran, once. The target is
p99 under 500 ms with zero errors on every database; the exit status is 1 when it is missed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script: import bot and tests from the checkout, and never bench/queue.py as the standard
# library's queue (the script's own folder comes first on sys.path).
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from bench.fleet import domain_of, write_fleet  # noqa: E402
from bench.latency import cut, describe  # noqa: E402
from bot.core.table import WORKING, Event  # noqa: E402
from tests.conftest import DIRECTOR, OPERATOR  # noqa: E402
from tests.fakes import FakeMailServer  # noqa: E402
from tests.slack.conftest import BOT_TOKEN, Bot, Response, SlackSender, start_bot, stop_bot  # noqa: E402
from tests.slack.fake_slack import FakeSlack, FakeSlackServer  # noqa: E402

TARGET_P99 = 0.500
SLACK_TIMEOUT = 3.0  # Slack gives up on an ack after 3 s (and retries the request)
SERVERS = [f"mail{i}" for i in range(1, 6)]  # incident i is opened on mail<i>
OPEN_ALL_ALONG = ["mail1", "mail2", "mail4", "mail5"]  # mail3's incident is aborted during the burst
PERSON_EVENTS = {Event.APPROVE, Event.REJECT, Event.PICK, Event.ABORT, Event.RETRY, Event.APPROVE_REBOOT}
PERSON_EVENTS |= {Event.RENEW, Event.RESOLVE_NOW, Event.CONTAIN, Event.DIAGNOSE}
EXPECTED = {1: {"approve": 1}, 2: {"reject": 1}, 3: {"abort": 1}, 4: {"retry": 1}, 5: {}}
PASSWORD_CHANGES = {"mail1": 1, "mail2": 0, "mail3": 0, "mail4": 1, "mail5": 0}
ERROR_LINE = re.compile(r"\bERROR\b|Traceback")
WENT_WRONG = "Something went wrong"


@dataclass(frozen=True)
class Planned:
    """One request of the burst: a slash command (`text`) or a click (`action`, `value`)."""

    kind: str
    user: str
    trigger: str
    text: str | None = None
    action: str = ""
    value: str = ""
    retry: int | None = None  # X-Slack-Retry-Num: a redelivery of `trigger`, sent earlier in the burst


@dataclass(frozen=True)
class Outcome:
    planned: Planned
    began: float
    seconds: float
    error: str = ""  # "no ack", "non-2xx ack" or "ack over 3 s"
    detail: str = ""


# What the burst clicks, by kind: (action_id, value, user), the values as the incident messages showed them.
Buttons = dict[str, tuple[str, str, str]]


def send(sender: SlackSender, p: Planned) -> Response:
    if p.text is not None:
        return sender.command(p.text, p.user, retry=p.retry, trigger_id=p.trigger)[0]
    return sender.click(p.action, p.user, value=p.value, retry=p.retry, trigger_id=p.trigger)[0]


def shown_value(bot: Bot, action_id: str, incident_id: int, unlike: str = "", timeout: float = 20.0) -> str:
    """Return the value of `action_id` on the incident message once it differs from `unlike`."""
    deadline = time.monotonic() + timeout
    while (value := bot.button_value(action_id, incident_id)) == unlike:
        if time.monotonic() > deadline:
            raise RuntimeError(f"incident #{incident_id}'s {action_id} button still carries {unlike!r}")
        time.sleep(0.05)
    return value


def prepare(bot: Bot) -> Buttons:
    """Open an incident per server and bring each to where the burst finds it; return what it clicks."""
    for n, name in enumerate(SERVERS, 1):
        ack, _ = bot.sender.command(f"start {name}", OPERATOR)
        if ack.status != 200:
            raise RuntimeError(f"/mailfix start {name}: HTTP {ack.status} {ack.body[:200]}")
        bot.wait_contained(n)
    victim_approval = bot.button_value("approve_cleanup", 2)
    bot.sender.click("not_this_account", DIRECTOR, value=bot.button_value("not_this_account", 2))
    bot.wait_incident(
        lambda i: i.state == "awaiting_approval" and i.suspect_address == "mallory@" + domain_of("mail2"),
        "asked about mallory",
        incident_id=2,
    )
    bot.click_button("approve_cleanup", DIRECTOR, 4)
    bot.wait_state("failed", incident_id=4)
    cleanup5 = bot.button_value("approve_cleanup", 5)
    # The approve and "Not this account" buttons carry the same value: the approval they answer.
    return {
        "approve (double click)": ("approve_cleanup", bot.button_value("approve_cleanup", 1), DIRECTOR),
        "not this account": (
            "not_this_account",
            shown_value(bot, "not_this_account", 2, victim_approval),
            DIRECTOR,
        ),
        "stale approval (old id)": ("approve_cleanup", victim_approval, DIRECTOR),
        "abort (double click)": ("abort", bot.button_value("abort", 3), OPERATOR),
        "retry (double click)": ("retry_step", bot.button_value("retry_step", 4), OPERATOR),
        "approve by an operator": ("approve_cleanup", cleanup5, OPERATOR),
        "reboot approval nobody asked": ("approve_reboot", cleanup5, DIRECTOR),
    }


# kind → weight in the burst; a "double click" kind sends two identical clicks side by side
MIX = {
    "status N": 25,
    "status": 10,
    "list": 10,
    "start (already open)": 10,
    "approve (double click)": 5,
    "not this account": 4,
    "stale approval (old id)": 4,
    "abort (double click)": 3,
    "retry (double click)": 3,
    "approve by an operator": 3,
    "reboot approval nobody asked": 3,
    "Slack retry": 10,
}


def plan(buttons: Buttons, requests: int, concurrency: int, seed: int) -> list[Planned]:
    """Return the burst: `requests` requests drawn from MIX, the same for a given seed."""
    rng = random.Random(seed)
    burst: list[Planned] = []
    kinds, weights = list(MIX), list(MIX.values())
    while len(burst) < requests:
        kind = rng.choices(kinds, weights)[0]
        n = len(burst)
        if kind == "Slack retry":
            # A redelivery of a request sent at least `concurrency` places earlier: it was sent already.
            earlier = [p for p in burst[: max(0, n - concurrency)] if p.retry is None]
            if earlier:
                burst.append(Planned("Slack retry", **_retry_of(rng.choice(earlier))))
            continue
        if kind in buttons:
            action, value, user = buttons[kind]
            for trigger in (f"load-{n}", f"load-{n}-twin")[: 2 if "double" in kind else 1]:
                burst.append(Planned(kind, user, trigger, action=action, value=value))
            continue
        text = {
            "status N": f"status {rng.randint(1, len(SERVERS))}",
            "status": "status",
            "list": "list",
            "start (already open)": f"start {rng.choice(OPEN_ALL_ALONG)}",
        }[kind]
        burst.append(Planned(kind, OPERATOR, f"load-{n}", text=text))
    return burst[:requests]


def _retry_of(p: Planned) -> dict:
    return {"user": p.user, "trigger": p.trigger, "text": p.text, "action": p.action, "value": p.value, "retry": 1}


def fire(sender: SlackSender, burst: list[Planned], concurrency: int) -> list[Outcome]:
    """Send the burst, `concurrency` at a time; return each request's outcome."""

    def one(p: Planned) -> Outcome:
        began = time.perf_counter()
        try:
            ack = send(sender, p)
        except OSError as exc:  # no answer at all (refused, reset, timed out)
            return Outcome(p, began, time.perf_counter() - began, "no ack", type(exc).__name__)
        if not 200 <= ack.status < 300:
            return Outcome(p, began, ack.seconds, "non-2xx ack", f"HTTP {ack.status} {ack.body[:100]}")
        if ack.seconds > SLACK_TIMEOUT:
            return Outcome(p, began, ack.seconds, "ack over 3 s", f"{ack.seconds:.1f}s")
        return Outcome(p, began, ack.seconds)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, burst))


def most_in_flight(outcomes: list[Outcome]) -> int:
    edges = sorted([(o.began, 1) for o in outcomes] + [(o.began + o.seconds, -1) for o in outcomes])
    flying = peak = 0
    for _, step in edges:
        flying += step
        peak = max(peak, flying)
    return peak


def overlapping_pairs(outcomes: list[Outcome]) -> tuple[int, int]:
    """Return how many double clicks were in flight at the same time, of how many."""
    first = {o.planned.trigger: o for o in outcomes if o.planned.retry is None}
    pairs = [
        (first[o.planned.trigger.removesuffix("-twin")], o)
        for o in first.values()
        if o.planned.trigger.endswith("-twin")
    ]
    overlapped = sum(1 for a, b in pairs if b.began < a.began + a.seconds and a.began < b.began + b.seconds)
    return overlapped, len(pairs)


def person_events(bot: Bot) -> dict[int, Counter[str]]:
    return {
        n: Counter(e.action for e in bot.repo.audit_events(incident_id=n) if e.action in PERSON_EVENTS)
        for n in range(1, len(SERVERS) + 1)
    }


def settle(bot: Bot, burst: list[Planned], timeout: float = 60.0) -> list[str]:
    """Wait until no incident runs steps and every command got its reply; return the commands never answered."""
    deadline = time.monotonic() + timeout
    commands = {p.trigger for p in burst if p.text is not None}
    while True:
        busy = [i for i in bot.repo.list_incidents() if i.state in WORKING]
        replied = {c.path.rsplit("/", 1)[-1] for c in bot.slack.calls_to("respond")}
        missing = sorted(commands - replied)
        if (not busy and not missing) or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def check_effects(bot: Bot, before: dict[int, Counter[str]], fleet: Path, burst: list[Planned]) -> list[str]:
    """Return what the burst did wrong: person events other than EXPECTED, new incidents, extra password changes."""
    wrong = []
    after = person_events(bot)
    for n, expected in EXPECTED.items():
        done = dict(after[n] - before[n])
        if done != expected:
            wrong.append(f"incident #{n}: the burst fired {done or 'nothing'}, expected {expected or 'nothing'}")
    if (retried := bot.incident(4)).state == "failed":
        wrong.append(f"incident #4 failed again after its retry: {retried.failure}")
    if (count := len(bot.repo.list_incidents())) != len(SERVERS):
        wrong.append(f"{count} incidents: a start on a server with an open incident opened another")
    for name, changes in PASSWORD_CHANGES.items():
        changed = len(FakeMailServer.from_file(fleet / f"{name}.json").calls_to("change_password"))
        if changed != changes:
            wrong.append(f"{name}: the password was changed {changed} times, expected {changes}")
    starts = {p.trigger for p in burst if p.kind == "start (already open)"}
    refused = [c for c in bot.slack.calls_to("respond") if c.path.rsplit("/", 1)[-1] in starts]
    if not_busy := [c for c in refused if "already open" not in str(c.params.get("text", ""))]:
        wrong.append(f"{len(not_busy)} starts were not answered 'already open': {not_busy[0].params.get('text')!r}")
    return wrong


@dataclass
class Result:
    db: str
    outcomes: list[Outcome]
    seconds: float
    errors: dict[str, int]
    wrong: list[str]
    details: list[str]

    @property
    def met(self) -> bool:
        latencies = [o.seconds for o in self.outcomes]
        return cut(latencies, 99) < TARGET_P99 and not sum(self.errors.values()) and not self.wrong


def run(db: str, database_url: str | None, args: argparse.Namespace) -> Result:
    slack = FakeSlack(token=BOT_TOKEN, users={f"victim@{domain_of(s)}": f"UVICTIM{i}" for i, s in enumerate(SERVERS)})
    with FakeSlackServer(slack), tempfile.TemporaryDirectory() as tmp:
        fleet = Path(tmp) / "fleet"
        fleet.mkdir()
        env = {
            "MAILFIX_CONFIG": str(write_fleet(fleet, SERVERS)),
            "MAILFIX_MAILSERVER": "bench.fleet:fleet_server",
            "BENCH_FLEET_DIR": str(fleet),
            "BENCH_FAIL_ONCE": "mail4:change_password",
        }
        bot = start_bot(Path(tmp), slack, **env, **({"MAILFIX_DATABASE_URL": database_url} if database_url else {}))
        try:
            burst = plan(prepare(bot), args.requests, args.concurrency, args.seed)
            fire(bot.sender, [Planned("warm-up", OPERATOR, f"warm-{i}", text="list") for i in range(50)], 10)
            log_from, calls_from, before = len(bot.log()), len(slack.calls), person_events(bot)
            began = time.perf_counter()
            outcomes = fire(bot.sender, burst, args.concurrency)
            seconds = time.perf_counter() - began
            unanswered = settle(bot, burst)
            wrong = check_effects(bot, before, fleet, burst)
            went_wrong = sum(WENT_WRONG in str(c.params) for c in slack.calls[calls_from:])
        finally:
            stop_bot(bot)
        error_lines = [line for line in bot.log()[log_from:].splitlines() if ERROR_LINE.search(line)]
    errors = {
        **{e: sum(o.error == e for o in outcomes) for e in ("no ack", "non-2xx ack", "ack over 3 s")},
        "ERROR lines in the bot's log": len(error_lines),
        f'"{WENT_WRONG}" in Slack': went_wrong,
    }
    errors["commands never answered"] = len(unanswered)
    overlapped, pairs = overlapping_pairs(outcomes)
    details = [f"double clicks in flight together: {overlapped} of {pairs} pairs"]
    details += [f"  {line[:200]}" for line in error_lines[:5]]
    details += [f"  {o.planned.kind}: {o.error} ({o.detail})" for o in outcomes if o.error][:3]
    return Result(db, outcomes, seconds, errors, wrong, details)


def report(result: Result, concurrency: int) -> None:
    latencies = [o.seconds for o in result.outcomes]
    mix = Counter(o.planned.kind for o in result.outcomes)
    n = len(result.outcomes)
    print(
        f"\n{result.db}: {n} signed requests, {concurrency} concurrent (at most "
        f"{most_in_flight(result.outcomes)} in flight), in {result.seconds:.1f}s ({n / result.seconds:.0f}/s)"
    )
    print("  mix: " + ", ".join(f"{kind} {count}" for kind, count in mix.most_common()))
    print(f"  ack latency: {describe(latencies, (50, 90, 99))}")
    print(f"  errors: {sum(result.errors.values())} (" + ", ".join(f"{k} {v}" for k, v in result.errors.items()) + ")")
    for line in result.details:
        print(f"  {line}")
    expected = "; ".join(f"#{i} {e or 'nothing'}" for i, e in EXPECTED.items())
    print(f"  effects: {'as the clicks allow' if not result.wrong else 'WRONG'} ({expected})")
    for line in result.wrong:
        print(f"    {line}")
    print(f"  target p99 < {TARGET_P99 * 1000:.0f} ms, zero errors, right effects: {'met' if result.met else 'MISSED'}")


@contextmanager
def postgres_url() -> Iterator[str]:
    from tests.postgres import new_database, postgres_server

    if os.geteuid() != 0 and not os.environ.get("MAILFIX_TEST_POSTGRES_URL"):
        raise SystemExit(
            "the PostgreSQL run starts a private cluster as root: run as root or set MAILFIX_TEST_POSTGRES_URL"
        )
    with postgres_server() as admin:
        yield new_database(admin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seed", type=int, default=12, help="the burst's mix and order")
    args = parser.parse_args(argv)
    if args.requests < 10 or not 1 <= args.concurrency <= args.requests:
        parser.error("--requests must be at least 10 and --concurrency between 1 and --requests")
    results = []
    if args.db in ("sqlite", "both"):
        results.append(run("SQLite", None, args))
        report(results[-1], args.concurrency)
    if args.db in ("postgres", "both"):
        with postgres_url() as url:
            results.append(run("PostgreSQL", url, args))
        report(results[-1], args.concurrency)
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
