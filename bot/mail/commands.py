"""Command lines and what they return: the pure half of running commands on a mail server (no SSH here)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from bot.errors import CommandFailed
from bot.i18n import _

STDERR_TAIL_BYTES = 8192
SUDO_PASSWORD_HINTS = (b"a password is required", b"a terminal is required")


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned: exit status, stdout, the tail of stderr and its duration."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr_tail: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


def command_failed(host: str, result: CommandResult) -> CommandFailed:
    """Return the CommandFailed for `result`, explaining a sudo that wants a password."""
    tail = result.stderr_tail.encode()
    if result.exit_status == 1 and any(hint in tail for hint in SUDO_PASSWORD_HINTS):
        return CommandFailed(host, _("sudo needs NOPASSWD for mailfix's user"), result)
    # Some commands (a shell wrapper) report on stdout: fall back to its last line.
    output = result.stderr_tail.strip() or result.stdout[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()
    last = output.splitlines()[-1:] or [_("no error output")]
    reason = _("{command} exited with status {status}: {output}").format(
        command=command_name(result.argv), status=result.exit_status, output=last[0][:200]
    )
    return CommandFailed(host, reason, result)


# Runs "$@" with one of its streams piped through a filter (if any) and re-blocked by dd, keeping
# the command's exit status (dash has no pipefail).
_DD = "dd bs={bs} iflag=fullblock status=none"
_REBLOCK = {
    "stdout": 'exec 3>&1; rc=$( { { "$@"; echo $? >&4; } | {through}{last} >&3; } 4>&1 )',
    "stderr": 'exec 3>&1; rc=$( { { "$@" 2>&1 >&3; echo $? >&4; } | {through}{last} >&2; } 4>&1 )',
}


# A fixed filter for the listing (never built from input). The diagnosis reads no delay_reason, a
# line of text per recipient and most of a deferred flood's listing: perl (in every Debian and most
# RHEL systems) drops them, escaped quotes and all, so that there is less to send, encrypt, decrypt
# and parse; without perl the listing travels whole.
TRIM_LISTING = (
    "if command -v perl >/dev/null 2>&1; then "
    r"""LC_ALL=C perl -pe 's/, "delay_reason": "[^"\\]*+(?:\\.[^"\\]*+)*+"//g'; """
    "else cat; fi"
)
# gzip's output comes in large blocks already; where gzip is missing, dd makes blocks of the plain text.
_GZIP = "if command -v gzip >/dev/null 2>&1; then gzip -{level}; else " + _DD + "; fi"


def reblocked(
    argv: Sequence[str],
    *,
    stream: str = "stdout",
    through: str = "",
    gzip: bool = False,
    level: int = 6,
    block_size: int = 256 * 1024,
) -> list[str]:
    """Return argv running `argv` with its stdout (or stderr) gathered into blocks on the server.

    postqueue -j writes a line at a time and postsuper a line per queue ID on stderr; sshd turns
    each write into an SSH packet, and at 100,000 packets paramiko's per-packet cost dominates.
    `through` is a fixed shell filter (never built from input) that the stream passes first; with
    `gzip` the stream then travels compressed at `level` (read it with `gunzip=True`), for a slow link.
    """
    pipe = f"{through} | " if through else ""
    script = (
        _REBLOCK[stream]
        .replace("{through}", pipe)
        .replace("{last}", _GZIP.replace("{level}", str(int(level))) if gzip else _DD)
    )
    return ["sh", "-c", script.replace("{bs}", str(block_size)) + '; exit "${rc:-1}"', "sh", *argv]


GZIP_MAGIC = b"\x1f\x8b"


def inflated(raw: Iterator[bytes], chunk_size: int) -> Iterator[bytes]:
    """Yield `raw` inflated if it starts with gzip's magic (members one after another), else as it is.

    Raises EOFError when the compressed stream stops half way: a short listing must not pass for a whole one.
    """
    first = b""
    while len(first) < len(GZIP_MAGIC) and (chunk := next(raw, None)) is not None:
        first += chunk
    if not first.startswith(GZIP_MAGIC):  # the server had no gzip: plain output
        yield first
        yield from raw
        return
    inflate, fed = zlib.decompressobj(wbits=31), False
    for chunk in chain((first,), raw):
        while chunk:
            data, fed = inflate.decompress(chunk, chunk_size), True
            if data:
                yield data
            if inflate.eof:  # another gzip member may follow
                chunk, inflate, fed = inflate.unused_data, zlib.decompressobj(wbits=31), False
            else:
                chunk = inflate.unconsumed_tail
    if fed:
        raise EOFError("gzip stream cut short")


def command_name(argv: Sequence[str]) -> str:
    """Return the program a command line runs, looking through `sh -c SCRIPT sh` and `env VAR=...`."""
    args = list(argv)
    if args[:2] == ["sh", "-c"] and len(args) > 4:
        args = args[4:]
    while args and (args[0] == "env" or "=" in args[0]):
        args = args[1:]
    return args[0] if args else (argv[0] if argv else "?")
