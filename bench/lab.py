"""What the benchmarks share: floods shaped like real spam runs, a saved queue to restore between
destructive rounds, bare OpenSSH calls, timing and the figures printed for a queue's shape."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.mail.digest import digest_filter
from tests.integration.flood import flood
from tests.integration.lab import Lab

BODY_BYTES = 1200  # a real spam run carries about 1 KB of text and HTML


@dataclass(frozen=True)
class Shape:
    """How a spam run's messages are addressed: `low`..`high` recipients each, from a large address book."""

    name: str
    messages: int
    low: int
    high: int
    address_book: int = 10**6


# 1 recipient each (the easy shape), 1-3 (a typical run), 1-50 (BCC runs: about 1,000,000 recipients).
SHAPES = {
    "1": Shape("1", 100_000, 1, 1),
    "1-3": Shape("1-3", 100_000, 1, 3),
    "1-50": Shape("1-50", 40_000, 1, 50),
}


def ssh_argv(lab: Lab, *command: str, port: int | None = None, known_hosts: Path | None = None) -> list[str]:
    """Return the argv of a bare OpenSSH call to the lab as root."""
    return [
        "ssh", "-p", str(port or lab.ssh_port), "-i", str(lab.client_key), "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known_hosts or lab.known_hosts}",
        f"root@{lab.host}", *command,
    ]  # fmt: skip


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_line(label: str, rounds: list[float]) -> float:
    value = statistics.median(rounds)
    print(f"  {label:<28} median {value:6.2f}s  rounds {' '.join(f'{x:.2f}' for x in rounds)}", flush=True)
    return value


def verdict(ratio: float, target: float, what: str = "x") -> str:
    return f"{ratio:.2f}{what} (target <= {target}{what}: {'met' if ratio <= target else 'NOT MET'})"


def quiet_queue_manager(lab: Lab) -> None:
    """Keep Postfix from retrying the deferred flood while we measure.

    Otherwise, 5 minutes after the build, qmgr moves every message back to the active queue and
    logs a retry for each: a burst of CPU (and of log) that lands on whichever contender runs then.
    With a 1-hour queue run delay both contenders see the same quiet server.
    """
    lab.run(["postconf", "-e", "queue_run_delay=1h", "minimal_backoff_time=1h", "maximal_backoff_time=4h"])
    lab.run(["postfix", "reload"])


def build(lab: Lab, shape: Shape, *, messages: int | None = None) -> None:
    """Empty the lab and flood it with a spam run of `shape`; wait until it is all deferred."""
    lab.reset()
    started = time.perf_counter()
    count = messages or shape.messages
    report = flood(
        lab, count=count, legit=50, bounces=20, inbox=0, connections=8, timeout=1800,
        recipients=(shape.low, shape.high), address_book=shape.address_book, body_bytes=BODY_BYTES,
    )  # fmt: skip
    while queue_counts(lab)[0] > 0:  # still in the active or incoming queue
        time.sleep(1)
    print(f"  built a queue of {report.queued} messages in {time.perf_counter() - started:.0f}s", flush=True)


def queue_counts(lab: Lab) -> tuple[int, int]:
    """Return (messages in the active and incoming queues, all messages)."""
    lines = lab.run(["postqueue", "-j"], timeout=600).stdout.splitlines()
    moving = sum(1 for x in lines if '"queue_name": "active"' in x or '"queue_name": "incoming"' in x)
    return moving, len(lines)


def describe_queue(lab: Lab) -> str:
    """Return the shape of the lab's queue as measured: messages, recipients each, distinct addresses."""
    out = subprocess.run(["postqueue", "-j"], capture_output=True, check=True).stdout
    messages, recipients, distinct, senders = 0, 0, set(), set()
    for raw in out.splitlines():
        message = json.loads(raw)
        messages += 1
        addresses = [r["address"] for r in message["recipients"]]
        recipients += len(addresses)
        distinct.update(addresses)
        senders.add(message["sender"])
    digest = subprocess.run(["sh", "-c", digest_filter()], input=out, capture_output=True, check=True).stdout
    return (
        f"{messages} messages, {recipients} recipients ({recipients / max(messages, 1):.1f} per message), "
        f"{len(distinct)} distinct recipient addresses, {len(senders)} distinct senders, "
        f"listing {len(out) / 1e6:.1f} MB (the diagnosis's digest of it: {len(digest) / 1e6:.1f} MB)"
    )


class SavedQueue:
    """A copy of the lab's deferred queue (message files and their delay logs) and of its Postfix log,
    restored before each destructive round so that every contender acts on the very same queue, IDs
    included. `exists` tells whether an earlier run left one at `path` (kept with --keep)."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.lab = lab
        self.path = path
        self.log = path.with_suffix(".log")

    @property
    def exists(self) -> bool:
        return self.path.exists() and self.log.exists()

    def save(self) -> None:
        self.lab.run(["tar", "-C", str(self.lab.queue_dir), "-cf", str(self.path), "deferred", "defer"], timeout=600)
        shutil.copyfile(self.lab.postfix_log, self.log)

    def restore(self) -> None:
        self.lab.run(["postsuper", "-d", "ALL"], timeout=600)
        self.lab.run(["tar", "-C", str(self.lab.queue_dir), "-xf", str(self.path)], timeout=600)
        with open(self.log, "rb") as saved, open(self.lab.postfix_log, "r+b") as log:
            log.truncate(0)  # postlogd appends (O_APPEND): truncating in place is safe
            shutil.copyfileobj(saved, log)
        Path(self.lab.sasl_access_map).write_text("")  # a containment round blocked the login
        self.lab.run(["postmap", self.lab.sasl_access_map])
        self.lab.run(["sync"], timeout=600)  # the restored files reach the disk now, not during a round
        time.sleep(2)


def build_or_restore(lab: Lab, shape: Shape, saved: SavedQueue) -> None:
    """Build the flood and save it, or restore the one an earlier run kept at the same path."""
    if saved.exists:
        saved.restore()
        print(f"  restored the queue kept at {saved.path}", flush=True)
    else:
        build(lab, shape)
        saved.save()
