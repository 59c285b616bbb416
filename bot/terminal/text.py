"""What the terminal prints: text from the mail queue (subjects, senders) is data, never escape sequences."""

from __future__ import annotations

import unicodedata
from typing import TextIO

_KEEP = frozenset("\n\t")


def printable(text: str) -> str:
    """Return `text` without control or bidi characters (newlines and tabs kept)."""
    if text.isprintable():
        return text
    return "".join(c for c in text if c in _KEEP or unicodedata.category(c) not in ("Cc", "Cf"))


class PrintableOut:
    """A text stream that passes everything written to it through `printable`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(printable(text))

    def flush(self) -> None:
        self.out.flush()
