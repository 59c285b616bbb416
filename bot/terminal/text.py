"""What the terminal prints: text from the mail queue (subjects, senders) is data, never escape sequences."""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TextIO

_KEEP = frozenset("\n\t")
COLOURS = MappingProxyType({"red": "1;31", "green": "32", "yellow": "33", "bold": "1"})


def printable(text: str) -> str:
    """Return `text` without control or bidi characters (newlines and tabs kept)."""
    if text.isprintable():
        return text
    return "".join(c for c in text if c in _KEEP or unicodedata.category(c) not in ("Cc", "Cf"))


class PrintableOut:
    """A text stream that passes everything written to it through `printable`.

    A closed pipe (`mailfix diagnose --json | head`) is noted in `closed`, not raised: a step that
    changes the server goes on to its end and is recorded, only its output is lost.
    """

    def __init__(self, out: TextIO, env: Mapping[str, str] | None = None) -> None:
        self.out = out
        self.closed = False
        env = os.environ if env is None else env
        # Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
        self.colour = bool(getattr(out, "isatty", lambda: False)()) and not env.get("NO_COLOR")

    def write(self, text: str) -> int:
        return self._raw(printable(text))

    def paint(self, text: str, colour: str) -> None:
        """Write `text` in `colour` on a colour terminal, else plain; the escapes never come from data."""
        if self.colour:
            self._raw(f"\x1b[{COLOURS[colour]}m")
        self.write(text)
        if self.colour:
            self._raw("\x1b[0m")

    def flush(self) -> None:
        if not self.closed:
            self._guard(self.out.flush)

    def _raw(self, text: str) -> int:
        if not self.closed:
            self._guard(lambda: self.out.write(text))
        return len(text)

    def _guard(self, write: Callable[[], object]) -> None:
        try:
            write()
        except BrokenPipeError:
            self.closed = True
            with contextlib.suppress(OSError, ValueError, AttributeError):  # a stream with no file behind it
                # So that the interpreter's own flush at exit does not complain either.
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())


def paint(out: TextIO, text: str, colour: str) -> None:
    """Write `text` to `out`, in `colour` when `out` is a colour terminal."""
    if isinstance(out, PrintableOut):
        out.paint(text, colour)
    else:
        out.write(text)


# Slack's markup in texts the core writes for Slack and the terminal alike.
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
# An emoji code (`:warning:`) and the space after it; a letter first, so times (12:30:45) are left alone.
_EMOJI = re.compile(r"(?<![\w:]):[a-z][a-z0-9_+-]*:(?![\w:]) ?")


def plain(text: str, names: Mapping[str, str] = MappingProxyType({})) -> str:
    """Return `text` without Slack markup: no emoji codes, people by name (`names`: Slack ID to name) or plain ID."""
    text = _MENTION.sub(lambda m: names.get(m[1], m[1]), text)
    text = _DATE.sub(lambda m: m[1], text)
    text = _SPECIAL.sub(lambda m: f"@{m[1]}", text)
    text = _CHANNEL.sub(lambda m: f"#{m[2] or m[1]}", text)
    text = _LINK.sub(lambda m: f"{m[2]} ({m[1]})" if m[2] else m[1], text)
    text = _EMOJI.sub("", text)
    if names:  # bare IDs the core writes (opened by, decided by, the report's "who")
        text = re.sub(r"\b[UW][A-Z0-9]{2,20}\b", lambda m: names.get(m[0], m[0]), text)
    return text
