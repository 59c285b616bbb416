"""A fake Slack Web API on a real local HTTP server: answers like Slack, records every call.

Point the bot at it with SLACK_API_URL=<url>/api/. It checks the bot token, refuses a method whose
scope the manifest (app.yaml) does not grant, the way Slack answers `missing_scope`, keeps the
messages it was sent (so chat.update really rewrites them), and records posts to response_urls
(<url>/respond/<trigger_id>).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
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
    # Looking for a post whose outcome is unknown: the incident channel (public or private) and the DM.
    "conversations.history": ("channels:history", "groups:history", "im:history"),
    "conversations.replies": ("channels:history", "groups:history"),
    "users.lookupByEmail": ("users:read", "users:read.email"),
    "users.info": ("users:read",),
    # files_upload_v2: an upload URL, the bytes POSTed to it (<url>/upload/<file_id>), then the share.
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
}


def manifest_scopes(path: Path = MANIFEST) -> set[str]:
    return set(yaml.safe_load(path.read_text())["oauth_config"]["scopes"]["bot"])


@dataclass(frozen=True)
class Call:
    """One request the fake received: the API method (or "respond") and its parameters."""

    method: str
    params: dict[str, Any]
    path: str = ""
    fault: str = ""  # the fault answered instead ("429", "500"), or "" when the call was served


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour: an HTTP error (Slack does nothing), or a normal answer sent `delay` seconds late
    (Slack acted on the call, the client may have given up waiting)."""

    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class FakeSlack:
    """The server's state: users by email, messages by (channel, ts), and the calls, in order."""

    token: str
    users: dict[str, str] = field(default_factory=dict)  # email → user id
    locales: dict[str, str] = field(default_factory=dict)  # user id → Slack locale (users.info); default en-US
    scopes: set[str] = field(default_factory=manifest_scopes)
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ts: Iterable[int] = field(default_factory=lambda: itertools.count(1))
    faults: dict[str, list[Fault]] = field(default_factory=dict)  # method → what its next calls get, in order
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file id → name, length, bytes, where shared
    app_token: str = ""  # the app-level token apps.connections.open accepts (Socket Mode)
    socket_url: Callable[[], str] | None = None  # hands out a Socket Mode URL (tests/slack/fake_socket.py)

    def fail(self, method: str, *faults: Fault) -> None:
        """Answer the next calls to `method` with `faults`, one each, then normally again."""
        with self._cond:
            self.faults.setdefault(method, []).extend(faults)

    def next_fault(self, method: str, params: dict[str, Any], path: str) -> Fault | None:
        """Take the method's next scripted fault; an HTTP error is recorded here (the call does nothing)."""
        with self._cond:
            fault = self.faults[method].pop(0) if self.faults.get(method) else None
            if fault is not None and fault.status != 200:
                self.calls.append(Call(method, params, path, fault=str(fault.status)))
                self._cond.notify_all()
            return fault

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Return the replies in the thread of the message at (channel, ts), oldest first."""
        with self._cond:
            return [
                dict(m, ts=k[1])
                for k, m in sorted(self.messages.items())
                if k[0] == channel and m.get("thread_ts") == ts
            ]

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
        if method == "apps.connections.open":  # Socket Mode: the app-level token, not the bot's
            if not self.app_token or auth != f"Bearer {self.app_token}" or self.socket_url is None:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": self.socket_url()}
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
        if method == "users.info":
            user_id = str(params.get("user", ""))
            if user_id not in self.users.values():
                return {"ok": False, "error": "user_not_found"}
            user: dict[str, Any] = {"id": user_id}
            if str(params.get("include_locale", "")).lower() in ("true", "1"):  # Slack sends it only when asked
                user["locale"] = self.locales.get(user_id, "en-US")
            return {"ok": True, "user": user}
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
        if method in ("conversations.history", "conversations.replies"):
            return self._history(method, params)
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}  # type: ignore[call-overload]
        if method.startswith("files."):
            return self._file(method, params)
        return {"ok": False, "error": "not_implemented_in_fake"}

    def _file(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """files.getUploadURLExternal hands out an upload URL on this server; files.completeUploadExternal
        shares what was uploaded there, like Slack: a message with the files (and the comment) in the channel."""
        if method == "files.getUploadURLExternal":
            if not params.get("filename") or not str(params.get("length", "")).isdigit():
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{len(self.files) + 1:08d}"
            self.files[file_id] = {"name": params["filename"], "length": int(params["length"]), "data": None}
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
        shared = json.loads(params.get("files") or "[]")
        if not shared or any(self.files.get(f.get("id"), {}).get("data") is None for f in shared):
            return {"ok": False, "error": "file_not_found"}  # never uploaded: Slack refuses to complete it
        channel = str(params.get("channel_id") or "")
        for f in shared:
            self.files[f["id"]] |= {"title": f.get("title"), "channel": channel, "thread_ts": params.get("thread_ts")}
        if channel:
            ts = f"1700000000.{next(self._ts):06d}"  # type: ignore[call-overload]
            message = {"text": params.get("initial_comment", ""), "files": [f["id"] for f in shared]}
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            self.messages[(channel, ts)] = message
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in shared]}

    def upload(self, file_id: str, data: bytes) -> bool:
        """Take the bytes POSTed to an upload URL; False for a URL never handed out or the wrong length."""
        with self._cond:
            found = self.files.get(file_id)
            if found is None or found["length"] != len(data):
                return False
            found["data"] = data
            self._cond.notify_all()
            return True

    def uploaded(self, title: str) -> str:
        """Return the text of the shared file titled `title`."""
        with self._cond:
            return next(f["data"].decode() for f in self.files.values() if f.get("title") == title and f["data"])

    def _history(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The channel's messages newest first (history), or a thread's oldest first (replies); with metadata
        only when asked for (include_all_metadata), like Slack. `oldest` is ignored: this fake's ts are not times."""
        channel = str(params["channel"])
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for (where, ts), message in sorted(self.messages.items()):
            parent = message.get("thread_ts")
            if where != channel:
                continue
            if method == "conversations.history" and parent not in (None, ts):
                continue
            if method == "conversations.replies" and params["ts"] not in (ts, parent):
                continue
            shown = {k: v for k, v in message.items() if k != "metadata" or with_metadata}
            found.append({"type": "message", "ts": ts, **shown})
        if method == "conversations.history":
            found.reverse()
        return {"ok": True, "messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}


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
        if url.path.startswith("/upload/"):  # a file's bytes, to the URL files.getUploadURLExternal handed out
            ok = self.fake.upload(url.path.removeprefix("/upload/"), raw)
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"no")
            return
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
        fault = self.fake.next_fault(method, params, url.path)
        if fault is not None and fault.status != 200:
            answer: dict[str, Any] = {"ok": False, "error": "ratelimited" if fault.status == 429 else "internal_error"}
        else:
            answer = self.fake.handle(method, params, self.headers.get("Authorization", ""), url.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)  # the call is done; its answer comes late (the client may have hung up)
        body = json.dumps(answer).encode()
        self.send_response(fault.status if fault is not None else 200)
        if fault is not None and fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if method != "respond":  # Slack names the token's scopes on every Web API answer
            self.send_header("x-oauth-scopes", ",".join(sorted(self.fake.scopes)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
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
