"""Run commands on a mail server over SSH; with `ssh_errors`, the only modules that import paramiko.

Every paramiko or socket failure leaves this module as one of mailfix's own errors:

    HostUnreachable   the TCP connection or the SSH handshake failed, or the link dropped
    AuthFailed        the server refused the key (or the key file cannot be used)
    HostKeyMismatch   the server's host key is unknown to, or differs from, the known_hosts file
    CommandFailed     the command exited non-zero (`.result` holds the CommandResult)
    CommandTimeout    the command outlived its timeout (its channel is closed)

Commands are argv lists joined with `shlex.join` (every argument quoted), run through `sudo -n`
unless the user is root. Stdin is never logged: passwords travel there.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import paramiko

from bot.config import ServerConfig
from bot.errors import AuthFailed, CommandFailed, CommandTimeout, ExecutorError, HostKeyMismatch, HostUnreachable
from bot.i18n import _
from bot.mail.commands import STDERR_TAIL_BYTES, CommandResult, command_failed, command_name, inflated
from bot.mail.ssh_errors import RefuseUnknownHostKey, connect_error, short

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
# Short channel timeouts let blocking reads notice the command's deadline.
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15
# A larger window than paramiko's 2 MB keeps a fast producer (postqueue -j) from stalling.
WINDOW_SIZE = 16 << 20
# A link whose SSH round trip takes this long is not a LAN (nor loopback, even on a busy host):
# large outputs travel gzip'ed. A LAN does not take CLEARLY_SLOW_SECONDS twice in a row.
SLOW_LINK_SECONDS, CLEARLY_SLOW_SECONDS = 0.005, 0.02


class RemoteProcess:
    """One command running on the server: write its stdin, read its stdout, then `wait()`."""

    def __init__(
        self, host: str, argv: Sequence[str], channel: paramiko.Channel, deadline: float, *, gunzip: bool = False
    ) -> None:
        self.host = host
        self.gunzip = gunzip
        self.argv = tuple(argv)
        self.name = command_name(argv)
        self._channel = channel
        self._deadline = deadline
        self._started = time.monotonic()
        self._stdout: bytearray | None = None
        self._stderr = bytearray()
        # stderr is drained on its own thread: a silent reader would let it fill the
        # channel window (postsuper writes a line per ID) and stall the command.
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        while True:
            try:
                data = self._channel.recv_stderr(READ_CHUNK)
            except TimeoutError:
                if self._channel.closed:
                    return
                continue
            except Exception:
                return
            if not data:
                return
            self._stderr += data
            if len(self._stderr) > 2 * STDERR_TAIL_BYTES:
                del self._stderr[:-STDERR_TAIL_BYTES]

    def _check_deadline(self) -> None:
        if time.monotonic() > self._deadline:
            self.close()
            reason = _("{command} did not finish in time; its channel was closed").format(command=self.name)
            raise CommandTimeout(self.host, reason)

    def write(self, data: bytes) -> None:
        """Send `data` to the command's stdin."""
        view = memoryview(data)
        while view:
            try:
                sent = self._channel.send(view)
            except TimeoutError:
                self._check_deadline()
                continue
            except (OSError, paramiko.SSHException):
                # Not closed here: the command may have exited early, and its status says why.
                raise CommandFailed(self.host, self._stopped_reading()) from None
            if sent == 0:
                raise CommandFailed(self.host, self._stopped_reading())
            view = view[sent:]

    def close_stdin(self) -> None:
        """Signal end of input to the command."""
        try:
            self._channel.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError):
            raise CommandFailed(self.host, self._stopped_reading()) from None

    def _stopped_reading(self) -> str:
        return _("{command} stopped reading its input").format(command=self.name)

    def chunks(self) -> Iterator[bytes]:
        """Yield stdout as it arrives, in chunks of up to 1 MB (inflated when `gunzip` and it is gzip)."""
        if not self.gunzip:
            yield from self._raw_chunks()
            return
        try:
            yield from inflated(self._raw_chunks(), READ_CHUNK)
        except EOFError:
            reason = _("the compressed output of {command} was cut short").format(command=self.name)
            raise HostUnreachable(self.host, reason) from None

    def _raw_chunks(self) -> Iterator[bytes]:
        while True:
            try:
                data = self._channel.recv(READ_CHUNK)
            except TimeoutError:
                self._check_deadline()
                continue
            except (OSError, paramiko.SSHException):
                self._raise_lost(_("SSH connection lost while reading output ({command})"))
            if not data:
                return
            yield data

    def blocks(self) -> Iterator[bytes]:
        """Yield stdout as it arrives, cut after a newline: each block holds whole lines only."""
        rest = b""
        for chunk in self.chunks():
            cut = chunk.rfind(b"\n") + 1
            if cut:
                yield rest + chunk[:cut]
                rest = chunk[cut:]
            else:
                rest += chunk
        if rest:
            yield rest

    def line_batches(self) -> Iterator[list[bytes]]:
        """Yield stdout as lists of whole lines (without newlines), one list per block."""
        for block in self.blocks():
            yield block.removesuffix(b"\n").split(b"\n")

    def lines(self) -> Iterator[bytes]:
        """Yield stdout line by line (without the newline), never holding more than a chunk."""
        for batch in self.line_batches():
            yield from batch

    def wait(self, *, check: bool = True) -> CommandResult:
        """Finish reading, wait for the exit status and return the result (raise on failure if `check`)."""
        if self._stdout is None:
            self._stdout = bytearray()
            for chunk in self.chunks():
                self._stdout += chunk
        while not self._channel.status_event.wait(POLL_SECONDS):
            self._check_deadline()
        self._stderr_thread.join(max(0.0, self._deadline - time.monotonic()))
        status = self._channel.exit_status
        transport = self._channel.get_transport()
        if status == -1 and not (transport and transport.is_active()):
            self._raise_lost(_("SSH connection lost before the command finished ({command})"))
        result = CommandResult(
            argv=self.argv,
            exit_status=status,
            stdout=bytes(self._stdout),
            stderr_tail=self._stderr[-STDERR_TAIL_BYTES:].decode("utf-8", "replace"),
            duration=time.monotonic() - self._started,
        )
        self._channel.close()
        log.debug("%s exited %d in %.2fs", shlex.join(self.argv), status, result.duration)
        if check and status != 0:
            raise command_failed(self.host, result)
        return result

    def close(self) -> None:
        """Close the channel (the remote command loses its stdio)."""
        self._channel.close()

    def _raise_lost(self, reason: str) -> None:
        """Close the channel and raise HostUnreachable with `reason`, which names the command as {command}."""
        self._channel.close()
        raise HostUnreachable(self.host, reason.format(command=self.name))


class SSHExecutor:
    """One reusable, host-key-checked SSH connection to a mail server."""

    def __init__(self, server: ServerConfig) -> None:
        self.server = server
        self.host = server.host
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self.round_trip = 0.0  # seconds, measured on each new connection

    def command_line(self, argv: Sequence[str]) -> str:
        """Return the quoted command line for `argv`, through `sudo -n` unless we are root."""
        if not argv:
            raise ValueError("empty command")
        prefix = [] if self.server.user == "root" else ["sudo", "-n", "--"]
        return shlex.join([*prefix, *argv])

    def start(self, argv: Sequence[str], *, timeout: float | None = None, gunzip: bool = False) -> RemoteProcess:
        """Start `argv` on the server and return its RemoteProcess (whose stdout it inflates if `gunzip`)."""
        line = self.command_line(argv)
        limit = self.server.command_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + limit
        log.debug("%s: running %s", self.host, line)
        for attempt in (1, 2):
            transport = self._transport()
            try:
                channel = transport.open_session(window_size=WINDOW_SIZE, timeout=limit)
                channel.settimeout(POLL_SECONDS)
                channel.exec_command(line)
                return RemoteProcess(self.host, argv, channel, deadline, gunzip=gunzip)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                # The connection may have dropped since the last command: re-open it once.
                self._drop()
                if attempt == 2:
                    reason = _("could not start a command: {error}").format(error=short(exc))
                    raise HostUnreachable(self.host, reason) from None
        raise AssertionError("unreachable")

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | Iterable[bytes] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run `argv` to completion, feeding it `stdin`, and return its result."""
        process = self.start(argv, timeout=timeout)
        writer: threading.Thread | None = None
        errors: list[BaseException] = []
        if stdin is None:
            process.close_stdin()
        else:
            # Writing on another thread lets stdout and stderr flow while input is sent.
            writer = threading.Thread(target=_feed, args=(process, stdin, errors), daemon=True)
            writer.start()
        try:
            result = process.wait(check=False)
        finally:
            if writer is not None:
                writer.join(POLL_SECONDS * 4)
        # An input failure matters only when the command itself claims success.
        if errors and result.exit_status == 0:
            if isinstance(errors[0], ExecutorError):
                raise errors[0]
            reason = _("sending input to {command} failed: {error}").format(
                command=process.name, error=short(errors[0])
            )
            raise HostUnreachable(self.host, reason)
        if check and result.exit_status != 0:
            raise command_failed(self.host, result)
        return result

    def stream(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> Iterator[bytes]:
        """Yield the stdout lines of `argv` as they arrive; raise CommandFailed at the end if it failed."""
        process = self.start(argv, timeout=timeout)
        try:
            if stdin is not None:
                process.write(stdin)
            process.close_stdin()
            yield from process.lines()
            process.wait()
        finally:
            process.close()

    def replace_file(self, path: str, content: bytes, *, new_file_mode: str = "0644") -> None:
        """Replace the file at `path` with `content` atomically, keeping its owner and mode."""
        tmp = f"{path}.mailfix-new"
        copied = self.run(["cp", "-p", "--", path, tmp], check=False)
        if not copied.ok:
            self.run(["install", "-m", new_file_mode, "/dev/null", tmp])
        # dd truncates the copy in place, so the owner and mode survive; content comes on stdin.
        self.run(["dd", f"of={tmp}", "status=none"], stdin=content)
        self.run(["mv", "-f", "--", tmp, path])

    def close(self) -> None:
        """Close the SSH connection; a later command opens a new one."""
        self._drop()

    def open(self) -> None:
        """Connect now unless connected (host key, login and link checked); any command would connect too."""
        self._transport()

    def compresses(self) -> bool:
        """Return True when large outputs should travel gzip'ed: as configured, or on a slow link ("auto")."""
        if self.server.compression != "auto":
            return self.server.compression == "always"
        self._transport()  # connects if needed, which measures the link
        return self.round_trip >= SLOW_LINK_SECONDS

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            client = self._client
            transport = client.get_transport() if client else None
            if transport is not None and transport.is_active():
                return transport
            self._drop_locked()
            self._client = self._connect()
            transport = self._client.get_transport()
            assert transport is not None
            transport.set_keepalive(KEEPALIVE_SECONDS)
            self.round_trip = _round_trip(transport)
            return transport

    def _connect(self) -> paramiko.SSHClient:
        server = self.server
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(server.known_hosts))
        except OSError as exc:
            reason = _("cannot read known_hosts {file}: {error}").format(file=server.known_hosts, error=exc.strerror)
            raise HostKeyMismatch(self.host, reason) from None
        client.set_missing_host_key_policy(RefuseUnknownHostKey())
        try:
            pkey = paramiko.PKey.from_path(server.key_file)
        except OSError as exc:
            reason = _("cannot read key file {file}: {error}").format(file=server.key_file, error=exc.strerror)
            raise AuthFailed(self.host, reason) from None
        except paramiko.PasswordRequiredException:
            raise AuthFailed(self.host, _("key file {file} is encrypted").format(file=server.key_file)) from None
        except (paramiko.SSHException, ValueError) as exc:
            reason = _("unusable key file {file}: {error}").format(file=server.key_file, error=short(exc))
            raise AuthFailed(self.host, reason) from None
        timeout = server.connect_timeout_seconds
        try:
            client.connect(
                server.host, port=server.port, username=server.user, pkey=pkey, look_for_keys=False,
                # No SSH compression: the large outputs are gzip'ed by the server when the link is slow.
                allow_agent=False, compress=False, timeout=timeout, banner_timeout=timeout,
                auth_timeout=timeout, channel_timeout=timeout, transport_factory=_Transport,
            )  # fmt: skip
        except BaseException as exc:
            client.close()
            raise connect_error(self.host, server, exc) from None
        return client

    def _drop(self) -> None:
        with self._lock:
            self._drop_locked()

    def _drop_locked(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SSHExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transport(paramiko.Transport):
    # AES-GCM first (OpenSSH has it since 6.2): an AEAD cipher needs no separate MAC, which paramiko
    # compares in Python for every packet of a large listing.
    _preferred_ciphers = (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        *(name for name in paramiko.Transport._preferred_ciphers if "-gcm@" not in name),
    )


def _round_trip(transport: paramiko.Transport, tries: int = 3) -> float:
    """Return the shortest of up to `tries` SSH keepalive round trips; stop at a LAN's answer, or at a
    WAN's second (the first answer after the login takes about 40 ms, even on loopback)."""
    best = float("inf")
    for asked in range(1, tries + 1):
        started = time.monotonic()
        transport.global_request("keepalive@openssh.com", wait=True)
        best = min(best, time.monotonic() - started)
        if best < SLOW_LINK_SECONDS or (asked >= 2 and best >= CLEARLY_SLOW_SECONDS):
            break
    return best


def _feed(process: RemoteProcess, stdin: bytes | Iterable[bytes], errors: list[BaseException]) -> None:
    """Write `stdin` to `process` and close it, recording (not raising) any failure."""
    try:
        for chunk in [stdin] if isinstance(stdin, bytes | bytearray) else stdin:
            process.write(chunk)
        process.close_stdin()
    except BaseException as exc:  # handed to the thread that waits for the command
        errors.append(exc)
