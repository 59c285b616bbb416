"""What a failed SSH connection means, as mailfix's own errors (bot.mail.executor's other half).

A refused or unknown host key, a refused key, or no connection at all: each becomes the error people
read, one line, with nothing of paramiko's message but its class and first line.
"""

from __future__ import annotations

import paramiko

from bot.config import ServerConfig
from bot.errors import AuthFailed, HostKeyMismatch, HostUnreachable
from bot.i18n import _


class RefuseUnknownHostKey(paramiko.RejectPolicy):
    """Refuse a server whose host key is not in known_hosts, naming its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        reason = _("host key {fingerprint} is not in known_hosts; refusing to connect")
        raise HostKeyMismatch(hostname, reason.format(fingerprint=key.fingerprint))


def connect_error(host: str, server: ServerConfig, exc: BaseException) -> BaseException:
    """Return the mailfix error for a failed connect (anything unexpected is returned unchanged)."""
    if isinstance(exc, HostKeyMismatch):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        got, known = exc.key.fingerprint, exc.expected_key.fingerprint
        return HostKeyMismatch(
            host, _("host key changed: got {got}, known_hosts has {known}").format(got=got, known=known)
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthFailed(host, _("the server refused the key for user {user}").format(user=repr(server.user)))
    if isinstance(exc, OSError | EOFError | paramiko.SSHException):
        return HostUnreachable(
            host, _("cannot connect to port {port}: {error}").format(port=server.port, error=short(exc))
        )
    return exc


def short(exc: BaseException) -> str:
    """Return a one-line description of `exc` without anything but its class and message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
