"""Benchmark mailfix's diagnosis against the bare listing over a slow link (a WAN to a remote office).

Run as root from the repository root:  python -m bench.wan [--messages 30000] [--shape 1-3] [--rounds 3]

Builds a spam run of the given shape in the lab, then puts a throttled link (bench/link.py: 20 Mbit/s
each way, 40 ms round trip) between the contenders and the lab's sshd, and times, alternating:
    mailfix diagnosis with the shipped defaults (compression = "auto": the link decides)
    bare `ssh ... /usr/sbin/postqueue -j > /dev/null`
    bare `ssh -C ... /usr/sbin/postqueue -j > /dev/null` (what an admin types on a slow link)
Targets: at most 0.5x the bare listing and at most 1.0x the `ssh -C` one.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import replace
from pathlib import Path

from bench.lab import SHAPES, build, describe_queue, median_line, quiet_queue_manager, ssh_argv, timed, verdict
from bench.link import ThrottledLink
from bot.mail.postfix import PostfixServer
from tests.integration.lab import Lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--shape", choices=list(SHAPES), default="1-3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mbit", type=float, default=20.0)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    args = parser.parse_args(argv)

    with Lab() as lab:
        quiet_queue_manager(lab)
        shape = replace(SHAPES[args.shape], messages=args.messages)
        print(f"diagnosis over a {args.mbit:g} Mbit/s, {args.rtt_ms:g} ms link; shape {shape.name}", flush=True)
        build(lab, shape)
        print(f"  measured: {describe_queue(lab)}", flush=True)
        with ThrottledLink(target_port=lab.ssh_port, mbit=args.mbit, rtt_ms=args.rtt_ms) as link:
            known = lab.dir / "known_hosts_link"
            known.write_text(Path(lab.known_hosts).read_text().replace(f"]:{lab.ssh_port} ", f"]:{link.port} "))
            config = lab.server_config(port=link.port, known_hosts=known)  # the shipped default compression

            def diagnose() -> None:
                server = PostfixServer(config)
                try:
                    assert server.diagnose(flood_threshold=500).suspect is not None
                    assert server.executor.compresses(), "a 40 ms link must be seen as slow"
                finally:
                    server.close()

            def bare(*options: str) -> None:
                argv = ssh_argv(lab, "/usr/sbin/postqueue", "-j", port=link.port, known_hosts=known)
                subprocess.run([argv[0], *options, *argv[1:]], stdout=subprocess.DEVNULL, check=True)

            mine, plain, compressed = [], [], []
            for _ in range(args.rounds):
                mine.append(timed(diagnose))
                plain.append(timed(bare))
                compressed.append(timed(lambda: bare("-C")))
        m = median_line("mailfix diagnosis (defaults)", mine)
        p = median_line("bare ssh postqueue -j", plain)
        c = median_line("bare ssh -C postqueue -j", compressed)
        print(f"  diagnosis / bare listing:      {verdict(m / p, 0.5)}")
        print(f"  diagnosis / bare ssh -C:       {verdict(m / c, 1.0)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
