"""A long step's progress shows in place in the incident message, a few seconds apart, then gives way to the result."""

from __future__ import annotations

import re
import time

from handlers.notifier import PROGRESS_SECONDS
from tests.slack.conftest import CHANNEL, start_bot, stop_bot
from tests.slack.test_approvals import DIRECTOR, approve

PROGRESS = re.compile(r"(\w[\w ]*) \(([^)]*)\)… ([\d,]+)(?: / ([\d,]+))?")


def progress_line(blocks: list[dict]) -> str | None:
    """Return the text of the message's progress line, None without one."""
    for block in blocks:
        if block.get("block_id") == "incident_progress":
            return block["elements"][0]["text"]
    return None


def test_a_slow_delete_shows_rising_counts_in_the_incident_message_paced_then_the_result(tmp_path, slack):
    # 0.9 s for every 25 messages deleted: the 250 held from the address take about 10 s.
    bot = start_bot(tmp_path, slack, FAKE_MAILSERVER_PROGRESS_PAUSE="0.9", FAKE_MAILSERVER_SLOWED="delete")
    try:
        incident = bot.start_incident()
        seen: list[tuple[float, str]] = []  # (when first seen, progress line) of each chat.update since approval
        counted = len(slack.calls_to("chat.update"))
        approve(bot, DIRECTOR)
        deadline = time.monotonic() + 60
        while bot.incident().state != "monitoring":
            updates = slack.calls_to("chat.update")
            for call in updates[counted:]:
                line = progress_line(call.params.get("blocks") or [])
                if line is not None and call.params["ts"] == incident.slack_ts:
                    seen.append((time.monotonic(), line))
            counted = len(updates)
            assert time.monotonic() < deadline, f"the cleanup did not end; log:\n{bot.log()[-3000:]}"
            time.sleep(0.02)
    finally:
        stop_bot(bot)
    deleting = [(at, PROGRESS.search(line)) for at, line in seen if "deleting (from victim@example.org)" in line]
    assert deleting, f"no progress of the delete was shown: {[line for _, line in seen]}"
    counts = [int(m.group(3).replace(",", "")) for _, m in deleting if m]
    assert len(counts) >= 2 and counts == sorted(counts) and 0 < counts[0] < 250  # rising while the delete ran
    assert {m.group(4) for _, m in deleting if m} == {"250"}
    times = [at for at, _ in seen]
    assert all(b - a >= PROGRESS_SECONDS - 0.1 for a, b in zip(times, times[1:], strict=False))  # paced per incident
    final = slack.message(CHANNEL, str(incident.slack_ts))
    assert progress_line(final.get("blocks", [])) is None  # replaced by the outcome once the steps ended
    thread = " ".join(m.get("text", "") for m in slack.thread(CHANNEL, str(incident.slack_ts)))
    assert "Deleted 250 queued messages (from victim@example.org)" in thread
