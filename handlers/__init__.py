"""Slack listeners: the slash command and the buttons. `register(app)` wires them into a Bolt app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt import App


def register(app: App) -> None:
    """Register every listener on `app`."""
    from handlers import actions, commands

    commands.register(app)
    actions.register(app)
