"""A text dump of one incident as Slack shows it (channel message and thread), read from the fake Slack.

`python3 -m tests.slack.incident_dump OUT.txt [LANGUAGE]` runs a whole incident through a real `mailfix serve` on the
fake mail server (start, approve, monitoring until resolved) and writes what the channel saw.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.clitools import write_config
from tests.slack.conftest import BOT_TOKEN, CHANNEL, VICTIM, start_bot, stop_bot
from tests.slack.fake_slack import FakeSlack, FakeSlackServer


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    """Return the blocks of a message as indented lines: texts, fields, buttons and their confirm dialogs."""
    lines = []
    for block in blocks:
        texts = [block.get("text") or {}] + block.get("fields", []) + block.get("elements", [])
        for item in texts:
            if item.get("type") in ("mrkdwn", "plain_text"):
                lines.append(item["text"])
            elif item.get("type") == "button":
                confirm = item.get("confirm")
                asked = f" — asks “{confirm['title']['text']}: {confirm['text']['text']}”" if confirm else ""
                lines.append(f"[{item['text']['text']}]{asked}")
            elif item.get("type") == "static_select":
                lines.append(
                    f"[{item['placeholder']['text']}: {', '.join(o['text']['text'] for o in item['options'])}]"
                )
    return "\n".join("    " + line.replace("\n", "\n    ") for line in lines)


def message_text(fake: FakeSlack, channel: str, ts: str) -> str:
    """Return the message at (channel, ts): its fallback text and its blocks."""
    message = fake.message(channel, ts)
    return message.get("text", "") + "\n" + blocks_text(message.get("blocks", []))


def dump(fake: FakeSlack, channel: str, ts: str, awaiting: str = "") -> str:
    """Return the incident message at (channel, ts), as it was awaiting approval and now, and its thread."""
    out = ["== channel message, awaiting approval ==", awaiting, "", "== channel message, at the end =="]
    out += [message_text(fake, channel, ts), "", "== thread =="]
    for call in fake.calls_to("chat.postMessage"):
        if call.params.get("thread_ts") == ts:
            out.append("- " + call.params.get("text", "").replace("\n", "\n  "))
    for call in fake.calls_to("files.completeUploadExternal"):
        out.append(f"- (file) {json.dumps(call.params.get('files'))} {call.params.get('initial_comment', '')}")
    return "\n".join(out) + "\n"


def main(out: Path, language: str = "en") -> None:
    fake = FakeSlack(token=BOT_TOKEN, users={"victim@example.org": VICTIM})
    with FakeSlackServer(fake) as slack, tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cfg").mkdir()
        extra = f'language = "{language}"'
        config = write_config(Path(tmp) / "cfg", extra=extra, monitor_minutes=0.1)  # a longer round: more checks
        bot = start_bot(Path(tmp), slack, MAILFIX_CONFIG=str(config))
        try:
            bot.start_incident()
            bot.button_value("approve_cleanup")  # the message shows the buttons
            awaiting = message_text(slack, CHANNEL, str(bot.incident().slack_ts))
            bot.click_button("approve_cleanup", "UDIRECTOR1")
            bot.wait_state("resolved", timeout=60)
            time.sleep(1.0)  # the last updates of the message
            bot.sender.command("report 1", "UOPERATOR1")
            slack.wait_for(lambda f: f.calls_to("files.completeUploadExternal") or f.calls_to("respond"), 20)
            time.sleep(0.5)
            incident = bot.incident()
            out.write_text(dump(slack, incident.slack_channel or CHANNEL, str(incident.slack_ts), awaiting))
        finally:
            stop_bot(bot)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
