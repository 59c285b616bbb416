"""What travels between the server and mailfix: the listing trimmed on the server, gzip when the link is
slow (and plain text where the server has no gzip), inflated on arrival."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.errors import HostUnreachable
from bot.mail import executor
from bot.mail.commands import TRIM_LISTING, reblocked
from bot.mail.executor import RemoteProcess
from bot.mail.queue import QueueAggregator

DOMAIN = "lab.test"


def listing_line(queue_id: str, sender: str, recipients: list[tuple[str, str]]) -> bytes:
    """One `postqueue -j` line as Postfix writes it (", " and ": " separators)."""
    message = {
        "queue_name": "deferred",
        "queue_id": queue_id,
        "arrival_time": 1_700_000_000,
        "message_size": 900,
        "forced_expire": False,
        "sender": sender,
        "recipients": [{"address": a, "delay_reason": r} for a, r in recipients],
    }
    return json.dumps(message).encode()


# Text a remote server or a spammer controls, in the delay reasons and the addresses.
CRAFTED = [
    listing_line(
        "A1", "victim@lab.test", [("x@example.com", 'host said: 550 "no \\"such\\" user", "delay_reason": "')]
    ),
    listing_line("A2", 'odd", "delay_reason": "@lab.test', [("y@example.com", "connect to mx: refused\\")]),
    listing_line("A3", "victim@lab.test", [("z@example.com", "señal perdida ✉ \u202e"), ("w@example.com", "")]),
    listing_line("A4", "victim@lab.test", [('"delay_reason": "x"@example.com', 'a\\\\", "recipients": []')]),
]


def run_filter(script: str, data: bytes, env: dict[str, str] | None = None) -> bytes:
    return subprocess.run(["sh", "-c", script], input=data, capture_output=True, check=True, env=env).stdout


def without_reasons(line: bytes) -> dict:
    message = json.loads(line)
    for recipient in message["recipients"]:
        recipient.pop("delay_reason")
    return message


def test_the_trimmed_listing_keeps_every_member_the_diagnosis_reads() -> None:
    """perl drops each delay_reason, escaped quotes and look-alike text included, and nothing else."""
    trimmed = run_filter(TRIM_LISTING, b"\n".join(CRAFTED) + b"\n").splitlines()
    assert len(trimmed) == len(CRAFTED)
    for original, line in zip(CRAFTED, trimmed, strict=True):
        assert json.loads(line) == without_reasons(original)
    # The aggregates are the same with and without the reasons.
    whole, cut = (QueueAggregator(login_of={}, mail_domain=DOMAIN, now=0) for _ in range(2))
    whole.add_lines(CRAFTED)
    cut.add_lines(trimmed)
    assert whole.snapshot() == cut.snapshot() and whole.malformed == 0


def test_without_perl_the_listing_travels_whole(tmp_path: Path) -> None:
    """A server without perl sends the listing untouched (the diagnosis needs nothing from perl)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    data = b"\n".join(CRAFTED) + b"\n"
    assert run_filter(TRIM_LISTING, data, env={"PATH": str(bin_dir)}) == data


def test_the_gzip_stage_falls_back_to_plain_blocks_without_gzip(tmp_path: Path) -> None:
    """With gzip the output is compressed; on a server without gzip it comes plain (dd's blocks)."""
    data = b"\n".join(CRAFTED * 500) + b"\n"
    argv = reblocked(["cat", "--", str(tmp_path / "in")], gzip=True)
    (tmp_path / "in").write_bytes(data)
    assert gzip.decompress(subprocess.run(argv, capture_output=True, check=True).stdout) == data
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "dd"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    plain = subprocess.run(argv, capture_output=True, check=True, env={"PATH": str(bin_dir)}).stdout
    assert plain == data


class FakeChannel:
    """Just enough of a paramiko channel for RemoteProcess: stdout from a list of chunks, no stderr."""

    def __init__(self, chunks: list[bytes], exit_status: int = 0) -> None:
        self._chunks = list(chunks)
        self.closed = False
        self.status_event = threading.Event()
        self.status_event.set()
        self.exit_status = exit_status

    def recv(self, size: int) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def recv_stderr(self, size: int) -> bytes:
        return b""

    def get_transport(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def read(chunks: list[bytes], *, gunzip: bool) -> bytes:
    process = RemoteProcess("h", ["postqueue", "-j"], FakeChannel(chunks), deadline=1e12, gunzip=gunzip)  # type: ignore[arg-type]
    return b"".join(process.chunks())


@pytest.mark.parametrize("cut", [1, 2, 7, 4096])
def test_gzip_output_is_inflated_whatever_the_chunking(cut: int) -> None:
    """The magic bytes may arrive split; two gzip members in a row are both read."""
    data = b"\n".join(CRAFTED * 300) + b"\n"
    packed = gzip.compress(data[:5000], compresslevel=1) + gzip.compress(data[5000:], compresslevel=1)
    chunks = [packed[i : i + cut] for i in range(0, len(packed), cut)]
    assert read(chunks, gunzip=True) == data


def test_plain_output_passes_when_gunzip_was_asked() -> None:
    """The server had no gzip: what starts without gzip's magic is taken as plain text."""
    data = b"\n".join(CRAFTED) + b"\n"
    assert read([data[:1], data[1:]], gunzip=True) == data
    assert read([], gunzip=True) == b""


def test_a_compressed_output_cut_short_is_an_error_not_a_short_listing() -> None:
    """A listing that stops half way must not pass for a smaller queue."""
    packed = gzip.compress(b"\n".join(CRAFTED * 300), compresslevel=1)
    with pytest.raises(HostUnreachable, match="cut short"):
        read([packed[: len(packed) // 2]], gunzip=True)


class KeepaliveAnswers:
    """A transport whose keepalives are answered after the given delays, one per request."""

    def __init__(self, delays: list[float], clock: list[float]) -> None:
        self.delays, self.clock, self.asked = delays, clock, 0

    def global_request(self, kind: str, wait: bool) -> None:
        assert (kind, wait) == ("keepalive@openssh.com", True)
        self.clock[0] += self.delays[self.asked]
        self.asked += 1


@pytest.mark.parametrize(
    ("delays", "asked", "measured"),
    [
        ([0.0002, 0.0001, 0.0001], 1, 0.0002),  # a LAN that answers at once: one keepalive
        ([0.044, 0.0003, 0.0003], 2, 0.0003),  # loopback: the first answer after the login is slow
        ([0.085, 0.040, 0.040], 2, 0.040),  # a 40 ms WAN shows at the second answer
        ([0.010, 0.003, 0.003], 2, 0.003),  # a busy LAN host, late once: asked again
        ([0.010, 0.012, 0.009], 3, 0.009),  # in between every time: the shortest of three
    ],
)
def test_the_link_is_measured_with_as_few_keepalives_as_decide_it(
    monkeypatch: pytest.MonkeyPatch, delays: list[float], asked: int, measured: float
) -> None:
    clock = [100.0]
    monkeypatch.setattr(executor, "time", SimpleNamespace(monotonic=lambda: clock[0]))  # executor's clock only
    transport = KeepaliveAnswers(delays, clock)
    assert executor._round_trip(transport) == pytest.approx(measured)  # type: ignore[arg-type]
    assert transport.asked == asked
