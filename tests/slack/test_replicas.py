"""Two `mailfix serve` replicas on one PostgreSQL with one signing secret: what a person sees happens once.

Both replicas run the scheduler and the flood watch, talk to one fake Slack and to one file-backed fake
mail server, whose calls each replica traces (process id, start and end) to prove the racers overlapped.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.config import ServerConfig
from bot.errors import CommandFailed
from storage.db import upgrade
from tests.clitools import fake_env, write_config
from tests.fakes import FakeMailServer, file_server
from tests.postgres import new_database
from tests.slack.conftest import BOT_TOKEN, VICTIM, Bot, Response, start_bot, stop_bot
from tests.slack.fake_slack import FakeSlack, FakeSlackServer

OPERATOR, DIRECTOR, DIRECTOR2 = "UOPERATOR1", "UDIRECTOR1", "UDIRECTOR2"
INTERVAL = 0.2  # check_interval_seconds of tests.clitools.write_config


def replica_server(server: ServerConfig) -> FakeMailServer:
    """MAILFIX_MAILSERVER entry point: the shared file-backed fake, traced per process; `delete` fails while
    $REPLICA_FAIL_FLAG exists; `health` takes $REPLICA_HEALTH_SECONDS (a check over a slow link)."""
    fake = file_server(server)
    trace = Path(os.environ["REPLICA_TRACE"]) / f"{os.getpid()}.jsonl"
    flag = Path(os.environ["REPLICA_FAIL_FLAG"])
    pause = float(os.environ.get("REPLICA_HEALTH_SECONDS") or 0)

    def traced(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            if name == "delete" and flag.exists():
                raise CommandFailed(fake.name, "postsuper: fatal: queue file write error (test)")
            began = time.time()
            try:
                if name == "health":
                    time.sleep(pause)
                return call(*args, **kwargs)
            finally:
                with trace.open("a") as out:
                    out.write(
                        json.dumps({"pid": os.getpid(), "call": name, "began": began, "ended": time.time()}) + "\n"
                    )

        return run

    for name in ("diagnose", "health", "delete"):
        setattr(fake, name, traced(name, getattr(fake, name)))
    return fake


@dataclass
class SlowAlertSlack(FakeSlack):
    """The fake Slack, slow to take a flood alert's message: the window in which a second replica could post it."""

    alert_seconds: float = 1.5
    alert_windows: list[tuple[float, float]] = field(default_factory=list)

    def handle(self, method: str, params: dict[str, Any], auth: str, path: str) -> dict[str, Any]:
        if method != "chat.postMessage" or not str(params.get("text", "")).startswith("Flood on"):
            return super().handle(method, params, auth, path)
        began = time.time()
        time.sleep(self.alert_seconds)  # outside the fake's lock: other calls go on meanwhile
        try:
            return super().handle(method, params, auth, path)
        finally:
            self.alert_windows.append((began, time.time()))


@pytest.fixture
def slack() -> Iterator[SlowAlertSlack]:
    fake = SlowAlertSlack(token=BOT_TOKEN, users={"victim@example.org": VICTIM})
    with FakeSlackServer(fake) as running:
        yield running  # type: ignore[misc]


@dataclass
class Pair:
    a: Bot
    b: Bot
    trace: Path
    fail_flag: Path

    def flood(self) -> None:
        """Queue victim@example.org's flood now (both replicas see the same file-backed server)."""
        server = FakeMailServer.from_file(Path(self.a.env["FAKE_MAILSERVER_STATE"]))
        server.flood("victim", 300)
        server._save()  # noqa: SLF001 - the fake's own persistence

    def calls(self, name: str) -> list[dict[str, Any]]:
        """Return the traced mail-server calls `name` of both replicas, oldest first."""
        lines = [json.loads(line) for path in self.trace.glob("*.jsonl") for line in path.read_text().splitlines()]
        return sorted((c for c in lines if c["call"] == name), key=lambda c: c["began"])


@contextmanager
def replicas(
    tmp_path: Path, slack: FakeSlack, admin_url: str, *, extra: str = "", flood: bool = True, **env: str
) -> Iterator[Pair]:
    """Start two `mailfix serve` on one new PostgreSQL database, one config and one fake mail server (flooded
    by victim@example.org, unless `flood` is False: then `Pair.flood` floods it once both replicas run)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    database = new_database(admin_url)
    upgrade(database)  # once, before the replicas: two schema upgrades at once would race
    common = fake_env(shared, database)
    if not flood:
        quiet = FakeMailServer.from_file(Path(common["FAKE_MAILSERVER_STATE"]))
        quiet.messages = []
        quiet._save()  # noqa: SLF001 - the fake's own persistence
    common["MAILFIX_CONFIG"] = str(write_config(shared, extra=extra, monitor_minutes=0.1))
    (trace := shared / "trace").mkdir()
    flag = shared / "fail-delete"
    common |= {
        "MAILFIX_MAILSERVER": "tests.slack.test_replicas:replica_server",
        "REPLICA_TRACE": str(trace),
        "REPLICA_FAIL_FLAG": str(flag),
        **env,
    }
    bots: list[Bot] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            bots.append(start_bot(tmp_path / name, slack, **common))
        yield Pair(bots[0], bots[1], trace, flag)
    finally:
        for bot in bots:
            stop_bot(bot)


def at_once(*sends: Callable[[], tuple[Response, str]]) -> list[tuple[Response, float, float]]:
    """Send each request from its own thread, released together; return each ack with when it began and ended."""
    barrier, results = threading.Barrier(len(sends)), [None] * len(sends)

    def run(i: int) -> None:
        barrier.wait()
        began = time.monotonic()
        ack, _ = sends[i]()
        results[i] = (ack, began, time.monotonic())  # type: ignore[call-overload]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sends))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]


def overlapped(results: list[tuple[Response, float, float]]) -> bool:
    return max(began for _, began, _ in results) < min(ended for _, _, ended in results)


def thread_replies(slack: FakeSlack, ts: str) -> list[str]:
    return [c.params["text"] for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]


def test_the_same_command_and_click_reaching_both_replicas_have_one_effect(tmp_path, slack, postgres_admin_url):
    with replicas(tmp_path, slack, postgres_admin_url) as pair:
        a, b = pair.a, pair.b
        # The same `/mailfix start`, retried by Slack, reaches both replicas at once: one incident, one hold.
        starts = at_once(
            *(
                lambda bot=bot: bot.sender.command("start", OPERATOR, retry=1, trigger_id="trigger-start")
                for bot in (a, b)
            )
        )
        assert [ack.status for ack, _, _ in starts] == [200, 200] and overlapped(starts)
        a.wait_contained()
        assert len(a.repo.list_incidents()) == 1 and a.mail().calls_to("block_login") == ["victim"]
        replies = slack.wait_for(lambda f: f.responses_to("trigger-start"), what="the start's reply")
        time.sleep(0.5)
        assert [r["text"] for r in slack.responses_to("trigger-start")] == [replies[0]["text"]]
        assert "Incident #1" in replies[0]["text"]

        # The same approval click (one body, one trigger id) reaches both: one transition, one DM, one reply.
        value = a.button_value("approve_cleanup")
        approvals = at_once(
            *(
                lambda bot=bot: bot.sender.click("approve_cleanup", DIRECTOR, value=value, trigger_id="trigger-approve")
                for bot in (a, b)
            )
        )
        assert overlapped(approvals)
        incident = a.wait_state("monitoring")
        events = [e.action for e in a.repo.audit_events(incident_id=1)]
        assert events.count("approve") == 1
        assert a.mail().calls_to("change_password") == ["victim"]
        assert len([c for c in slack.calls_to("chat.postMessage") if c.params["channel"].startswith("D")]) == 1
        assert slack.responses_to("trigger-approve") == []  # nobody told "already approved" by the copy
        # One thread reply per step run, one request for approval: nothing told twice.
        runs = a.repo.get(incident_id=1).steps
        replies = thread_replies(slack, incident.slack_ts)
        assert len([t for t in replies if re.search(r"\(\d+\.\ds\)$", t)]) == len(runs)
        assert len([t for t in replies if t.startswith(":raised_hand:")]) == 1

        # Two directors click "Resolve now" at once, one on each replica: one resolution, the other is told.
        a.wait_incident(lambda i: i.checks and i.checks[-1].normal, "checked normal")
        value = a.button_value("resolve_now")
        clicks = {DIRECTOR: "trigger-resolve-1", DIRECTOR2: "trigger-resolve-2"}
        resolves = at_once(
            *(
                lambda bot=bot, user=user: bot.sender.click("resolve_now", user, value=value, trigger_id=clicks[user])
                for bot, user in ((a, DIRECTOR), (b, DIRECTOR2))
            )
        )
        assert overlapped(resolves)
        a.wait_state("resolved")
        told = slack.wait_for(
            lambda f: [f.responses_to(t)[0]["text"] for t in clicks.values() if f.responses_to(t)], what="the loser"
        )
        assert len(told) == 1 and "already resolved by" in told[0], told
        assert [e.action for e in a.repo.audit_events(incident_id=1)].count("resolve_now") == 1

        # The ack waits for the key's INSERT: measured on 60 commands, 10 at a time, to both replicas.
        with ThreadPoolExecutor(10) as pool:
            acks = list(pool.map(lambda i: (a, b)[i % 2].sender.command("list", OPERATOR)[0], range(60)))
        assert all(ack.status == 200 for ack in acks)
        cuts = statistics.quantiles([ack.seconds for ack in acks], n=100, method="inclusive")
        print(f"ack latency on PostgreSQL, two replicas: p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")
        assert cuts[98] < 3.0  # Slack's limit, on a shared test machine


def test_a_flood_alert_seen_by_both_watches_is_posted_once(tmp_path, slack, postgres_admin_url):
    """Slack takes 1.5 s to post the alert: the other replica polls meanwhile and finds it claimed."""
    with replicas(tmp_path, slack, postgres_admin_url, extra="watch_interval_seconds = 0.1", flood=False) as pair:
        time.sleep(0.5)
        assert len({c["pid"] for c in pair.calls("diagnose")}) == 2  # both replicas' watches poll
        pair.flood()
        slack.wait_for(lambda f: f.alert_windows, timeout=20, what="the alert posted")
        time.sleep(2 * slack.alert_seconds)  # time for a second post, had the other replica made one
        posts = [c for c in slack.calls_to("chat.postMessage") if str(c.params["text"]).startswith("Flood on")]
        assert len(posts) == 1 and len(slack.alert_windows) == 1
        (alert,) = pair.a.repo.open_alerts()
        assert alert.notified_at is not None and alert.slack_ts is not None and alert.telling_until is None
        # The racers overlapped: while the alert was being posted (and still untold in the database), the
        # other replica's watch polled the server, and every poll first tells the untold alerts.
        began, ended = slack.alert_windows[0]
        polled = {c["pid"] for c in pair.calls("diagnose") if began < c["began"] < ended}
        assert len(polled) == 1, pair.calls("diagnose")


def test_a_step_failed_on_one_replica_is_not_run_again_by_the_other(tmp_path, slack, postgres_admin_url):
    with replicas(tmp_path, slack, postgres_admin_url) as pair:
        a, b = pair.a, pair.b
        a.start_incident()
        pair.fail_flag.touch()  # whichever replica runs the delete, it fails there
        a.click_button("approve_cleanup", DIRECTOR)
        failed = a.wait_state("failed")
        assert failed.failed_state == "cleaning_up" and "delete_from" in (failed.failure or "")
        pair.fail_flag.unlink()  # the server would answer now: only a person's retry may run the step again
        time.sleep(15 * INTERVAL)  # both schedulers tick every INTERVAL
        incident = a.incident()
        assert incident.state == "failed" and a.mail().calls_to("delete") == []
        assert [r.status for r in incident.steps if r.step == "delete_from"] == ["failed"]
        b.click_button("retry_step", OPERATOR)
        incident = b.wait_state("monitoring")
        assert [r.status for r in incident.steps if r.step == "delete_from"] == ["failed", "done"]
        by_sender = "Selection(sender='victim@example.org', recipient=None, sasl_login=None)"
        assert a.mail().calls_to("delete").count(by_sender) == 1


def test_monitoring_checks_fire_once_per_interval_with_both_schedulers_on(tmp_path, slack, postgres_admin_url):
    """Each check takes 0.15 s (a slow link): had both schedulers checked, their checks would overlap."""
    with replicas(tmp_path, slack, postgres_admin_url, REPLICA_HEALTH_SECONDS="0.15") as pair:
        a = pair.a
        a.start_incident()
        a.click_button("approve_cleanup", DIRECTOR)
        incident = a.wait_state("resolved", timeout=30)
        checks, health = incident.checks, pair.calls("health")
        assert len(checks) >= 5, len(checks)
        assert len(health) == len(checks), (health, [c.at for c in checks])
        # A check's slot starts when it is claimed (just before its health call) and lasts an interval, or
        # until the monitoring deadline when that comes first.
        deadline = incident.monitor_deadline.timestamp() if incident.monitor_deadline else float("inf")
        trace = [(c["began"], c["ended"], c["pid"]) for c in health]
        for (began, ended, _), (next_began, _, _) in zip(trace, trace[1:], strict=False):
            assert next_began >= ended, trace  # never two checks at once
            assert next_began - began >= min(INTERVAL, deadline - began) - 0.02, trace
        assert len({pid for _, _, pid in trace}) == 2  # both schedulers took checks
        # The thread hears each change of verdict once (here: normal, from the first check on).
        told = [t for t in thread_replies(slack, incident.slack_ts) if "check: " in t]
        assert told and all(x != y for x, y in zip(told, told[1:], strict=False)), told


def test_an_unanswered_approval_is_reminded_once_and_expires_once_with_both_schedulers_on(
    tmp_path, slack, postgres_admin_url
):
    with replicas(tmp_path, slack, postgres_admin_url, extra="approval_timeout_minutes = 0.05") as pair:
        incident = pair.a.start_incident()
        pair.a.wait_incident(lambda i: i.approvals and i.approvals[-1].decision == "expired", "expired", timeout=20)
        time.sleep(10 * INTERVAL)
        replies = thread_replies(slack, incident.slack_ts or pair.a.incident().slack_ts)
        assert len([t for t in replies if t.startswith(":bell:")]) == 1
        assert len([t for t in replies if t.startswith(":hourglass:")]) == 1
