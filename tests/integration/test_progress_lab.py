"""Progress of a 25,000-message flood's diagnosis, hold, release and delete, from the lab's real Postfix tools."""

from __future__ import annotations

import time

from bot.core.mailserver import Selection
from bot.mail.postfix import connect
from bot.mail.postsuper import KNOWN_IDS_CHUNK, POSTSUPER_CHUNK
from tests.integration.flood import flood, queue_size
from tests.integration.lab import Lab

FLOOD = 25_000


def test_a_25000_message_release_and_delete_report_rising_counts_ending_at_what_they_did(clean_lab: Lab) -> None:
    began = time.monotonic()
    flood(clean_lab, count=FLOOD, forged_fraction=0.0, legit=0, bounces=0, inbox=0, timeout=600)
    print(f"flood of {FLOOD} queued in {time.monotonic() - began:.1f}s")
    server = connect(clean_lab.server_config())
    read: list[tuple[int, int | None]] = []
    deleted_so_far: list[tuple[int, int | None]] = []
    released_so_far: list[tuple[int, int | None]] = []
    held_so_far: list[tuple[int, int | None]] = []
    try:
        diagnosis = server.diagnose(flood_threshold=500, progress=lambda done, total: read.append((done, total)))
        held = server.hold(
            Selection(sasl_login="victim"), progress=lambda done, total: held_so_far.append((done, total))
        )
        began = time.monotonic()
        released = server.release(
            Selection(sasl_login="victim"), progress=lambda done, total: released_so_far.append((done, total))
        )
        print(f"released {released} of {held} held in {time.monotonic() - began:.1f}s, progress {released_so_far}")
        began = time.monotonic()
        deleted = server.delete(
            Selection(sasl_login="victim"), progress=lambda done, total: deleted_so_far.append((done, total))
        )
        print(f"deleted {deleted} in {time.monotonic() - began:.1f}s, progress {deleted_so_far}")
    finally:
        server.close()
    assert diagnosis.snapshot.total >= FLOOD
    counts = [done for done, _ in read]
    assert len(counts) > 1 and counts == sorted(counts) and counts[-1] == diagnosis.snapshot.total  # read as it came
    assert deleted == FLOOD and queue_size(clean_lab) == 0
    # One report as each postsuper process ends: a chunk of 10,000 IDs each, the last one shorter.
    for so_far, did in ((released_so_far, released), (deleted_so_far, deleted)):
        done = [d for d, _ in so_far]
        assert len(done) == -(-FLOOD // POSTSUPER_CHUNK) and done == sorted(set(done)) and done[-1] == did
    assert held == released == FLOOD
    # The hold feeds the IDs the diagnosis listed, KNOWN_IDS_CHUNK per process: it reports each one's end.
    assert [d for d, _ in held_so_far] == [
        min(n, held) for n in range(KNOWN_IDS_CHUNK, held + KNOWN_IDS_CHUNK, KNOWN_IDS_CHUNK)
    ]
    assert {total for _, total in held_so_far} == {held}
