"""Several file-backed fake mail servers for one `mailfix serve`: a config naming them, one state file each.

The bot loads them through MAILFIX_MAILSERVER=bench.fleet:fleet_server; each server's state lives in
$BENCH_FLEET_DIR/<name>.json. $BENCH_FAIL_ONCE="<server>:<method>" makes that server's method fail the
first time it is called (a marker file remembers it across the bot's threads and restarts), so that an
incident can be made to fail and then be retried.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bot.config import ServerConfig
from bot.errors import CommandFailed
from tests.conftest import DIRECTOR, DIRECTOR2, OPERATOR
from tests.fakes import FakeMailServer

SETTINGS = """
flood_threshold = 100
normal_queue_size = 50
monitor_minutes = 120
restart_monitor_minutes = 120
check_interval_seconds = 30
approval_timeout_minutes = 120
"""


def domain_of(name: str) -> str:
    return f"{name}.example.org"


def fleet_server(server: ServerConfig) -> FakeMailServer:
    """MAILFIX_MAILSERVER entry point: the fake mail server persisted at $BENCH_FLEET_DIR/<name>.json."""
    state = Path(os.environ["BENCH_FLEET_DIR"]) / f"{server.name}.json"
    fake = FakeMailServer.from_file(state, name=server.name, domain=server.mail_domain)
    target, _, method = os.environ.get("BENCH_FAIL_ONCE", "").partition(":")
    if target == server.name and method:
        real = getattr(fake, method)
        marker = state.with_suffix(".failed-once")

        def fail_once(*args: Any, **kwargs: Any) -> Any:
            if not marker.exists():
                marker.write_text(method)
                raise CommandFailed(server.name, f"{method} failed (fake, once)")
            return real(*args, **kwargs)

        setattr(fake, method, fail_once)
    return fake


def write_fleet(directory: Path, names: list[str]) -> Path:
    """Write one flooded fake server per name (victim floods, mallory is next) and a config; return its path."""
    for name in names:
        fake = FakeMailServer(name=name, domain=domain_of(name), state_file=directory / f"{name}.json")
        fake.flood("victim", 300, forged=50, to_account=10)
        fake.flood("mallory", 150)
        fake.flood("alice", 5)
        fake.inbox["victim"] = 4
        fake._save()
    (directory / "key").write_text("not a real key\n")
    (directory / "known_hosts").write_text("")
    servers = "".join(
        f'\n[[servers]]\nname = "{name}"\nhost = "127.0.0.1"\nuser = "root"\nkey_file = "key"\n'
        f'known_hosts = "known_hosts"\nmail_domain = "{domain_of(name)}"\n'
        for name in names
    )
    path = directory / "fleet.toml"
    path.write_text(
        f'channel = "C0INCIDENT"\ndirectors = ["{DIRECTOR}", "{DIRECTOR2}"]\noperators = ["{OPERATOR}"]\n'
        f'{SETTINGS}\n[cli_users]\nalt = "{OPERATOR}"\n{servers}'
    )
    return path
