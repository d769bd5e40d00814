"""Oracle agents: each block they decide whether to publish; protocols read only `oracle.price`.

- PushOracle: Chainlink-style aggregator: publishes when the source moved more than the deviation
  threshold since the last answer, or when the heartbeat elapsed (Chainlink Data Feeds docs,
  "deviation threshold" and "heartbeat").
- DelayedOracle: Maker's Oracle Security Module: every `hop` seconds `poke` makes the queued price
  current and queues the latest source price, so protocols see a price one hop old (dss osm.sol).
- FixedOracle: a constant answer (e.g. a stablecoin hard-coded at 1 USD).
Failure modes: "stale" stops publishing from a time on; "floor" clamps answers at a minimum, like
Chainlink's minAnswer during the LUNA collapse.
"""

from __future__ import annotations

from collections.abc import Callable

import mesa

from defistress.protocols.events import OracleUpdated


class Oracle(mesa.Agent):
    """Base oracle agent: holds the latest published price (USD per token) and its time."""

    def __init__(
        self,
        model: mesa.Model,
        oracle_id: str,
        asset: str,
        read: Callable[[], float],
        reference: Callable[[], float],
        failure=None,
    ):
        super().__init__(model)
        self.id = oracle_id
        self.asset = asset
        self.read = read
        self.reference = reference
        self.failure = failure
        self.price = float(read())
        self.updated_at = 0.0
        self.updates = 0
        #: called as listener(price USD, time seconds) after each publication (e.g. a writer to an on-chain feed)
        self.listeners: list[Callable[[float, float], object]] = []

    def _failed_stale(self, seconds: float) -> bool:
        return self.failure is not None and self.failure.mode == "stale" and seconds >= self.failure.at

    def _floored(self, price: float, seconds: float) -> tuple[float, bool]:
        f = self.failure
        if f is not None and f.mode == "floor" and seconds >= f.at and price < f.floor_price:
            return f.floor_price, True
        return price, False

    def publish(self, block: int, seconds: float, price: float, reason: str):
        self.price = price
        self.updated_at = seconds
        self.updates += 1
        for listener in self.listeners:
            listener(price, seconds)
        return OracleUpdated(block, self.id, self.asset, price, float(self.reference()), reason)

    def update(self, block: int, seconds: float):  # pragma: no cover - interface
        """Decide whether to publish this block; return an OracleUpdated event or None."""
        raise NotImplementedError


class PushOracle(Oracle):
    def __init__(self, model, oracle_id, asset, read, reference, deviation: float, heartbeat_s: float, failure=None):
        super().__init__(model, oracle_id, asset, read, reference, failure)
        self.deviation = deviation
        self.heartbeat_s = heartbeat_s

    def update(self, block: int, seconds: float):
        if self._failed_stale(seconds):
            return None
        p, floored = self._floored(float(self.read()), seconds)
        moved = abs(p / self.price - 1.0) > self.deviation
        if moved or seconds - self.updated_at >= self.heartbeat_s:
            if p == self.price and floored:
                return None
            return self.publish(block, seconds, p, "floor" if floored else ("deviation" if moved else "heartbeat"))
        return None


class DelayedOracle(Oracle):
    """Maker OSM: `cur` is what protocols read; `nxt` is queued and becomes current one hop later."""

    def __init__(self, model, oracle_id, asset, read, reference, hop_s: float, failure=None):
        super().__init__(model, oracle_id, asset, read, reference, failure)
        self.hop_s = hop_s
        self.next_price = self.price
        self.last_poke = 0.0

    def update(self, block: int, seconds: float):
        if seconds - self.last_poke < self.hop_s or self._failed_stale(seconds):
            return None
        self.last_poke = seconds
        current = self.next_price
        self.next_price, _ = self._floored(float(self.read()), seconds)
        return self.publish(block, seconds, current, "delayed")


class FixedOracle(Oracle):
    def __init__(self, model, oracle_id, asset, price: float, reference):
        super().__init__(model, oracle_id, asset, lambda: price, reference)

    def update(self, block: int, seconds: float):
        return None
