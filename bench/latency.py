"""Percentiles of ack latencies, printed the same way by every Slack benchmark."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def cut(latencies: Sequence[float], percent: int) -> float:
    """Return the `percent`th percentile (inclusive method: a value between two measured ones)."""
    if len(latencies) < 2:
        return latencies[0] if latencies else 0.0
    return statistics.quantiles(latencies, n=100, method="inclusive")[percent - 1]


def describe(latencies: Sequence[float], percents: Sequence[int] = (50, 99)) -> str:
    """Return "p50 … ms, p99 … ms, max … ms" for `latencies` in seconds."""
    parts = [f"p{p} {cut(latencies, p) * 1000:.1f} ms" for p in percents]
    return ", ".join([*parts, f"max {max(latencies, default=0.0) * 1000:.1f} ms"])
