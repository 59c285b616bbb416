"""Against the lab: a gzip'ed diagnosis equals a plain one, a slow link is seen as slow, and the hold
that follows a diagnosis uses the IDs it listed (the queue is listed once) and holds exactly the flood."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.link import ThrottledLink
from bot.core.diagnosis import to_json
from bot.core.mailserver import Selection
from bot.mail import digest, postfix, postsuper
from bot.mail.commands import command_name
from bot.mail.postfix import PostfixServer
from tests.integration.flood import flood, queue_entries
from tests.integration.lab import Lab

pytestmark = pytest.mark.integration


def started_commands(server: PostfixServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every command `server` starts from now on."""
    names: list[str] = []
    start = server.executor.start

    def spy(argv, **kwargs):  # type: ignore[no-untyped-def]
        names.append(command_name(argv))
        return start(argv, **kwargs)

    monkeypatch.setattr(server.executor, "start", spy)
    return names


def wait_until_settled(lab: Lab, timeout: float = 60) -> None:
    """Wait until nothing is in the active or incoming queue and two listings a second apart agree."""
    deadline = time.monotonic() + timeout
    before = None
    while time.monotonic() < deadline:
        now = sorted((m["queue_id"], m["queue_name"]) for m in queue_entries(lab))
        if now == before and all(name == "deferred" for _, name in now):
            return
        before = now
        time.sleep(1)
    raise TimeoutError("the lab's queue kept changing")


def test_a_compressed_diagnosis_equals_a_plain_one(clean_lab: Lab) -> None:
    """Spam to 1-50 recipients each: gzip'ed (and untrimmed) or trimmed and plain, the same diagnosis."""
    flood(clean_lab, count=400, recipients=(1, 50), body_bytes=1200, inbox=0)
    wait_until_settled(clean_lab)  # both diagnoses must see the same queue
    found = {}
    for setting in ("always", "never"):
        server = PostfixServer(clean_lab.server_config(compression=setting))
        try:
            found[setting] = to_json(server.diagnose(flood_threshold=100))
            del found[setting]["queue"]["oldest_age_seconds"]  # a second may pass between the two
            assert server.executor.compresses() is (setting == "always")
        finally:
            server.close()
    assert found["always"] == found["never"]
    assert found["always"]["suspect"]["login"] == "victim" and found["always"]["suspect"]["queued_by_login"] >= 400


def test_the_diagnosis_reads_the_servers_digest_and_finds_what_the_whole_listing_shows(
    clean_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's perl digests the listing; without perl (the filter's other branch) the diagnosis is the same."""
    flood(clean_lab, count=300, recipients=(1, 50), body_bytes=1200, inbox=0)
    wait_until_settled(clean_lab)
    readers: list[digest.DigestReader] = []

    class Recorded(digest.DigestReader):
        def finish(self) -> None:
            readers.append(self)
            super().finish()

    monkeypatch.setattr(postfix, "DigestReader", Recorded)
    found = []
    without_perl = digest.digest_filter().replace("command -v perl", "command -v no-such-perl")
    for through in (digest.digest_filter(), without_perl):
        monkeypatch.setattr(postfix, "digest_filter", lambda through=through: through)
        server = PostfixServer(clean_lab.server_config())
        try:
            found.append(to_json(server.diagnose(flood_threshold=100)))
            del found[-1]["queue"]["oldest_age_seconds"]
        finally:
            server.close()
    assert [reader.is_digest for reader in readers] == [True, False]
    assert found[0] == found[1]
    assert found[0]["suspect"]["login"] == "victim" and found[0]["queue"]["total"] >= 300


def test_the_link_is_encrypted_with_aes_gcm(clean_lab: Lab) -> None:
    """AES-GCM is preferred (no per-packet MAC for paramiko to check in Python); OpenSSH agrees to it."""
    server = PostfixServer(clean_lab.server_config())
    try:
        server.executor.compresses()  # connects
        transport = server.executor._transport()
        assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
    finally:
        server.close()


def test_auto_compression_follows_the_link(clean_lab: Lab) -> None:
    """Loopback is fast: plain. Through a 40 ms link: gzip, with the default setting."""
    server = PostfixServer(clean_lab.server_config())
    try:
        assert server.executor.compresses() is False
    finally:
        server.close()
    with ThrottledLink(target_port=clean_lab.ssh_port, mbit=20, rtt_ms=40) as link:
        known = clean_lab.dir / "known_hosts_link"
        known.write_text(Path(clean_lab.known_hosts).read_text().replace(f"]:{clean_lab.ssh_port} ", f"]:{link.port} "))
        server = PostfixServer(clean_lab.server_config(port=link.port, known_hosts=known))
        try:
            assert server.executor.compresses() is True
            assert server.executor.round_trip >= 0.04
        finally:
            server.close()


def test_the_hold_after_a_diagnosis_lists_nothing_and_holds_exactly_the_flood(
    clean_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = flood(clean_lab, count=600, forged_fraction=0.3, legit=20, bounces=10, inbox=0)
    server = PostfixServer(clean_lab.server_config())
    try:
        server.diagnose(flood_threshold=100)
        commands = started_commands(server, monkeypatch)
        held = server.hold(Selection(sender="victim@lab.test")) + server.hold(Selection(sasl_login="victim"))
    finally:
        server.close()
    assert commands == [postsuper.POSTSUPER, postsuper.POSTSUPER]  # no listing, no log read
    held_ids = {m["queue_id"] for m in queue_entries(clean_lab) if m["queue_name"] == "hold"}
    assert held == len(held_ids) == report.from_login + report.forged  # the login's, forged senders too
    others = [m for m in queue_entries(clean_lab) if m["queue_name"] != "hold"]
    assert len(others) == report.legit + report.bounces  # colleagues' mail and bounces to victim not held


def test_a_hold_of_listed_ids_runs_its_postsuper_processes_one_at_a_time(
    clean_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No listing runs meanwhile, so the chunks go one after the other (two would contend for the queue
    directories): each process has ended before the next starts, and together they hold the whole flood."""
    report = flood(clean_lab, count=500, forged_fraction=0.3, legit=10, bounces=0, inbox=0)
    monkeypatch.setattr(postfix, "KNOWN_IDS_CHUNK", 64)
    server = PostfixServer(clean_lab.server_config())
    running: list[int] = [0]
    overlapping: list[int] = []
    start = server.executor.start

    def spy(argv, **kwargs):  # type: ignore[no-untyped-def]
        process = start(argv, **kwargs)
        overlapping.append(running[0])  # processes started and not yet waited for
        running[0] += 1
        wait = process.wait

        def waited(**options):  # type: ignore[no-untyped-def]
            result = wait(**options)
            running[0] -= 1
            return result

        process.wait = waited  # type: ignore[method-assign]
        return process

    try:
        server.diagnose(flood_threshold=100)
        monkeypatch.setattr(server.executor, "start", spy)
        held = server.hold(Selection(sasl_login="victim"))
    finally:
        server.close()
    assert held == report.from_login + report.forged
    assert len(overlapping) == -(-held // 64) and set(overlapping) == {0}
    assert sum(1 for m in queue_entries(clean_lab) if m["queue_name"] == "hold") == held


def test_listed_ids_expire_and_the_hold_lists_again(clean_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """IDs listed more than a minute ago are not trusted (Postfix may reuse an ID): the hold lists the queue."""
    report = flood(clean_lab, count=300, forged_fraction=0.0, legit=5, bounces=0, inbox=0)
    server = PostfixServer(clean_lab.server_config())
    try:
        server.diagnose(flood_threshold=100)
        assert server._listed is not None
        server._listed.listed_at -= postfix.LISTED_IDS_SECONDS + 1
        commands = started_commands(server, monkeypatch)
        assert server.hold(Selection(sender="victim@lab.test")) == report.from_login
    finally:
        server.close()
    assert postfix.POSTQUEUE in commands and postsuper.POSTSUPER in commands


def test_a_delete_in_many_postsuper_chunks_counts_every_message(
    clean_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """postsuper reads all its input before acting, so IDs go a chunk per process, two at a time:
    the counts of every process add up, and nothing of the login's is left."""
    report = flood(clean_lab, count=700, forged_fraction=0.3, legit=10, bounces=0, inbox=0)
    monkeypatch.setattr(postsuper, "POSTSUPER_CHUNK", 64)
    server = PostfixServer(clean_lab.server_config())
    try:
        commands = started_commands(server, monkeypatch)
        assert server.delete(Selection(sasl_login="victim")) == report.from_login + report.forged
    finally:
        server.close()
    assert commands.count(postsuper.POSTSUPER) == -(-700 // 64)
    assert len(queue_entries(clean_lab)) == report.legit
