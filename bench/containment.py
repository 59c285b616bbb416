"""Benchmark the whole containment of a flood: `mailfix start` against the bare tools doing the same work.

Run as root from the repository root:  python -m bench.containment [--messages 100000] [--shape 1-3]

Builds a spam run in the lab and saves its queue; before every round the queue is restored and the
login unblocked, so that both contenders face the very same flood. Alternating, it times:
    mailfix: `mailfix start lab` from the terminal, until the flood is held, the login blocked and the
        sessions kicked (diagnose + hold + block + kick, SQLite bookkeeping included)
    bare tools: one `postqueue -j`, one `postsuper -h -` fed every ID of the flood (from the address
        and by the login; the IDs are worked out beforehand, outside the timing) and one `postmap` of
        the access map with the login's entry (written beforehand), each over its own ssh call.
Target: mailfix at most 1.2x the bare tools' sum.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.lab import (
    SHAPES,
    SavedQueue,
    build_or_restore,
    describe_queue,
    median_line,
    quiet_queue_manager,
    ssh_argv,
    timed,
    verdict,
)
from bench.queue import login_ids
from bot.mail.sasl import BLOCK_ACTION
from bot.terminal import cli
from tests.clitools import write_server_config
from tests.conftest import SECRET_KEY
from tests.integration.lab import Lab

LOGIN = "victim"


def flood_ids(lab: Lab) -> list[str]:
    """Return the IDs of the flood: sent from the login's address or by the login, each once."""
    by_login = login_ids(lab, LOGIN)
    queued = subprocess.run(["postqueue", "-j"], capture_output=True, check=True).stdout.splitlines()
    from_address = [m["queue_id"] for m in map(json.loads, queued) if m["sender"] == f"{LOGIN}@{lab.domain}"]
    return list(dict.fromkeys(by_login + from_address))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--shape", choices=list(SHAPES), default="1-3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the built queue in this file, or reuse the one kept there")
    args = parser.parse_args(argv)

    with Lab() as lab, tempfile.TemporaryDirectory() as scratch:
        quiet_queue_manager(lab)
        shape = replace(SHAPES[args.shape], messages=args.messages)
        print(f"containment of a flood, shape {shape.name}", flush=True)
        saved = SavedQueue(lab, args.keep or Path(scratch) / "queue.tar")
        build_or_restore(lab, shape, saved)
        print(f"  measured: {describe_queue(lab)}", flush=True)
        config = write_server_config(
            Path(scratch), lab.server_config(), settings="flood_threshold = 500\nnormal_queue_size = 100"
        )
        os.environ |= {"MAILFIX_CONFIG": str(config), "MAILFIX_SECRET_KEY": SECRET_KEY, "SUDO_USER": "alt"}
        os.environ.pop("MAILFIX_MAILSERVER", None)
        flood = flood_ids(lab)
        ids = ("\n".join(flood) + "\n").encode()
        print(f"  the flood: {len(flood)} messages from {LOGIN}@{lab.domain} or by login {LOGIN}", flush=True)
        fresh_db = Path(scratch) / "fresh.db"
        os.environ["MAILFIX_DATABASE_URL"] = f"sqlite:///{fresh_db}"
        assert cli.main(["list"], out=io.StringIO()) == 0  # creates and migrates the database once

        def mailfix(round_number: int) -> None:
            database = Path(scratch) / f"round{round_number}.db"
            shutil.copy(fresh_db, database)
            os.environ["MAILFIX_DATABASE_URL"] = f"sqlite:///{database}"
            out = io.StringIO()
            assert cli.main(["start", "lab"], out=out) == 0, out.getvalue()
            assert "awaiting_approval" in out.getvalue(), out.getvalue()

        def bare() -> float:
            Path(lab.sasl_access_map).write_text(f"{LOGIN} {BLOCK_ACTION}\n")
            listing = ssh_argv(lab, "/usr/sbin/postqueue", "-j")
            listed = timed(lambda: subprocess.run(listing, stdout=subprocess.DEVNULL, check=True))
            hold = ssh_argv(lab, "/usr/sbin/postsuper", "-h", "-")
            held = timed(lambda: subprocess.run(hold, input=ids, capture_output=True, check=True))
            postmap = ssh_argv(lab, "/usr/sbin/postmap", f"hash:{lab.sasl_access_map}")
            return listed + held + timed(lambda: subprocess.run(postmap, check=True))

        mine, tools = [], []
        for n in range(args.rounds):
            saved.restore()
            mine.append(timed(lambda n=n: mailfix(n)))
            saved.restore()
            tools.append(bare())
        steps = sqlite3.connect(Path(scratch) / f"round{args.rounds - 1}.db").execute(
            "SELECT step, json_extract(summary, '$.seconds') FROM step_runs ORDER BY id"
        )
        print("  last mailfix round, step by step: " + ", ".join(f"{name} {sec or 0:.2f}s" for name, sec in steps))
        m = median_line("mailfix start (contained)", mine)
        b = median_line("bare tools, summed", tools)
        print(f"  mailfix / bare tools: {verdict(m / b, 1.2)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
