"""Fixtures for the integration tests: one lab per session, reset per test that asks for it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.lab import Lab

HERE = Path(__file__).parent
NEEDED = ("/usr/sbin/sshd", "/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/bin/doveadm", "/usr/bin/sudo")
HOW = "run `sudo bash .ci/install-lab.sh`, then pytest as root"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, not only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return f"integration lab needs root; {HOW}"
    missing = [path for path in NEEDED if shutil.which(path) is None]
    if missing:
        return f"integration lab needs {', '.join(missing)}; {HOW}"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab (sshd, Postfix, Dovecot on 127.0.0.1), shared by the whole session."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":  # in CI the integration tests must run, not skip
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    the_lab = Lab().start()
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def clean_lab(lab: Lab) -> Lab:
    """The lab restored to its initial state: empty queue, map and mailboxes, known passwords."""
    lab.reset()
    return lab
