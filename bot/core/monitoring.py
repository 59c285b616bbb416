"""What "mail is normal again" means, decided from one health check and the checks before it."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import Config
from bot.core.mailserver import NOT_ACCOUNTS, Health, Ranked
from storage.models import Check, Incident

TREND_CHECKS = 3  # the queue must not have grown over this many checks
SPARKS = "▁▂▃▄▅▆▇█"


def assess(health: Health, checks: Sequence[Check], monitor_round: int, config: Config) -> tuple[bool, list[str]]:
    """Return whether the server is normal, and the reasons it is not."""
    reasons = []
    if not health.postfix_running:
        reasons.append("Postfix is not running")
    if health.queue_size >= config.normal_queue_size:
        reasons.append(f"queue {health.queue_size} ≥ {config.normal_queue_size}")
    for label, ranked in (("sender", health.top_sender), ("login", health.top_login)):
        if ranked is not None and ranked.count >= config.flood_threshold and ranked.name.lower() not in NOT_ACCOUNTS:
            reasons.append(
                f"{label} {ranked.name} has {ranked.count} queued (flood threshold {config.flood_threshold})"
            )
    recent = [c.queue_size for c in checks if c.monitor_round == monitor_round and c.queue_size >= 0]
    recent = recent[-(TREND_CHECKS - 1) :] + [health.queue_size]
    if len(recent) == TREND_CHECKS and all(b > a for a, b in zip(recent, recent[1:], strict=False)):
        reasons.append(f"queue growing: {' → '.join(map(str, recent))}")
    return not reasons, reasons


def new_flood(health: Health, incident: Incident, flood_threshold: int) -> Ranked | None:
    """Return another SASL login over the threshold: a flood mailfix can offer to contain.

    Only a login: a sender is what spam forges, so a flood of one sender address names nobody (it still
    keeps the server "not normal", and the check says so)."""
    own = {incident.suspect_address, incident.suspect_login}
    ranked = health.top_login
    if ranked is not None and ranked.count >= flood_threshold and ranked.name.lower() not in own | NOT_ACCOUNTS:
        return ranked
    return None


def describe(normal: bool, reasons: Sequence[str], queue_size: int) -> str:
    """Return the one-line log of a check."""
    if normal:
        return f":white_check_mark: check: normal (queue {queue_size})"
    return f":warning: check: not normal: {'; '.join(reasons)}"


def sparkline(values: Sequence[int]) -> str:
    """Return the queue trend as a compact sparkline, e.g. ▇▆▄▂▁."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1
    return "".join(SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)
