"""`mailfix` installed as users install it: a non-editable `pip install` into a virtualenv outside the checkout.

The virtualenv is cached (by the dependencies in pyproject.toml) and this tree is reinstalled into it
only when its source changed, so the test takes seconds after the first run. It is skipped only when
pip can reach no package index and has no cache to install from (never in CI).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.clitools import ROOT, write_config
from tests.conftest import SECRET_KEY

CACHE = Path(os.environ.get("MAILFIX_TEST_CACHE") or Path.home() / ".cache" / "mailfix-tests")
SOURCES = ("pyproject.toml", "README.md", "bot", "handlers", "storage")
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable", "No matching dist")


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def source_files() -> list[Path]:
    files = [ROOT / "pyproject.toml", ROOT / "README.md"]
    for package in SOURCES[2:]:
        files += [p for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def pip(venv: Path, *args: str) -> None:
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        said = result.stdout + result.stderr
        if any(sign in said for sign in OFFLINE) and not os.environ.get("CI"):
            pytest.skip(f"pip has no network and no cached wheels: {said.strip().splitlines()[-1]}")
        raise AssertionError(f"pip {' '.join(args)} failed:\n{said}")


@pytest.fixture(scope="module")
def mailfix() -> Path:
    """Return the `mailfix` script of a cached virtualenv outside the checkout, holding this tree."""
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / f"venv-{digest([ROOT / 'pyproject.toml'])}"
    with open(CACHE / "install.lock", "w") as lock:  # other test runs may install at the same time
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = not (venv / "bin" / "python").exists()
        if fresh:
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip(venv, "install", "--quiet", "setuptools>=68", "wheel")
        marker, wanted = venv / "mailfix-source", digest(source_files())
        if not marker.exists() or marker.read_text() != wanted:
            with tempfile.TemporaryDirectory() as copy:  # pip builds in its source: never in the shared tree
                for name in SOURCES:
                    src, dst = ROOT / name, Path(copy) / name
                    if src.is_dir():
                        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        shutil.copy(src, dst)
                # The dependencies once per pyproject.toml (the venv's key); then only this tree, in seconds.
                extra = () if fresh else ("--no-deps", "--force-reinstall")
                pip(venv, "install", "--quiet", "--no-build-isolation", *extra, copy)
            marker.write_text(wanted)
    script = venv / "bin" / "mailfix"
    assert ROOT not in script.resolve().parents and script.exists()
    return script


def run(mailfix: Path, cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Nothing of mailfix's from the test's own environment: only what .env and `env` say.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAILFIX_", "SLACK_", "FAKE_MAILSERVER"))}
    return subprocess.run([str(mailfix), *argv], cwd=cwd, env={**clean, "SUDO_USER": "alt", **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def site(tmp_path) -> Path:
    """A working directory outside the checkout with a config at a non-default path, named by its .env."""
    (tmp_path / "conf").mkdir()
    write_config(tmp_path / "conf")
    (tmp_path / ".env").write_text(
        f"MAILFIX_CONFIG={tmp_path}/conf/mailfix.toml\nMAILFIX_DATABASE_URL=sqlite:///{tmp_path}/site.db\n"
    )
    return tmp_path


def test_the_installed_command_reads_the_env_file_of_the_working_directory(mailfix, site):
    result = run(mailfix, site, "list", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('{\n  "schema": "mailfix.incidents/1"')
    assert (site / "site.db").exists()
    (site / "deeper").mkdir()  # like git: the nearest .env up from the working directory
    assert run(mailfix, site / "deeper", "list").returncode == 0


def test_the_environment_wins_over_the_env_file(mailfix, site):
    result = run(mailfix, site, "list", MAILFIX_CONFIG=str(site / "elsewhere.toml"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{site}/elsewhere.toml: file not found (copy mailfix.example.toml)"


def test_placeholders_from_env_example_end_in_one_line_per_variable(mailfix, site):
    """`cp .env.example .env` with the Slack lines left as shipped: no traceback, the variables named."""
    example = (ROOT / ".env.example").read_text().replace("# SLACK_APP_TOKEN=xapp-...", "SLACK_APP_TOKEN=xapp-...")
    (site / ".env").write_text(example + (site / ".env").read_text() + f"MAILFIX_SECRET_KEY={SECRET_KEY}\n")
    for verb, variables in (("serve", ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")), ("socket", ("SLACK_APP_TOKEN",))):
        result = run(mailfix, site, verb)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and "Traceback" not in result.stderr
        for variable in variables:
            (line,) = [x for x in lines if x.startswith(variable)]
            assert "placeholder" in line
        assert all(line.split()[0].startswith(("SLACK_", "MAILFIX_")) for line in lines), lines


def test_version_of_the_installed_command(mailfix, tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run(mailfix, tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"mailfix {version}"
