"""A fake Slack Web API on a real local HTTP server: answers like Slack, records every call.

Point the bot at it with SLACK_API_URL=<url>/api/. It checks the bot token, refuses a method whose
scope the manifest (app.yaml) does not grant, the way Slack answers `missing_scope`, keeps the
messages it was sent (so chat.update really rewrites them), and records posts to response_urls
(<url>/respond/<trigger_id>).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "app.yaml"

# The bot scopes each Web API method needs. A method missing here is refused as unknown.
# users:read.email must be requested together with users:read (Slack's scope docs).
METHOD_SCOPES: Mapping[str, tuple[str, ...]] = {
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "conversations.open": ("im:write",),
    "users.lookupByEmail": ("users:read", "users:read.email"),
}


def manifest_scopes(path: Path = MANIFEST) -> set[str]:
    return set(yaml.safe_load(path.read_text())["oauth_config"]["scopes"]["bot"])


@dataclass(frozen=True)
class Call:
    """One request the fake received: the API method (or "respond") and its parameters."""

    method: str
    params: dict[str, Any]
    path: str = ""


@dataclass
class FakeSlack:
    """The server's state: users by email, messages by (channel, ts), and the calls, in order."""

    token: str
    users: dict[str, str] = field(default_factory=dict)  # email → user id
    scopes: set[str] = field(default_factory=manifest_scopes)
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ts: Iterable[int] = field(default_factory=lambda: itertools.count(1))

    # -- reading what happened -------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, predicate: Callable[[FakeSlack], Any], timeout: float = 15.0, what: str = "") -> Any:
        """Return predicate(self) once it is truthy; fail after `timeout` seconds."""
        with self._cond:
            result = self._cond.wait_for(lambda: predicate(self), timeout)
        assert result, f"timed out after {timeout}s waiting for {what or predicate}; calls: {self.summary()}"
        return result

    def wait_call(self, method: str, timeout: float = 15.0, **match: Any) -> Call:
        """Return the first call to `method` whose params include `match`."""

        def found(fake: FakeSlack) -> Call | None:
            return next((c for c in fake.calls if c.method == method and _matches(c.params, match)), None)

        return self.wait_for(found, timeout, f"{method} {match}")

    def responses_to(self, trigger_id: str) -> list[dict[str, Any]]:
        """Return what the bot posted to the response_url of the request `trigger_id`."""
        return [c.params for c in self.calls_to("respond") if c.path.endswith(f"/{trigger_id}")]

    def wait_response(self, trigger_id: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_for(lambda f: (f.responses_to(trigger_id) or [None])[0], timeout, f"response {trigger_id}")

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._cond:
            return dict(self.messages[(channel, ts)])

    def summary(self) -> list[str]:
        return [c.method for c in self.calls]

    # -- answering --------------------------------------------------------------------------

    def handle(self, method: str, params: dict[str, Any], auth: str, path: str) -> dict[str, Any]:
        with self._cond:
            self.calls.append(Call(method, params, path))
            answer = self._answer(method, params, auth)
            self._cond.notify_all()
            return answer

    def _answer(self, method: str, params: dict[str, Any], auth: str) -> dict[str, Any]:
        if method == "respond":
            return {"ok": True}
        if auth != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth"}
        if method not in METHOD_SCOPES:
            return {"ok": False, "error": "unknown_method"}
        missing = [scope for scope in METHOD_SCOPES[method] if scope not in self.scopes]
        if missing:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": ",".join(missing),
                "provided": ",".join(sorted(self.scopes)),
            }
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "Example",
                "user": "mailfix",
                "team_id": "T0TEAM",
                "user_id": "U0MAILFIX",
                "bot_id": "B0MAILFIX",
            }
        if method == "users.lookupByEmail":
            user = self.users.get(str(params.get("email", "")).lower())
            if user is None:
                return {"ok": False, "error": "users_not_found"}
            return {"ok": True, "user": {"id": user, "profile": {"email": params["email"]}}}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(params["users"]).lstrip("UW")}}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"  # type: ignore[call-overload]
            channel = str(params["channel"])
            self.messages[(channel, ts)] = {k: v for k, v in params.items() if k != "channel"}
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text", "")}}
        if method == "chat.update":
            key = (str(params["channel"]), str(params["ts"]))
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key] = {k: v for k, v in params.items() if k not in ("channel", "ts")}
            return {"ok": True, "channel": key[0], "ts": key[1]}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}  # type: ignore[call-overload]
        return {"ok": False, "error": "not_implemented_in_fake"}


def _matches(params: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    return all(params.get(k) == v for k, v in match.items())


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _serve(self, raw: bytes) -> None:
        url = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(url.query))
        if raw and "json" in (self.headers.get("Content-Type") or ""):
            params.update(json.loads(raw))
        elif raw:
            params.update(dict(parse_qsl(raw.decode())))
        for key in ("blocks", "attachments"):  # form-encoded calls send these as JSON strings
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        if url.path.startswith("/api/"):
            method = url.path.removeprefix("/api/")
        elif url.path.startswith("/respond/"):
            method = "respond"
        else:
            self.send_error(404)
            return
        answer = self.fake.handle(method, params, self.headers.get("Authorization", ""), url.path)
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeSlackServer:
    """Runs a FakeSlack on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, fake: FakeSlack) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        fake.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.fake = fake
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-slack", daemon=True)

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
