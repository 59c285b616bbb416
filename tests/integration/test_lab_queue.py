"""The lab leaves the machine's Postfix queue as it found it: its tests' mail goes, the machine's stays."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.integration.flood import flood, queue_entries
from tests.integration.lab import QUEUE_ASIDE, Lab, queue_files, sh

MESSAGE = "From: root@localhost\nTo: root@localhost\nSubject: the machine's own mail\n\nqueued before the lab\n"


def snapshot(queue_dir: Path) -> dict[Path, tuple[str, int, int, int]]:
    """Every message file and per-message log in the queue: its content's hash, inode, owner and mode."""
    result = {}
    for relative in queue_files(queue_dir):
        path = queue_dir / relative
        info = path.stat()
        result[relative] = (hashlib.sha256(path.read_bytes()).hexdigest(), info.st_ino, info.st_uid, info.st_mode)
    return result


def test_closing_the_lab_deletes_its_mail_and_keeps_the_machines(lab: Lab) -> None:
    """Mail queued before the lab survives it untouched; every message the lab's tests queued is gone."""
    queue_dir, found = lab.queue_dir, lab.queued_before
    lab.close()  # the session's lab: Postfix is stopped, the queue is the machine's again
    try:
        assert queue_files(queue_dir) == found, "the lab's earlier tests left mail in the queue"
        # The machine's own mail, submitted while Postfix is down: it waits in maildrop.
        sh("/usr/sbin/sendmail", "-f", "root@localhost", "root@localhost", input=MESSAGE)
        before = snapshot(queue_dir)
        assert [path.parts[0] for path in set(before) - found] == ["maildrop"]

        lab.start()
        assert queue_entries(lab) == []  # the lab's tests never see the machine's mail...
        lab.reset()
        assert snapshot(queue_dir) == {}  # ...and reset deletes only the lab's
        report = flood(lab, count=30, legit=3, bounces=2, inbox=0)
        lab.run(["postsuper", "-h", "ALL", "deferred"])  # some held, some deferred or active
        assert len(queue_entries(lab)) == report.queued == 35
        lab.close()

        assert snapshot(queue_dir) == before
        assert not (queue_dir / QUEUE_ASIDE).exists()
    finally:
        lab.close()  # (again: safe) then remove the mail this test submitted as the machine's
        for relative in queue_files(queue_dir) - found:
            os.unlink(queue_dir / relative)
        lab.start()  # the rest of the session uses the lab
