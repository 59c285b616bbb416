"""Feeding queue IDs to `postsuper` on the server: a chunk per process, and the count it reports."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from bot.core.progress import Hook
from bot.mail.commands import reblocked
from bot.mail.executor import RemoteProcess, SSHExecutor

POSTSUPER = "/usr/sbin/postsuper"
POSTSUPER_CHUNK = 10_000  # queue IDs per postsuper process, while a listing still finds them
POSTSUPER_PARALLEL = 2
# IDs known before the first process starts (the hold after a diagnosis) go in chunks this large, one
# process at a time: no listing runs meanwhile, and two processes renaming files in the same queue
# directories slow each other down (68,000 held in 1.3 s by one process, 1.7 s by 10,000-ID pairs).
# Each process still reports its count when it ends (progress), within its own command timeout.
KNOWN_IDS_CHUNK = 50_000
_POSTSUPER_SUMMARY = re.compile(r"postsuper: (Deleted|Placed on hold|Released from hold): (\d+) messages?")


def feed_postsuper(
    executor: SSHExecutor,
    flag: str,
    ids: Iterator[str],
    *,
    before_summary: Callable[[], object] = lambda: None,
    progress: Hook | None = None,
    total: int | None = None,
    chunk: int | None = None,
    parallel: int | None = None,
) -> int:
    """Run `postsuper FLAG -` on `ids` as they come, a chunk per process; return the sum of their counts.

    postsuper reads all its input before it acts: one process per chunk lets it act while the listing
    still runs, and two at a time keep a slow one (deleting is) from holding the rest back. `progress`
    hears the sum so far as each process ends (of `total` IDs, when known before they are listed).
    `chunk` and `parallel` default to POSTSUPER_CHUNK and POSTSUPER_PARALLEL.
    """
    chunk = POSTSUPER_CHUNK if chunk is None else chunk
    parallel = POSTSUPER_PARALLEL if parallel is None else parallel
    running: list[RemoteProcess] = []
    acted = 0

    def finish_oldest() -> None:
        nonlocal acted
        acted += postsuper_count(running.pop(0).wait().stderr_tail)
        if progress is not None:
            progress(acted, total)

    try:
        for lines in _chunks(ids, chunk):  # an empty selection runs nothing
            if len(running) == parallel:
                finish_oldest()
            running.append(executor.start(reblocked([POSTSUPER, flag, "-"], stream="stderr")))
            running[-1].write(lines)
            running[-1].close_stdin()
        before_summary()  # a failed listing must fail the step, not pass for a short one
        while running:
            finish_oldest()
        return acted
    finally:
        for process in running:
            process.close()


def postsuper_count(stderr_tail: str) -> int:
    """Return the count in postsuper's summary line ("postsuper: Deleted: 12 messages"), 0 without one."""
    found = _POSTSUPER_SUMMARY.findall(stderr_tail)
    return int(found[-1][1]) if found else 0


def _chunks(ids: Iterator[str], size: int) -> Iterator[bytes]:
    """Yield `ids` as newline-terminated lines, `size` IDs at a time."""
    chunk: list[str] = []
    for queue_id in ids:
        chunk.append(queue_id)
        if len(chunk) >= size:
            yield ("\n".join(chunk) + "\n").encode()
            chunk.clear()
    if chunk:
        yield ("\n".join(chunk) + "\n").encode()
