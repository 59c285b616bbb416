"""Benchmark mailfix's queue operations against the bare tools on the real lab server, on a LAN
(loopback), for spam runs of each shape (see bench/lab.py: 1, 1-3 and 1-50 recipients per message).

Run as root from the repository root:  python -m bench.queue [--shapes 1 1-3 1-50] [--rounds 5] [--keep DIR]

For each shape:
1. Builds the flood through SMTP AUTH (most of it as one login, 30% of that with forged senders,
   1.2 KB bodies, recipients drawn from a book of 1,000,000 addresses) and saves it (with --keep, in
   DIR as queue-SHAPE-MESSAGES.tar; a queue kept there is restored instead), prints its measured shape,
   then times, alternating the contenders, --rounds times each:
     mailfix diagnosis (snapshot + SASL attribution + suspect, new SSH connection included)
     bare `ssh -p PORT root@127.0.0.1 /usr/sbin/postqueue -j > /dev/null`
   and measures the bot's peak memory (VmHWM of a child process doing one diagnosis).
2. Restores the saved queue before every delete round (a delete cannot be repeated), then
   times mailfix's delete by SASL login (listing and selection included) against the bare
   `ssh ... /usr/sbin/postsuper -d -` fed the same queue IDs.
qmgr's retries of the deferred flood are kept out of the measurement: queue_run_delay is set to
one hour before the build (see quiet_queue_manager), so no retry burst lands on either contender.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.lab import (
    SHAPES,
    SavedQueue,
    Shape,
    build_or_restore,
    describe_queue,
    median_line,
    quiet_queue_manager,
    ssh_argv,
    timed,
    verdict,
)
from bot.core.mailserver import Selection
from bot.mail.postfix import PostfixServer
from tests.integration.lab import Lab

THRESHOLD = 500


def diagnose_once(lab: Lab) -> None:
    server = PostfixServer(lab.server_config())
    try:
        diagnosis = server.diagnose(flood_threshold=THRESHOLD)
        assert diagnosis.suspect is not None, "the flood should name a suspect"
    finally:
        server.close()


def bare_listing(lab: Lab) -> None:
    subprocess.run(ssh_argv(lab, "/usr/sbin/postqueue", "-j"), stdout=subprocess.DEVNULL, check=True)


def peak_memory_mb(lab: Lab) -> tuple[float, float]:
    """Return the peak RSS (MB) of a child that diagnoses once, and of one that only imports.

    VmHWM, not ru_maxrss: on Linux a forked child's ru_maxrss starts at its parent's high-water mark.
    """
    config = {"port": lab.ssh_port, "key": str(lab.client_key), "known": str(lab.known_hosts),
              "log": str(lab.postfix_log)}  # fmt: skip
    code = f"""
import sys
from pathlib import Path
from bot.config import ServerConfig
from bot.mail.postfix import PostfixServer
c = {config!r}
server = PostfixServer(ServerConfig(name="lab", host="127.0.0.1", port=c["port"], user="root",
    key_file=Path(c["key"]), known_hosts=Path(c["known"]), mail_domain="lab.test", postfix_log=c["log"]))
if sys.argv[1] == "diagnose":
    server.diagnose(flood_threshold={THRESHOLD})
server.close()
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) / 1024)
"""
    results = []
    for mode in ("diagnose", "import-only"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        results.append(float(out.stdout.strip()))
    return results[0], results[1]


def login_ids(lab: Lab, login: str) -> list[str]:
    """Return the queued IDs the Postfix log attributes to `login` (what the bare delete is fed)."""
    pairs = {}
    for line in lab.postfix_log.read_text(errors="replace").splitlines():
        if f"sasl_username={login}" in line and ": client=" in line:
            pairs[line.split(": client=")[0].rsplit(" ", 1)[-1]] = True
    queued = subprocess.run(["postqueue", "-j"], capture_output=True, check=True).stdout.splitlines()
    return [qid for qid in (json.loads(x)["queue_id"] for x in queued) if qid in pairs]


def bench_shape(lab: Lab, shape: Shape, args: argparse.Namespace, saved: SavedQueue) -> None:
    print(f"shape {shape.name}: {shape.messages} messages, {shape.low}-{shape.high} recipients each", flush=True)
    build_or_restore(lab, shape, saved)
    print(f"  measured: {describe_queue(lab)}", flush=True)
    mine, bare = [], []
    for _ in range(args.rounds):  # alternate, so drift in the machine hits both equally
        mine.append(timed(lambda: diagnose_once(lab)))
        bare.append(timed(lambda: bare_listing(lab)))
    m = median_line("mailfix diagnosis", mine)
    b = median_line("bare postqueue -j", bare)
    print(f"  diagnosis / bare listing: {verdict(m / b, 1.1)}")
    peak, baseline = peak_memory_mb(lab)
    print(f"  bot peak RSS {peak:.0f} MB (interpreter + imports alone: {baseline:.0f} MB; target < 100 MB)")

    if not args.delete_rounds:
        return
    mine, bare = [], []
    for _ in range(args.delete_rounds):
        saved.restore()
        server = PostfixServer(lab.server_config())
        mine.append(timed(lambda s=server: s.delete(Selection(sasl_login="victim"))))
        server.close()
        saved.restore()
        ids = ("\n".join(login_ids(lab, "victim")) + "\n").encode()
        argv = ssh_argv(lab, "/usr/sbin/postsuper", "-d", "-")
        bare.append(timed(lambda a=argv, i=ids: subprocess.run(a, input=i, capture_output=True, check=True)))
    m = median_line("mailfix delete by login", mine)
    b = median_line("bare postsuper -d -", bare)
    print(f"  delete / bare postsuper -d: {verdict(m / b, 1.15)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delete-rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each shape's messages (a quick try)")
    parser.add_argument("--keep", type=Path, help="keep each built queue in this directory, or reuse one kept there")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)

    with Lab() as lab, tempfile.TemporaryDirectory() as scratch:
        quiet_queue_manager(lab)
        for name in args.shapes:
            shape = replace(SHAPES[name], messages=round(SHAPES[name].messages * args.scale))
            saved = SavedQueue(lab, (args.keep or Path(scratch)) / f"queue-{shape.name}-{shape.messages}.tar")
            bench_shape(lab, shape, args, saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
