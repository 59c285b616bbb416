"""One pool of mail-server connections, shared by the runbook and the flood watch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.core.mailserver import MailServer

log = logging.getLogger(__name__)


class ServerPool:
    """Connects to a server by name on first use, keeps the connection, and serialises work on it."""

    def __init__(self, connect: Callable[[str], MailServer]) -> None:
        self._connect = connect
        self._servers: dict[str, MailServer] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @classmethod
    def of(cls, servers: ServerPool | Callable[[str], MailServer]) -> ServerPool:
        """Return `servers` if it is a pool already, else a new pool that connects with it."""
        return servers if isinstance(servers, ServerPool) else cls(servers)

    def get(self, name: str) -> MailServer:
        """Return the (cached) connection to `name`, connecting now if there is none.

        A failed connect raises the server's error (HostUnreachable, AuthFailed, HostKeyMismatch) and caches
        nothing, so the next `get` (a retry) tries again.
        """
        with self._guard:
            server = self._servers.get(name)
        if server is not None:
            return server
        # Outside the guard: a server that takes its connect timeout to fail must not stall the others.
        server = self._connect(name)
        with self._guard:
            cached = self._servers.setdefault(name, server)
        if cached is not server:  # another thread connected first: keep one connection
            self._close(name, server)
        return cached

    def lock(self, name: str) -> threading.Lock:
        """Return the lock that one worker holds while it runs commands on `name`."""
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def forget(self, name: str) -> None:
        """Drop the connection to `name`: the next `get` reconnects from scratch (the old one may be half dead)."""
        with self._guard:
            server = self._servers.pop(name, None)
        if server is not None:
            self._close(name, server)

    @staticmethod
    def _close(name: str, server: MailServer) -> None:
        try:
            server.close()
        except Exception:
            log.debug("closing %s failed", name, exc_info=True)

    def close(self) -> None:
        with self._guard:
            names = list(self._servers)
        for name in names:
            self.forget(name)
