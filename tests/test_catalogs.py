"""The message catalogs: complete for every message in the source, the same {fields}, and really used."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from bot import i18n
from scripts import catalogs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def template() -> Catalog:
    return catalogs.extract()


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_message_in_the_source_is_translated_in_every_catalog(template, language):
    assert len(template) > 300  # the extraction found the source's messages (not an empty template)
    assert catalogs.problems(template, catalogs.read(language)) == []


def test_a_catalog_that_lacks_a_message_fails_the_check(template):
    spanish = catalogs.read("es_MX")
    some = next(m for m in template if m.id)
    spanish.delete(some.id, context=some.context)
    assert catalogs.problems(template, spanish) == [f"es_MX: missing or fuzzy: {some.id!r}"]


def test_a_translation_that_drops_or_renames_a_field_fails_the_check(template):
    spanish = catalogs.read("es_MX")
    some = next(m for m in template if isinstance(m.id, str) and catalogs.fields(m.id))
    spanish.get(some.id).string = "sin campos"
    assert catalogs.problems(template, spanish) == [
        f"es_MX: fields differ from the English: {some.id!r} -> ('sin campos',)"
    ]


def test_no_message_is_translated_at_import_time():
    """`_()` at module level (or as a default argument) would freeze the text in English: constants use N_()."""
    found = []
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                for default in [*node.args.defaults, *node.args.kw_defaults]:
                    found += [f"{path}:{c.lineno}" for c in ast.walk(default) if _translates(c)] if default else []
        for statement in tree.body:  # module level, and class bodies
            bodies = statement.body if isinstance(statement, ast.ClassDef) else [statement]
            for top in bodies:
                if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                found += [f"{path}:{c.lineno}" for c in ast.walk(top) if _translates(c)]
    assert found == []


def _translates(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "ngettext")


def test_the_team_language_and_a_users_locale_choose_the_catalog():
    english = "I have saved my new password"
    assert i18n._(english) == english
    with i18n.speaking("es-LA"):  # Slack's Latin American Spanish gets the Mexican catalog
        assert i18n._(english) == "Ya guardé mi nueva contraseña"
    with i18n.speaking("ja-JP"):  # no catalog for it: the team's language
        assert i18n._(english) == english
    i18n.use("es-MX")
    assert i18n._(english) == "Ya guardé mi nueva contraseña"
    with i18n.speaking("en-GB"):
        assert i18n._(english) == english
    with pytest.raises(ValueError, match="no catalog for 'fr'"):
        i18n.use("fr")


def test_refusals_in_spanish_name_states_and_requests_in_spanish_not_their_identifiers():
    from datetime import UTC, datetime

    from bot.core.binding import PAST_TENSE
    from bot.core.table import Event, next_state
    from bot.errors import AlreadyDone, ApprovalExpired, InvalidTransition

    i18n.use("es-MX")
    with pytest.raises(InvalidTransition) as err:
        next_state("monitoring", Event.APPROVE_REBOOT)
    assert str(err.value) == "No se puede aprobar el reinicio (estado del incidente: en monitoreo)"
    reason = InvalidTransition(Event.RENEW, reason="la solicitud no ha vencido")
    assert str(reason) == "No se puede volver a pedir la aprobación: la solicitud no ha vencido"
    done = AlreadyDone(PAST_TENSE[Event.APPROVE], "U1", datetime(2026, 12, 7, 3, 10, tzinfo=UTC))
    assert str(done) == "ya fue aprobada por U1 a las 03:10"
    assert "limpieza" in str(ApprovalExpired("cleanup", datetime(2026, 12, 7, 3, 10, tzinfo=UTC)))


def test_counts_agree_with_their_number_in_both_languages():
    one, many = "Closed {count} open IMAP/POP session of {login}", "Closed {count} open IMAP/POP sessions of {login}"
    said = {n: i18n.ngettext(one, many, n).format(count=n, login="v") for n in (0, 1, 2)}
    assert said == {
        0: many.format(count=0, login="v"),
        1: one.format(count=1, login="v"),
        2: many.format(count=2, login="v"),
    }
    i18n.use("es-MX")
    assert i18n.ngettext(one, many, 1).format(count=1, login="v") == "Se cerró 1 sesión IMAP/POP abierta de v"
    assert i18n.ngettext(one, many, 3).format(count=3, login="v") == "Se cerraron 3 sesiones IMAP/POP abiertas de v"
