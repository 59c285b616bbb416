"""`mailfix socket` for real: a spawned bot on a fake Socket Mode endpoint, through drops, refreshes and health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.terminal import cli
from tests.clitools import fake_env
from tests.slack.conftest import BOT_TOKEN, CHANNEL, ROOT, Bot, free_port, stop_bot
from tests.slack.fake_slack import FakeSlack, Fault
from tests.slack.fake_socket import FakeSocketMode, SocketSender

APP_TOKEN = "xapp-test-app-token"
OPERATOR, DIRECTOR = "UOPERATOR1", "UDIRECTOR1"


def healthz(bot: Bot) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_health(bot: Bot, status: int, timeout: float = 30.0) -> float:
    """Return the seconds until /healthz answers `status`; fail after `timeout`."""
    began = time.monotonic()
    while (seen := healthz(bot))[0] != status:
        assert time.monotonic() - began < timeout, f"/healthz still {seen} after {timeout}s:\n{bot.log()[-3000:]}"
        time.sleep(0.05)
    return time.monotonic() - began


def start_socket_bot(tmp_path: Path, slack: FakeSlack, endpoint: FakeSocketMode) -> Bot:
    """Start `python -m bot socket` against the fakes and wait until /healthz says it is connected."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT") and not k.startswith("SLACK_")}
    env |= fake_env(tmp_path) | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": f"{slack.url}/api/",
        "MAILFIX_SOCKET_PING_SECONDS": "0.5",
        "PYTHONPATH": str(ROOT),
    }
    port = free_port()
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "socket", "--health-port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    bot = Bot(process, f"http://127.0.0.1:{port}", env, log, slack)
    bot.sender = SocketSender(endpoint, f"{slack.url}/respond")
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError(f"mailfix socket exited with {process.returncode}:\n{bot.log()}")
        try:
            if healthz(bot)[0] == 200:
                return bot
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_bot(bot)
            raise AssertionError(f"mailfix socket was not healthy within 30s:\n{bot.log()}")
        time.sleep(0.05)


@pytest.fixture
def endpoint(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    fake = FakeSocketMode()
    slack.app_token, slack.socket_url = APP_TOKEN, fake.url
    yield fake
    fake.close()


@pytest.fixture
def bot(tmp_path: Path, slack: FakeSlack, endpoint: FakeSocketMode) -> Iterator[Bot]:
    running = start_socket_bot(tmp_path, slack, endpoint)
    try:
        yield running
    finally:
        stop_bot(running)


def approve(bot: Bot) -> str:
    """Click "Approve cleanup" as the director; return the click's envelope id."""
    envelope_id, _ = bot.click_button("approve_cleanup", DIRECTOR)
    return envelope_id


def thread_texts(bot: Bot) -> list[str]:
    incident = bot.incident()
    return [m.get("text", "") for m in bot.slack.thread(incident.slack_channel or CHANNEL, incident.slack_ts or "")]


def test_a_whole_incident_runs_through_the_socket_and_every_envelope_is_acked_once(bot, endpoint):
    envelope_id, trigger = bot.sender.command("start", OPERATOR)
    assert "Opening an incident" in endpoint.wait_ack(envelope_id)["payload"]["text"]  # the ack carries the reply
    bot.wait_contained()
    approve(bot)
    resolved = bot.wait_state("resolved")
    assert resolved.checks and resolved.checks[-1].normal
    assert "Incident #1 on mail1" in bot.slack.wait_response(trigger)["text"]
    bot.slack.wait_for(lambda f: "resolved" in bot.incident_message()["text"], what="the message shows resolved")

    texts = thread_texts(bot)
    assert texts[0].startswith("Suspect victim@example.org") and any("check: normal" in t for t in texts)
    assert sum(t.startswith("Changed the password of victim") for t in texts) == 1
    assert len(bot.mail().calls_to("change_password")) == 1
    assert len(endpoint.sent) >= 2 and len(endpoint.deliveries) == len(endpoint.sent)  # nothing redelivered
    assert all(len(endpoint.acks_of(e)) == 1 for e in endpoint.sent), endpoint.acks
    assert endpoint.opened == 1 and len(bot.slack.calls_to("apps.connections.open")) == 1
    assert APP_TOKEN not in bot.log() and "ticket=" not in bot.log()  # neither the token nor the link's ticket


@pytest.mark.parametrize("drop", ["ack_lost", "cut_after_send", "closed_after_ack"])
def test_a_click_across_a_dropped_socket_takes_effect_exactly_once(bot, endpoint, drop):
    """The link goes down around the approval click; the bot reconnects and the cleanup runs once."""
    bot.sender.command("start", OPERATOR)
    bot.wait_contained()
    first = endpoint.wait_link()
    endpoint.lose_next_ack = drop == "ack_lost"  # the bot acts on the click but Slack never hears the ack
    click, trigger = bot.click_button("approve_cleanup", DIRECTOR)
    if drop == "cut_after_send":
        endpoint.drop(cut=True)
    elif drop == "closed_after_ack":
        endpoint.wait_ack(click)
        endpoint.drop()

    endpoint.wait_link(after=first.number)
    assert len(bot.slack.calls_to("apps.connections.open")) >= 2
    endpoint.wait_ack(click)
    bot.wait_state("resolved")
    if drop == "ack_lost":  # redelivered on the new link, acked there, and dropped as already handled
        assert [d.get("retry_attempt") for d in endpoint.deliveries_of(click)] == [None, 1]
    if drop != "cut_after_send":  # a cut may lose the bot's own ack too: then Slack's retry is acked as well
        assert len(endpoint.acks_of(click)) == 1
    assert len(bot.mail().calls_to("change_password")) == 1
    assert [r.step for r in bot.incident().steps].count("change_password") == 1
    assert sum(t.startswith("Changed the password of victim") for t in thread_texts(bot)) == 1
    time.sleep(0.5)  # a second run of the click would answer the director "already approved by <@UDIRECTOR1>"
    assert bot.slack.responses_to(trigger) == []


def test_a_disconnect_refresh_moves_the_bot_to_a_new_link_without_going_unhealthy(bot, endpoint):
    first = endpoint.wait_link()
    endpoint.refresh()
    second = endpoint.wait_link(after=first.number)
    endpoint.wait_until(lambda: not first.open, 10, "the bot to close the old link")
    assert endpoint.opened == 2 and healthz(bot) == (200, "ok\n")
    envelope_id, _ = bot.sender.command("help", OPERATOR)
    endpoint.wait_ack(envelope_id)
    assert len(endpoint.acks_of(envelope_id)) == 1 and endpoint.current() is second


def test_the_healthcheck_says_503_while_disconnected_and_200_once_reconnected(bot, endpoint):
    assert healthz(bot) == (200, "ok\n")
    # Slack's apps.connections.open fails for a while: two reconnection attempts (each tried 3 times) fail.
    bot.slack.fail("apps.connections.open", *[Fault(status=500)] * 6)
    first = endpoint.wait_link()
    endpoint.drop()
    wait_health(bot, 503)
    assert healthz(bot) == (503, "socket disconnected\n")
    bot.slack.wait_for(lambda f: len([c for c in f.calls_to("apps.connections.open") if c.fault]) >= 4)
    assert healthz(bot)[0] == 503 and endpoint.current() is None
    wait_health(bot, 200)
    assert endpoint.wait_link(after=first.number).number == 2
    assert len([c for c in bot.slack.calls_to("apps.connections.open") if c.fault]) == 6


def test_socket_refuses_a_bad_ping_interval_in_one_line(monkeypatch, tmp_path, capsys):
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")  # never reached
    monkeypatch.setenv("MAILFIX_SOCKET_PING_SECONDS", "soon")
    assert cli.main(["socket"]) == 1
    err = capsys.readouterr().err.strip()
    assert "MAILFIX_SOCKET_PING_SECONDS must be a number of seconds" in err and len(err.splitlines()) == 1


def test_socket_says_when_its_health_port_is_taken_and_connects_nowhere(monkeypatch, tmp_path, capsys, slack, endpoint):
    for key, value in fake_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", f"{slack.url}/api/")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert cli.main(["socket", "--health-port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"cannot serve /healthz on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1
    assert slack.calls_to("apps.connections.open") == [] and endpoint.links == []
