"""Rankings of names in bounded memory, whatever the number of distinct names."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping

from bot.core.mailserver import Ranked

# A ranking summary keeps the KEEP_RANKED best names when it holds more than PRUNE_AT (about 7 MB).
KEEP_RANKED = 1000
PRUNE_AT = 50_000


class TopCounter:
    """The most frequent names of a stream in bounded memory: a batched Misra–Gries summary.

    Names are counted exactly until more than `prune_at` distinct ones are held; then every count
    is lowered by the (keep+1)-th largest, `cut`, and the names left at zero are dropped. A name
    loses at most `cut` per pruning, so its count is low by at most `error` (the sum of the cuts);
    and each pruning removes at least (keep+1) * cut occurrences, so `error` <= N / (keep+1) for N
    names added. Every name with more than `error` occurrences is still held. Until the first
    pruning (`error` == 0) the counts are exact.
    """

    def __init__(self, *, keep: int = KEEP_RANKED, prune_at: int = PRUNE_AT) -> None:
        self.keep = keep
        self.prune_at = max(prune_at, keep + 1)
        self.counts: Counter[str] = Counter()
        self.error = 0

    def update(self, names: Iterable[str]) -> None:
        self.counts.update(names)  # in C, for a list
        if len(self.counts) > self.prune_at:
            cut = heapq.nlargest(self.keep + 1, self.counts.values())[-1]
            self.counts = Counter({name: n - cut for name, n in self.counts.items() if n > cut})
            self.error += cut

    def get(self, name: str, default: int = 0) -> int:
        return self.counts.get(name, default)

    def most_common(self, n: int) -> list[tuple[str, int]]:
        return self.counts.most_common(n)


def ranked(counter: Mapping[str, int], n: int) -> tuple[Ranked, ...]:
    """Return the `n` most common names of `counter`, ties broken by name."""
    best = heapq.nsmallest(n, counter.items(), key=lambda item: (-item[1], item[0]))  # O(len log n)
    return tuple(Ranked(name, count) for name, count in best)
