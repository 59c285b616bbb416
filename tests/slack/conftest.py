"""Fixtures for the Slack tests: a fake Slack Web API, a real `mailfix serve` process, signed requests."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.db import make_engine
from storage.models import Incident
from storage.repository import Repository
from tests.clitools import fake_env
from tests.fakes import FakeMailServer
from tests.slack.fake_slack import FakeSlack, FakeSlackServer

ROOT = Path(__file__).resolve().parents[2]
BOT_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret-0123456789"
CHANNEL = "C0INCIDENT"
VICTIM = "UVICTIM01"
_triggers = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """Return the X-Slack-Signature Slack would send: v0 HMAC-SHA256 over "v0:{timestamp}:{body}"."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> Response:
    """POST without raising on HTTP errors; return status, body and how long it took."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Response(answer.status, answer.read().decode(), time.perf_counter() - began)
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read().decode(), time.perf_counter() - began)


class SlackSender:
    """Sends requests to the bot signed the way Slack signs them."""

    def __init__(self, url: str, response_base: str) -> None:
        self.url = url
        self.response_base = response_base

    def send(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        retry: int | None = None,
        signed: bool = True,
    ) -> Response:
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed:
            headers["X-Slack-Request-Timestamp"] = str(timestamp)
            headers["X-Slack-Signature"] = signature or sign(body, timestamp)
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return post(self.url, body, headers)

    def command_body(self, text: str, user: str, trigger_id: str, channel: str = CHANNEL) -> bytes:
        return urllib.parse.urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": "T0TEAM",
                "team_domain": "example",
                "channel_id": channel,
                "channel_name": "incidents",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/mailfix",
                "text": text,
                "api_app_id": "A0MAILFIX",
                "is_enterprise_install": "false",
                "response_url": f"{self.response_base}/{trigger_id}",
                "trigger_id": trigger_id,
            }
        ).encode()

    def command(
        self, text: str, user: str, *, retry: int | None = None, trigger_id: str | None = None
    ) -> tuple[Response, str]:
        """Type `/mailfix <text>` as `user`; return the ack and the trigger id (to find the replies)."""
        trigger_id = trigger_id or f"trigger-{next(_triggers)}"
        return self.send(self.command_body(text, user, trigger_id), retry=retry), trigger_id

    def click(
        self,
        action_id: str,
        user: str,
        *,
        value: str | None = None,
        selected: str | None = None,
        channel: str = CHANNEL,
        message_ts: str = "1700000000.000001",
        ephemeral: bool = False,
        retry: int | None = None,
        trigger_id: str | None = None,
    ) -> tuple[Response, str]:
        """Click a button (or choose `selected` in a select) as `user`; return the ack and the trigger id."""
        trigger_id = trigger_id or f"trigger-{next(_triggers)}"
        action: dict[str, Any] = {"action_id": action_id, "block_id": "incident_actions", "action_ts": "1.2"}
        if selected is not None:
            action |= {
                "type": "static_select",
                "selected_option": {"value": selected, "text": {"type": "plain_text", "text": selected}},
            }
        else:
            action |= {"type": "button", "value": value, "text": {"type": "plain_text", "text": action_id}}
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
            "api_app_id": "A0MAILFIX",
            "token": "legacy-verification-token",
            "trigger_id": trigger_id,
            "team": {"id": "T0TEAM", "domain": "example"},
            "channel": {"id": channel, "name": "incidents"},
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "response_url": f"{self.response_base}/{trigger_id}",
            "actions": [action],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return self.send(body, retry=retry), trigger_id


class Bot:
    """A running `mailfix serve` and what it works on: its database and the fake mail server."""

    def __init__(self, process: subprocess.Popen, url: str, env: dict[str, str], log: Path, slack: FakeSlack) -> None:
        self.process, self.url, self.env, self.log_path, self.slack = process, url, env, log, slack
        self.sender = SlackSender(f"{url}/slack/events", f"{slack.url}/respond")
        self.repo = Repository(make_engine(env["MAILFIX_DATABASE_URL"]))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def mail(self) -> FakeMailServer:
        return FakeMailServer.from_file(Path(self.env["FAKE_MAILSERVER_STATE"]))

    def incident(self, incident_id: int = 1) -> Incident:
        incident = self.repo.get(incident_id=incident_id)
        assert incident is not None, f"no incident #{incident_id}; log:\n{self.log()}"
        return incident

    def wait_incident(self, check, what: str, incident_id: int = 1, timeout: float = 20.0) -> Incident:
        """Return the incident once `check(incident)` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            incident = self.repo.get(incident_id=incident_id)
            if incident is not None and check(incident):
                return incident
            if time.monotonic() > deadline:
                now = incident.state if incident else "no incident"
                raise AssertionError(f"incident #{incident_id} ({now}) never {what}; log:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def wait_state(self, state: str, incident_id: int = 1, timeout: float = 20.0) -> Incident:
        return self.wait_incident(lambda i: i.state == state, f"became {state}", incident_id, timeout)

    def incident_message(self, incident_id: int = 1) -> dict[str, Any]:
        incident = self.incident(incident_id)
        assert incident.slack_ts, "the incident message was never posted"
        return self.slack.message(incident.slack_channel or CHANNEL, incident.slack_ts)

    def button_value(self, action_id: str, incident_id: int = 1) -> str:
        """Return the value the incident message's `action_id` button carries (waiting for the message to show it)."""

        def shown(fake: FakeSlack) -> str | None:
            for block in self.incident_message(incident_id).get("blocks", []):
                for element in block.get("elements", []):
                    if element.get("action_id") == action_id and "value" in element:
                        return element["value"]
            return None

        return self.slack.wait_for(shown, what=f"a {action_id} button on incident #{incident_id}'s message")

    def option_value(self, action_id: str, name: str, incident_id: int = 1) -> str:
        """Return the value of the option for account `name` in the incident message's `action_id` select."""

        def shown(fake: FakeSlack) -> str | None:
            for block in self.incident_message(incident_id).get("blocks", []):
                for element in block.get("elements", []):
                    for option in element.get("options", []) if element.get("action_id") == action_id else []:
                        if option["text"]["text"].split(" ")[0] == name:
                            return option["value"]
            return None

        return self.slack.wait_for(shown, what=f"option {name} in {action_id} on incident #{incident_id}'s message")

    def click_button(self, action_id: str, user: str, incident_id: int = 1, **kwargs: Any) -> tuple[Response, str]:
        """Click the `action_id` button of the incident message as it is now."""
        return self.sender.click(action_id, user, value=self.button_value(action_id, incident_id), **kwargs)

    def start_incident(self, user: str = "UOPERATOR1") -> Incident:
        """Type `/mailfix start` and wait until the flood is contained and the cleanup awaits approval."""
        ack, _ = self.sender.command("start", user)
        assert ack.status == 200, ack
        return self.wait_contained()

    def wait_contained(self, incident_id: int = 1) -> Incident:
        return self.wait_incident(
            lambda i: i.state == "awaiting_approval" and i.contained_at is not None,
            "was contained awaiting approval",
            incident_id,
        )


def start_bot(tmp_path: Path, slack: FakeSlack, **extra_env: str) -> Bot:
    """Start `python -m bot serve` on a free port and wait until /healthz answers 200."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT") and not k.startswith("SLACK_")}
    env |= fake_env(tmp_path)
    env |= {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{slack.url}/api/",
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    port = free_port()
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError(f"mailfix serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"mailfix serve did not answer /healthz within 30s:\n{log.read_text()}")
        time.sleep(0.05)
    return Bot(process, url, env, log, slack)


def stop_bot(bot: Bot) -> None:
    bot.process.terminate()
    try:
        bot.process.wait(15)
    except subprocess.TimeoutExpired:
        bot.process.kill()
        bot.process.wait(5)
    bot.repo.engine.dispose()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API that knows the affected user by their address."""
    fake = FakeSlack(token=BOT_TOKEN, users={"victim@example.org": VICTIM})
    with FakeSlackServer(fake) as running:
        yield running


@pytest.fixture
def bot(tmp_path: Path, slack: FakeSlack) -> Iterator[Bot]:
    """A running `mailfix serve` on the file-backed fake mail server (victim@example.org is flooding)."""
    running = start_bot(tmp_path, slack)
    try:
        yield running
    finally:
        stop_bot(running)
