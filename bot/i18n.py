"""What mailfix says, in the team's language: gettext catalogs (Babel's tooling) under bot/locale.

English is the source language; every catalog (en and es_MX) is complete, which tests/test_catalogs.py
checks against the messages extracted from the source. Everything people read is written as
`_("Deleted {count} messages").format(count=n)`: named fields, so a translation may reorder them.
Texts kept in module constants are marked with `N_` and translated where they are shown.

The team's language (`language` in mailfix.toml) is what the whole process speaks; `speaking(locale)`
switches the current thread to another one for a while (the DM, in the user's own Slack locale).
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "mailfix"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "es_MX")  # what is shipped: English (the source) and Mexican Spanish
LANGUAGE_NAMES = {"en": "English", "es_MX": "español (México)"}

_team = "en"
_current: ContextVar[str | None] = ContextVar("mailfix_language", default=None)


def language_of(locale: str | None) -> str | None:
    """Return the shipped language for a locale as Slack or a config gives it (`es-MX`, `es_LA`, `es`,
    `en-US`), or None when none is shipped for it. Every Spanish gets es_MX: the closest one shipped."""
    if not locale:
        return None
    base = locale.replace("-", "_").split("_")[0].lower()
    return {"en": "en", "es": "es_MX"}.get(base)


def use(language: str) -> None:
    """Make `language` (a shipped one) the team's: what the whole process says from now on."""
    global _team
    found = language_of(language)
    if found is None:
        raise ValueError(f"no catalog for {language!r}: use one of {', '.join(LANGUAGES)}")
    _team = found


def current() -> str:
    """The language the current thread speaks."""
    return _current.get() or _team


@contextmanager
def speaking(locale: str | None) -> Iterator[str]:
    """Speak `locale`'s language in this thread for a while (the team's when none is shipped for it)."""
    token = _current.set(language_of(locale) or _team)
    try:
        yield current()
    finally:
        _current.reset(token)


@cache
def catalog(language: str) -> gettext.NullTranslations:
    """The compiled catalog of `language`, read from its .po file (compiled in memory: no build step)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        messages = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def _(message: str) -> str:
    """`message` in the current language."""
    return catalog(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form of a message for `n`, in the current language."""
    return catalog(current()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`message` in the current language, as meant in `context` (one English text, two meanings)."""
    return catalog(current()).pgettext(context, message)


def N_(message: str) -> str:  # noqa: N802 - gettext's own name for "mark, translate later"
    """Mark `message` for the catalogs without translating it yet (module constants)."""
    return message
