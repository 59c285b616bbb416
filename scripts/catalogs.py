"""Keep the message catalogs (bot/locale) in step with the source, with Babel's own extractor.

    python3 scripts/catalogs.py update [--translations FILE.json ...]   # extract, merge, fill en
    python3 scripts/catalogs.py check                                   # what a catalog lacks (exit 1)

`update` writes bot/locale/mailfix.pot from every `_()`, `ngettext()` and `N_()` in bot/ and handlers/,
adds new messages to each catalog and drops gone ones, copies each English message to the en catalog,
and takes Spanish translations from JSON files ({"English": "Español"}) when given. `check` is what
tests/test_catalogs.py asserts: every message translated in every catalog, with the same {fields}.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import string
import sys
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "bot" / "locale"
SOURCES = ("bot", "handlers")
DOMAIN = "mailfix"
LANGUAGES = ("en", "es_MX")


def extract() -> Catalog:
    """Return a template catalog of every message marked in the source (bot/ and handlers/)."""
    template = Catalog(project="mailfix", domain=DOMAIN, charset="utf-8")
    for top in (ROOT / s for s in SOURCES):
        found = extract_from_dir(str(top), method_map=[("**.py", "python")], keywords=DEFAULT_KEYWORDS)
        for filename, lineno, message, comments, context in found:
            where = (str((top / filename).relative_to(ROOT)), lineno)
            template.add(message, locations=[where], auto_comments=comments, context=context)
    return template


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read(language: str) -> Catalog:
    path = catalog_path(language)
    if not path.exists():
        return Catalog(locale=language, domain=DOMAIN, project="mailfix", charset="utf-8")
    with path.open("rb") as po:
        return read_po(po, locale=language, domain=DOMAIN)


def write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as po:
        write_po(po, catalog, width=100, sort_output=True, omit_header=False, ignore_obsolete=True)


def fields(text: str) -> set[str]:
    """The {fields} a text formats, and its %-fields (argparse's): what a translation must keep.

    Raises ValueError for a text whose braces `.format()` could not read (a lone "{"): it would raise in use.
    """
    braces = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    return braces | set(re.findall(r"%(?:\([a-z_]+\))?[-#0 +]*\d*[a-z%]", text))


def problems(template: Catalog, catalog: Catalog) -> list[str]:
    """What `catalog` lacks against `template`: missing, untranslated or fuzzy messages, and fields that differ."""
    found = []
    for message in template:
        if not message.id:
            continue
        ours = catalog.get(message.id, context=message.context)
        label = message.id if isinstance(message.id, str) else message.id[0]
        if ours is None or ours.fuzzy:
            found.append(f"{catalog.locale}: missing or fuzzy: {label!r}")
            continue
        texts = ours.string if isinstance(ours.string, tuple) else (ours.string,)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        if not all(texts):
            found.append(f"{catalog.locale}: not translated: {label!r}")
            continue
        try:
            differ = any(fields(t) != fields(ids[-1] if i else ids[0]) for i, t in enumerate(texts))
        except ValueError:  # a lone brace: .format() would raise on it
            differ = True
        if differ:
            found.append(f"{catalog.locale}: fields differ from the English: {label!r} -> {texts!r}")
    return found


def _key(message: Any) -> str:
    """A message's key in a translations file: its English (the singular), after "context|" when it has one."""
    english = message.id if isinstance(message.id, str) else message.id[0]
    return f"{message.context}|{english}" if message.context else english


def update(translations: dict[str, str]) -> None:
    template = extract()
    write(template, LOCALE_DIR / f"{DOMAIN}.pot")
    for language in LANGUAGES:
        catalog = read(language)
        catalog.update(copy.deepcopy(template), no_fuzzy_matching=True)  # update() adopts the template's messages
        for message in catalog:
            if not message.id:
                continue
            if language == "en":
                message.string = message.id  # English is the source: its catalog says the same
            elif (text := translations.get(_key(message))) is not None:
                message.string = tuple(text) if isinstance(text, list) else text  # plurals: a list of forms
            message.flags.discard("fuzzy")
        catalog.fuzzy = False  # the header too: a fuzzy header is left out of the compiled catalog
        catalog.last_translator = "mailfix <it@example.org>"
        catalog.language_team = "mailfix"
        write(catalog, catalog_path(language))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=("update", "check"))
    parser.add_argument("--translations", nargs="*", type=Path, default=[], help="JSON files: English -> Spanish")
    args = parser.parse_args(argv)
    if args.verb == "update":
        translations: dict[str, str] = {}
        for path in args.translations:
            translations.update(json.loads(path.read_text()))
        update(translations)
        return 0
    template = extract()
    found = [p for language in LANGUAGES for p in problems(template, read(language))]
    print("\n".join(found) or f"complete: {len(template)} messages")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
