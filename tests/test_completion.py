"""Shell completion (argcomplete): the shell asks `mailfix` itself, which answers from its own parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def complete(tmp_path: Path, line: str) -> list[str]:
    """What `mailfix` offers for `line` (the cursor at its end), asked the way bash's hook asks."""
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    done = subprocess.run([sys.executable, "-m", "bot"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(word.strip() for word in out.read_text().split("\n"))  # a sole match ends in a space


def test_verbs_and_options_complete_from_the_parser_slack_verbs_included(tmp_path):
    assert complete(tmp_path, "mailfix sta") == ["start", "status"]
    assert complete(tmp_path, "mailfix so") == ["socket"]  # added by the Slack front-end's entry point
    assert "--json" in complete(tmp_path, "mailfix diagnose --")
    assert complete(tmp_path, "mailfix check-config --mode ") == ["http", "socket", "terminal"]
