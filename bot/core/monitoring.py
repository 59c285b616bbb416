"""What "mail is normal again" means, decided from one health check and the checks before it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.config import Config
from bot.core.mailserver import NOT_ACCOUNTS, Health, Ranked
from bot.i18n import _
from storage.models import Check, Incident

TREND_CHECKS = 3  # the queue must not have grown over this many checks
SPARKS = "▁▂▃▄▅▆▇█"
_FIGURES = re.compile(r"\b\d[\d,.]*")  # standalone figures: "promo123" keeps its digits


def assess(health: Health, checks: Sequence[Check], monitor_round: int, config: Config) -> tuple[bool, list[str]]:
    """Return whether the server is normal, and the reasons it is not."""
    reasons = []
    if not health.postfix_running:
        reasons.append(_("Postfix is not running"))
    if health.queue_size >= config.normal_queue_size:
        reasons.append(_("queue {size} ≥ {limit}").format(size=health.queue_size, limit=config.normal_queue_size))
    floods = (
        (_("sender {name} has {count} queued (flood threshold {threshold})"), health.top_sender),
        (_("login {name} has {count} queued (flood threshold {threshold})"), health.top_login),
    )
    for text, ranked in floods:
        if ranked is not None and ranked.count >= config.flood_threshold and ranked.name.lower() not in NOT_ACCOUNTS:
            reasons.append(text.format(name=ranked.name, count=ranked.count, threshold=config.flood_threshold))
    recent = [c.queue_size for c in checks if c.monitor_round == monitor_round and c.queue_size >= 0]
    recent = recent[-(TREND_CHECKS - 1) :] + [health.queue_size]
    if len(recent) == TREND_CHECKS and all(b > a for a, b in zip(recent, recent[1:], strict=False)):
        reasons.append(_("queue growing: {sizes}").format(sizes=" → ".join(map(str, recent))))
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


def restart_helps(*, postfix_running: bool, queue_size: int, flood: Ranked | None, config: Config) -> bool:
    """Return whether a Postfix restart (or a reboot) could bring mail back to normal.

    It can when Postfix is down or the queue does not drain. Another account's flood is neither: it
    keeps coming after a restart, and only containing that account stops it; so with such a flood the
    queue counts as not draining only if what is left of it without the flood is still too large."""
    if flood is None or not postfix_running:
        return True
    return queue_size - flood.count >= config.normal_queue_size


def describe(normal: bool, reasons: Sequence[str], queue_size: int) -> str:
    """Return the one-line log of a check."""
    if normal:
        return _(":white_check_mark: check: normal (queue {size})").format(size=queue_size)
    return _(":warning: check: not normal: {reasons}").format(reasons="; ".join(reasons))


def verdict_of(normal: bool, reasons: Sequence[str]) -> tuple[bool, tuple[str, ...]]:
    """Return what a check says, without its figures: two checks that say the same are one thread reply."""
    return normal, tuple(_FIGURES.sub("#", reason) for reason in reasons)


def trend(sizes: Sequence[int], last: int = 5) -> str:
    """Return the queue over the last checks and which way it goes, e.g. "queue 1,250 → 980 → 610, draining"."""
    shown = " → ".join(f"{size:,}" for size in sizes[-last:])
    if len(sizes) < 2:
        return _("queue {sizes}").format(sizes=shown)
    if sizes[-1] == sizes[-2]:
        return _("queue {sizes}, steady").format(sizes=shown)
    if sizes[-1] < sizes[-2]:
        return _("queue {sizes}, draining").format(sizes=shown)
    return _("queue {sizes}, growing").format(sizes=shown)


def sparkline(values: Sequence[int]) -> str:
    """Return the queue trend as a compact sparkline, e.g. ▇▆▄▂▁."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1
    return "".join(SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)
