"""An oracle that replays published rounds exactly: each round's answer becomes the price at the first block
at or after its `updatedAt`, with that `updatedAt` and round id (Chainlink AggregatorV3 latestRoundData).

The rounds come from a feed of the replay (market.replay.feeds, format chainlink_rounds: the bundled 05c/09c
files and what `defistress import chainlink` writes). The answer in force at the run's start is the last round
at or before it (its `updated_at` is negative: it was published before the run). Several rounds inside one
block publish the last of them (the one before it becomes the previous round). Nothing between rounds is
invented: the price holds until the next round, as on chain.
"""

from __future__ import annotations

from collections.abc import Callable

import mesa
import numpy as np

from defistress.agents.oracles import Oracle


class RoundsOracle(Oracle):
    """Published rounds replayed at their times; `price` is in `denomination` per token of `asset`."""

    def __init__(
        self,
        model: mesa.Model,
        oracle_id: str,
        asset: str,
        times_s: np.ndarray,
        answers: np.ndarray,
        round_ids: list[str],
        reference: Callable[[], float],
        denomination: str = "USD",
        failure=None,
    ):
        if len(times_s) == 0 or times_s[0] > 0:
            raise ValueError(f"oracle {oracle_id}: no round at or before the run's start")
        self.times = np.asarray(times_s, dtype=float)
        self.answers = np.asarray(answers, dtype=float)
        self.round_ids = list(round_ids)
        k = int(np.searchsorted(self.times, 0.0, side="right")) - 1  # the round in force at second 0
        super().__init__(model, oracle_id, asset, lambda: float(self.answers[k]), reference, failure)
        self.denomination = denomination
        self._next = k + 1
        self._set_round(k)

    def _set_round(self, k: int) -> None:
        self.price, self.updated_at = float(self.answers[k]), float(self.times[k])
        self.round_id = int(self.round_ids[k])
        j = max(k - 1, 0)
        self.prev_price, self.prev_updated_at = float(self.answers[j]), float(self.times[j])

    def update(self, block: int, seconds: float):
        if self._failed_stale(seconds) or self._failed_broken(seconds):
            return None
        k = int(np.searchsorted(self.times, seconds, side="right")) - 1
        if k < self._next:
            return None
        self._next = k + 1
        ev = self.publish(block, seconds, float(self.answers[k]), f"round {self.round_ids[k]}")
        self._set_round(k)  # the published round's own time and id, not the block's
        return ev
