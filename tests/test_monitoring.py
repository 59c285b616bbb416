"""What counts as normal mail after the cleanup."""

from __future__ import annotations

from types import SimpleNamespace

from bot.core.mailserver import Health, Ranked
from bot.core.monitoring import assess, new_flood, sparkline
from tests.conftest import make_config


def check(size: int, monitor_round: int = 0) -> SimpleNamespace:
    return SimpleNamespace(queue_size=size, monitor_round=monitor_round)


def test_a_small_steady_queue_with_postfix_running_is_normal(tmp_path):
    config = make_config(tmp_path)  # normal_queue_size 50, flood_threshold 100
    assert assess(Health(True, 10, Ranked("alice@example.org", 5), None), [check(12)], 0, config) == (True, [])


def test_each_reason_for_not_normal_is_named(tmp_path):
    config = make_config(tmp_path)
    normal, reasons = assess(Health(False, 60, Ranked("x@example.org", 120), Ranked("x", 120)), [], 0, config)
    assert not normal
    assert reasons == [
        "Postfix is not running",
        "queue 60 ≥ 50",
        "sender x@example.org has 120 queued (flood threshold 100)",
        "login x has 120 queued (flood threshold 100)",
    ]
    growing = assess(Health(True, 30, None, None), [check(10), check(20)], 0, config)
    assert growing == (False, ["queue growing: 10 → 20 → 30"])
    assert assess(Health(True, 30, None, None), [check(10, 0), check(20, 0)], 1, config)[0]  # other round


def test_bounces_from_the_null_sender_are_not_a_flood(tmp_path):
    config = make_config(tmp_path, normal_queue_size=500)
    health = Health(True, 200, Ranked("MAILER-DAEMON", 150), None)
    assert assess(health, [], 0, config) == (True, [])
    incident = SimpleNamespace(suspect_address="victim@example.org", suspect_login="victim")
    assert new_flood(health, incident, 100) is None
    assert new_flood(Health(True, 200, None, Ranked("mallory", 150)), incident, 100) == Ranked("mallory", 150)
    assert new_flood(Health(True, 200, None, Ranked("victim", 150)), incident, 100) is None


def test_the_trend_is_a_sparkline():
    assert sparkline([80, 60, 40, 20, 0]) == "█▆▅▃▁"
    assert sparkline([]) == ""
