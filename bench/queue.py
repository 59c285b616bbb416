"""Benchmark mailfix's queue operations against the bare tools on the real lab server.

Run as root from the repository root:  python -m bench.queue [--size 100000] [--delete-size 20000]

1. Builds a queue of --size messages through SMTP AUTH (most of them as one login, 30% of those
   with forged senders), then times, alternating the contenders, --rounds times each:
     mailfix diagnosis (snapshot + SASL attribution + suspect, new SSH connection included)
     bare `ssh -p PORT root@127.0.0.1 /usr/sbin/postqueue -j > /dev/null`
   and measures the bot's peak memory (ru_maxrss of a child process doing one diagnosis).
2. Rebuilds a queue of --delete-size before every delete round (a delete cannot be repeated) and
   times mailfix's delete by SASL login (listing and selection included) against the bare
   `ssh ... /usr/sbin/postsuper -d -` fed the same queue IDs. Medians are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from bot.core.mailserver import Selection
from bot.mail.postfix import PostfixServer
from tests.integration.flood import flood
from tests.integration.lab import Lab

THRESHOLD = 500


def ssh_argv(lab: Lab, *command: str) -> list[str]:
    """Return the argv of a bare OpenSSH call to the lab as root."""
    return [
        "ssh", "-p", str(lab.ssh_port), "-i", str(lab.client_key), "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={lab.known_hosts}",
        f"root@{lab.host}", *command,
    ]  # fmt: skip


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


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
from bot.core.mailserver import Selection
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


def quiet_queue_manager(lab: Lab) -> None:
    """Keep Postfix from retrying the deferred flood while we measure.

    Otherwise, 5 minutes after the build, qmgr moves all 100,000 messages back to the active queue
    and logs a retry for each: a burst of CPU (and 25 MB of log) that lands on whichever contender
    runs then. Both contenders see the same quiet server.
    """
    lab.run(["postconf", "-e", "queue_run_delay=1h", "minimal_backoff_time=1h", "maximal_backoff_time=4h"])
    lab.run(["postfix", "reload"])


def build(lab: Lab, size: int) -> None:
    lab.reset()
    started = time.perf_counter()
    report = flood(lab, count=size, legit=50, bounces=20, inbox=0, connections=8, timeout=900)
    print(f"  built a queue of {report.queued} messages in {time.perf_counter() - started:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delete-size", type=int, default=20_000)
    parser.add_argument("--delete-rounds", type=int, default=3)
    args = parser.parse_args(argv)

    with Lab() as lab:
        quiet_queue_manager(lab)
        print(f"diagnosis on a {args.size}-message queue", flush=True)
        build(lab, args.size)
        mine, bare = [], []
        for _ in range(args.rounds):  # alternate, so drift in the machine hits both equally
            mine.append(timed(lambda: diagnose_once(lab)))
            bare.append(timed(lambda: bare_listing(lab)))
        m, b = statistics.median(mine), statistics.median(bare)
        print(f"  mailfix diagnosis  median {m:.2f}s  rounds {' '.join(f'{x:.2f}' for x in mine)}")
        print(f"  bare postqueue -j  median {b:.2f}s  rounds {' '.join(f'{x:.2f}' for x in bare)}")
        print(f"  ratio {m / b:.2f}x (target <= 1.2x)")
        peak, baseline = peak_memory_mb(lab)
        print(f"  bot peak RSS {peak:.0f} MB (interpreter + imports alone: {baseline:.0f} MB; target < 100 MB)")

        print(f"delete by SASL login on a {args.delete_size}-message flood, rebuilt before each round", flush=True)
        mine, bare = [], []
        for _ in range(args.delete_rounds):
            build(lab, args.delete_size)
            server = PostfixServer(lab.server_config())
            mine.append(timed(lambda s=server: s.delete(Selection(sasl_login="victim"))))
            server.close()
            build(lab, args.delete_size)
            ids = ("\n".join(login_ids(lab, "victim")) + "\n").encode()
            argv = ssh_argv(lab, "/usr/sbin/postsuper", "-d", "-")
            bare.append(timed(lambda a=argv, i=ids: subprocess.run(a, input=i, capture_output=True, check=True)))
        m, b = statistics.median(mine), statistics.median(bare)
        print(f"  mailfix delete     median {m:.2f}s  rounds {' '.join(f'{x:.2f}' for x in mine)}")
        print(f"  bare postsuper -d  median {b:.2f}s  rounds {' '.join(f'{x:.2f}' for x in bare)}")
        print(f"  ratio {m / b:.2f}x (target <= 1.15x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
