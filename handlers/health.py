"""GET /healthz for `mailfix socket`: a small stdlib HTTP server in a thread (`mailfix serve` answers it itself)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.core.runbook import Runbook
from bot.errors import ConfigError
from bot.i18n import _
from handlers.app import HEALTH_PATH, health

Check = Callable[[], tuple[int, str]]


def socket_health(runbook: Runbook, connected: Callable[[], bool]) -> tuple[int, str]:
    """Return 200 while the database answers and the Socket Mode link is up, else 503 and which is down."""
    status, text = health(runbook)
    if status != 200:
        return status, text
    return (200, "ok\n") if connected() else (503, "socket disconnected\n")


def start_health_server(check: Check, host: str, port: int) -> ThreadingHTTPServer:
    """Serve `check` on GET/HEAD /healthz at host:port in a daemon thread; ConfigError if the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(with_body=False)

        def _answer(self, *, with_body: bool) -> None:
            status, text = check() if self.path.split("?", 1)[0] == HEALTH_PATH else (404, "not found\n")
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a probe every few seconds is not news

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        problem = _("cannot serve {path} on {host}:{port}: {error}")
        raise ConfigError([problem.format(path=HEALTH_PATH, host=host, port=port, error=exc.strerror or exc)]) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mailfix-health", daemon=True).start()
    return server
