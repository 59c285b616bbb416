"""Helpers for tests that drive the `mailfix` command: a config file and the environment for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from bot.config import ServerConfig
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR, SECRET_KEY
from tests.fakes import FakeMailServer


def write_config(
    directory: Path, *, extra: str = "", server_name: str = "mail1", monitor_minutes: float = 0.02
) -> Path:
    """Write a valid mailfix.toml (with key files) into `directory` and return its path."""
    (directory / "key").write_text("not a real key\n")
    (directory / "known_hosts").write_text("")
    path = directory / "mailfix.toml"
    path.write_text(f'''
channel = "C0INCIDENT"
directors = ["{DIRECTOR}", "{DIRECTOR2}"]
operators = ["{OPERATOR}"]
flood_threshold = 100
normal_queue_size = 50
monitor_minutes = {monitor_minutes}
restart_monitor_minutes = 0.02
check_interval_seconds = 0.2
{extra}
[cli_users]
alt = "{OPERATOR}"
boss = "{DIRECTOR}"
boss2 = "{DIRECTOR2}"

[[servers]]
name = "{server_name}"
host = "127.0.0.1"
user = "root"
key_file = "key"
known_hosts = "known_hosts"
mail_domain = "example.org"
''')
    return path


def fake_env(directory: Path, database_url: str | None = None, *, monitor_minutes: float = 0.02) -> dict[str, str]:
    """Environment for a mailfix process using the file-backed fake mail server in `directory`."""
    state = directory / "fake.json"
    if not state.exists():
        fake = FakeMailServer(domain="example.org", state_file=state)
        fake.flood("victim", 300, forged=50, to_account=10)
        fake.flood("alice", 5)
        fake.inbox["victim"] = 4
        fake._save()
    return {
        "MAILFIX_CONFIG": str(write_config(directory, monitor_minutes=monitor_minutes)),
        "MAILFIX_DATABASE_URL": database_url or f"sqlite:///{directory}/mailfix.db",
        "MAILFIX_SECRET_KEY": SECRET_KEY,
        "MAILFIX_MAILSERVER": "tests.fakes:file_server",
        "FAKE_MAILSERVER_STATE": str(state),
    }


ROOT = Path(__file__).resolve().parents[1]


def spawn(env: dict[str, str], user: str, *argv: str, block_after: str = "") -> subprocess.Popen[str]:
    """Start a real `mailfix` process as local user `user` with `env` (block_after: see FakeMailServer)."""
    full = {**os.environ, **env, "SUDO_USER": user, "FAKE_MAILSERVER_BLOCK_AFTER": block_after}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *argv],
        cwd=ROOT,
        env=full,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def write_server_config(directory: Path, server: ServerConfig, *, settings: str, name: str = "mailfix.toml") -> Path:
    """Write a mailfix.toml with `settings` (top-level TOML lines) and `server` as its only [[servers]]."""
    lines = [
        f"{f.name} = {json.dumps(str(v) if isinstance(v, Path) else v)}"
        for f in fields(server)
        if (v := getattr(server, f.name)) is not None
    ]
    path = directory / name
    path.write_text(
        f'channel = "C0INCIDENT"\ndirectors = ["{DIRECTOR}", "{DIRECTOR2}"]\noperators = ["{OPERATOR}"]\n'
        f'{settings}\n[cli_users]\nalt = "{OPERATOR}"\nboss = "{DIRECTOR}"\n\n[[servers]]\n' + "\n".join(lines) + "\n"
    )
    return path
