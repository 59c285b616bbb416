"""A fake Slack Socket Mode endpoint: a WebSocket server on 127.0.0.1 (stdlib only) that plays Slack's side.

`apps.connections.open` on the fake Web API hands out its URL (`FakeSlack.socket_url`). On each connection it
sends `hello`, then redelivers every envelope not acked yet (with `retry_attempt`/`retry_reason`, the way
Slack retries); the test sends envelopes, reads the acks (`{"envelope_id": ...}`, from any connection), and
drops the link on demand: a close frame, a cut TCP socket, or a `disconnect` message (`refresh_requested`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.slack.conftest import Response, SlackSender

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's handshake constant
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


@dataclass
class Link:
    """One WebSocket connection from the bot."""

    number: int
    sock: socket.socket
    open: bool = True
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, opcode: int, data: bytes) -> None:
        size = len(data)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        with self._send_lock:
            self.sock.sendall(header + data)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(TEXT, json.dumps(message).encode())

    def read_frame(self) -> tuple[int, bytes]:
        """Return the next frame's opcode and unmasked payload (the bot sends whole, masked frames)."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if second & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(size)))
        return first & 0x0F, data

    def _read(self, size: int) -> bytes:
        buf = b""
        while len(buf) < size:
            chunk = self.sock.recv(size - len(buf))
            if not chunk:
                raise ConnectionError("the bot closed the connection")
            buf += chunk
        return buf


@dataclass
class FakeSocketMode:
    """Slack's Socket Mode side: the links, the envelopes sent, and the acks received (in order)."""

    links: list[Link] = field(default_factory=list)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # envelope id → last delivery
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # every envelope sent, retries included
    acks: list[dict[str, Any]] = field(default_factory=list)
    opened: int = 0  # URLs handed out by apps.connections.open
    lose_next_ack: bool = False  # the next ack is lost on the way: not recorded, and the link is cut
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="fake-socket-mode", daemon=True).start()

    # -- what the test does -------------------------------------------------------------------

    def url(self) -> str:
        """A fresh WebSocket URL, as apps.connections.open returns it."""
        with self._cond:
            self.opened += 1
            return f"ws://127.0.0.1:{self.port}/link/?ticket=t{self.opened}"

    def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool) -> str:
        """Deliver an envelope on the current link (waiting for one); return its envelope id."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        link = self.wait_link()
        with self._cond:
            self.sent[envelope_id] = envelope
            self.deliveries.append(envelope)
        link.send_json(envelope)
        return envelope_id

    def drop(self, *, cut: bool = False) -> None:
        """End the current link: a close frame (1001, going away), or with `cut` the TCP socket just closes."""
        link = self.wait_link()
        with self._cond:
            link.open = False
            self._cond.notify_all()
        if not cut:
            with contextlib.suppress(OSError):
                link.send(CLOSE, struct.pack("!H", 1001) + b"going away")
        with contextlib.suppress(OSError):
            link.sock.shutdown(socket.SHUT_RDWR)
        link.sock.close()

    def refresh(self) -> None:
        """Ask the bot to move to a new link, as Slack does every few hours."""
        self.wait_link().send_json(
            {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake-socket-mode"}}
        )

    # -- what the test reads ------------------------------------------------------------------

    def current(self) -> Link | None:
        with self._cond:
            return next((link for link in reversed(self.links) if link.open), None)

    def wait_link(self, *, after: int = 0, timeout: float = 30.0) -> Link:
        """Return the newest open link numbered above `after` (waiting for the bot to connect)."""

        def found() -> Link | None:
            link = next((link for link in reversed(self.links) if link.open), None)
            return link if link is not None and link.number > after else None

        return self.wait_until(found, timeout, f"an open link after #{after}")

    def deliveries_of(self, envelope_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [d for d in self.deliveries if d["envelope_id"] == envelope_id]

    def acks_of(self, envelope_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [a for a in self.acks if a.get("envelope_id") == envelope_id]

    def wait_ack(self, envelope_id: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_until(lambda: (self.acks_of(envelope_id) or [None])[0], timeout, f"the ack of {envelope_id}")

    def unacked(self) -> list[str]:
        with self._cond:
            acked = {a.get("envelope_id") for a in self.acks}
            return [e for e in self.sent if e not in acked]

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
        assert result, f"timed out after {timeout}s waiting for {what}; links {len(self.links)}, acks {self.acks}"
        return result

    # -- serving --------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(sock,), name="fake-socket-link", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            if not self._handshake(sock):
                return
            with self._cond:
                link = Link(len(self.links) + 1, sock)
                self.links.append(link)
                self._cond.notify_all()
            link.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0MAILFIX"}})
            for envelope in self._retries():
                link.send_json(envelope)
            self._read(link)
        with self._cond:
            for link in self.links:
                link.open = link.open and link.sock is not sock
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            sock.close()

    def _handshake(self, sock: socket.socket) -> bool:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            request += chunk
        headers = dict(line.split(":", 1) for line in request.decode().split("\r\n")[1:] if ":" in line)
        key = next(v.strip() for k, v in headers.items() if k.strip().lower() == "sec-websocket-key")
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        sock.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        return True

    def _retries(self) -> list[dict[str, Any]]:
        """The envelopes never acked, again, marked as Slack marks a retry."""
        with self._cond:
            acked = {a.get("envelope_id") for a in self.acks}
            for envelope_id, envelope in self.sent.items():
                if envelope_id not in acked:
                    attempt = envelope.get("retry_attempt", 0) + 1
                    self.sent[envelope_id] = envelope | {"retry_attempt": attempt, "retry_reason": "timeout"}
                    self.deliveries.append(self.sent[envelope_id])
            return [self.sent[e] for e in self.sent if e not in acked]

    def _read(self, link: Link) -> None:
        while True:
            opcode, data = link.read_frame()
            if opcode == PING:
                link.send(PONG, data)
            elif opcode == CLOSE:
                with contextlib.suppress(OSError):
                    link.send(CLOSE, data[:2])
                return
            elif opcode == TEXT:
                with self._cond:
                    lost, self.lose_next_ack = self.lose_next_ack, False
                    if not lost:
                        self.acks.append(json.loads(data))
                    link.open = link.open and not lost
                    self._cond.notify_all()
                if lost:
                    link.sock.shutdown(socket.SHUT_RDWR)
                    return

    def close(self) -> None:
        self._server.close()
        for link in list(self.links):
            with contextlib.suppress(OSError):
                link.sock.close()


class SocketSender(SlackSender):
    """SlackSender's commands and clicks, delivered as Socket Mode envelopes instead of signed HTTP posts.

    `command()` and `click()` return (envelope id, trigger id)."""

    def __init__(self, endpoint: FakeSocketMode, response_base: str) -> None:
        super().__init__("", response_base)
        self.endpoint = endpoint

    def send(self, body: bytes, **_: Any) -> Response | str:  # type: ignore[override]
        fields = dict(urllib.parse.parse_qsl(body.decode()))
        if "payload" in fields:  # a click: Slack sends the same JSON it would post as `payload=`
            return self.endpoint.send("interactive", json.loads(fields["payload"]), accepts_response_payload=False)
        return self.endpoint.send("slash_commands", fields, accepts_response_payload=True)
