"""The shape of what Slack posts, checked before Bolt reads it.

Bolt reads the payload's `user`, `actions`, `channel`, `team` and `container` as soon as a request
arrives — before it checks the signature — and fails with a TypeError on a payload of the wrong
shape, which Slack never sends but anyone can. Such a request is answered here in one line: 401 if
its signature is wrong (as Bolt would), else 400; nothing runs.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

OBJECTS = ("user", "channel", "team", "container", "view", "message", "enterprise")


def malformed(body: bytes, content_type: str) -> str | None:
    """Return why a Slack request body has a shape Slack never sends, or None when Bolt may read it."""
    if "application/x-www-form-urlencoded" not in content_type:
        return None  # Events API JSON: mailfix subscribes to no events, and Bolt answers it 404
    try:
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    if "payload" not in form:
        return None  # a slash command: flat form fields, which Bolt reads as strings
    try:
        payload = json.loads(form["payload"][0])
    except ValueError:
        return "the payload is not JSON"
    if not isinstance(payload, Mapping):
        return "the payload is not an object"
    return _payload_problem(payload)


def _payload_problem(payload: Mapping[str, Any]) -> str | None:
    for key in OBJECTS:
        if key in payload and not isinstance(payload[key], Mapping):
            return f"`{key}` is not an object"
    if not isinstance(payload.get("user", {}).get("id"), str):
        return "no `user.id`"  # every interactive payload names who clicked
    if "actions" in payload:
        actions = payload["actions"]
        # Bolt reads actions[0] of a block_actions payload: an empty list would crash it.
        if not isinstance(actions, list) or not actions or not all(isinstance(a, Mapping) for a in actions):
            return "`actions` is not a non-empty list of objects"
        if not all(isinstance(a.get("action_id", ""), str) for a in actions):
            return "an `action_id` is not text"
    return None
