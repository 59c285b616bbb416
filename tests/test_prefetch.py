"""Sample subjects fetched during the listing are used only when the guess was the suspect."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bot.errors import CommandFailed
from bot.mail.subjects import Prefetch


def test_a_right_guess_is_used_and_a_wrong_one_fetches_again():
    fetched: list[list[str]] = []

    def fetch(ids: list[str]) -> tuple[str, ...]:
        fetched.append(ids)
        return tuple(f"subject of {i}" for i in ids)

    with ThreadPoolExecutor(1) as pool:
        prefetch = Prefetch()
        prefetch.start(pool, ["A", "B"], fetch)
        prefetch.settle()
    assert prefetch.subjects([["A", "B"]], fetch) == ("subject of A", "subject of B")
    # The login's samples differ, but the guess was the address's: no second fetch.
    assert prefetch.subjects([["X", "Y"], ["A", "B"]], fetch) == ("subject of A", "subject of B")
    assert fetched == [["A", "B"]]
    assert prefetch.subjects([[], ["C"]], fetch) == ("subject of C",)
    assert fetched == [["A", "B"], ["C"]]


def test_a_failed_guess_falls_back_to_fetching():
    def failing(ids: list[str]) -> tuple[str, ...]:
        raise CommandFailed("lab", "postcat failed")

    with ThreadPoolExecutor(1) as pool:
        prefetch = Prefetch()
        prefetch.start(pool, ["A"], failing)
        prefetch.settle()
    assert prefetch.subjects([["A"]], lambda ids: ("fetched again",)) == ("fetched again",)
