"""Oracle agents: each block they decide whether to publish; protocols read only `oracle.price`.

- PushOracle: Chainlink-style aggregator: publishes when the source moved more than the deviation
  threshold since the last answer, or when the heartbeat elapsed (Chainlink Data Feeds docs,
  "deviation threshold" and "heartbeat").
- DelayedOracle: Maker's Oracle Security Module: every `hop` seconds `poke` makes the queued price
  current and queues the latest source price, so protocols see a price one hop old (dss osm.sol).
- FixedOracle: a constant answer (e.g. a stablecoin hard-coded at 1 USD).
Failure modes: "stale" stops publishing from a time on; "floor" clamps answers at a minimum, like
Chainlink's minAnswer during the LUNA collapse; "broken" stops publishing and marks the latest response
invalid (a reverting or zero answer), which a fallback oracle (agents/oracle_fallback.py) detects.

Every oracle keeps what Chainlink's AggregatorV3 exposes: the latest answer (`price`, in `denomination` per
token, USD unless a feed says otherwise), its `updated_at` (run seconds) and `round_id`, the previous round's
answer and time (`prev_price`, `prev_updated_at`), and whether the latest response is valid (`ok`).
Staleness: with `max_age` set, `staleness()` reports when the answer gets older than it (an `oracle_stale`
event) and when a new answer arrives (`oracle_fresh`).
"""

from __future__ import annotations

from collections.abc import Callable

import mesa

from defistress.protocols.events import Generic, OracleUpdated


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
        self.denomination = "USD"  # unit of `price`: USD, or a market asset for a ratio feed (stETH/ETH)
        self.round_id = 1
        self.prev_price, self.prev_updated_at = self.price, self.updated_at
        self.ok = True  # the latest response is valid (False once a "broken" failure starts)
        self.max_age: float | None = None  # staleness threshold, seconds (None: not watched)
        self._stale = False
        #: called as listener(price USD, time seconds) after each publication (e.g. a writer to an on-chain feed)
        self.listeners: list[Callable[[float, float], object]] = []

    def _failed_stale(self, seconds: float) -> bool:
        return self.failure is not None and self.failure.mode == "stale" and seconds >= self.failure.at

    def _floored(self, price: float, seconds: float) -> tuple[float, bool]:
        f = self.failure
        if f is not None and f.mode == "floor" and seconds >= f.at and price < f.floor_price:
            return f.floor_price, True
        return price, False

    def _failed_broken(self, seconds: float) -> bool:
        """A "broken" failure has started: no more answers, and the latest response is invalid."""
        if self.failure is not None and self.failure.mode == "broken" and seconds >= self.failure.at:
            self.ok = False
        return not self.ok

    def staleness(self, block: int, seconds: float) -> Generic | None:
        """An `oracle_stale` event when the answer first gets older than `max_age`, `oracle_fresh` when a new
        answer arrives after that (None otherwise, and always without `max_age`)."""
        if self.max_age is None:
            return None
        age = seconds - self.updated_at
        if (age > self.max_age) == self._stale:
            return None
        self._stale = not self._stale
        detail = {"asset": self.asset, "age_s": float(age), "max_age_s": float(self.max_age)}
        return Generic(block, self.id, "oracle_stale" if self._stale else "oracle_fresh", detail)

    def publish(self, block: int, seconds: float, price: float, reason: str):
        self.prev_price, self.prev_updated_at = self.price, self.updated_at
        self.round_id += 1
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
        if self.failure is None:  # the common case, without the failure helpers' calls (every oracle, every block)
            if not self.ok:
                return None
            p, floored = float(self.read()), False
        elif self._failed_stale(seconds) or self._failed_broken(seconds):
            return None
        else:
            p, floored = self._floored(float(self.read()), seconds)
        moved = abs(p / self.price - 1.0) > self.deviation
        if moved or seconds - self.updated_at >= self.heartbeat_s:
            if p == self.price and floored:
                return None
            return self.publish(block, seconds, p, "floor" if floored else ("deviation" if moved else "heartbeat"))
        return None


class DelayedOracle(Oracle):
    """Maker OSM: `cur` is what protocols read; `nxt` is queued and becomes current one hop later.

    dss osm.sol: `poke` is allowed once `now >= zzz + hop`, where `zzz = prev(now) = now - now % hop` is the
    start of the hop (in unix time: with the default one-hour hop, pokes land on the hour); the constructor
    sets cur = nxt = the source's price and zzz = prev(now). `epoch_s` is the unix time of run second 0, so
    a replay that starts at 00:30 first pokes at 01:00."""

    def __init__(self, model, oracle_id, asset, read, reference, hop_s: float, failure=None, epoch_s: float = 0.0):
        super().__init__(model, oracle_id, asset, read, reference, failure)
        self.hop_s = hop_s
        self.epoch_s = epoch_s
        self.next_price = self.price
        self.zzz = self._prev(0.0)
        self.last_poke = 0.0

    def _prev(self, seconds: float) -> float:
        """osm.sol prev(ts) = ts - ts % hop, in run seconds."""
        ts = self.epoch_s + seconds
        return ts - ts % self.hop_s - self.epoch_s

    def update(self, block: int, seconds: float):
        if seconds < self.zzz + self.hop_s or self._failed_stale(seconds) or self._failed_broken(seconds):
            return None
        self.zzz = self._prev(seconds)
        self.last_poke = seconds
        current = self.next_price
        self.next_price, _ = self._floored(float(self.read()), seconds)
        return self.publish(block, seconds, current, "delayed")


class FixedOracle(Oracle):
    def __init__(self, model, oracle_id, asset, price: float, reference):
        super().__init__(model, oracle_id, asset, lambda: price, reference)

    def update(self, block: int, seconds: float):
        return None
