"""mailfix: a Slack chat-ops bot that recovers a Postfix server flooded by a compromised account."""

__version__ = "0.1.0"
