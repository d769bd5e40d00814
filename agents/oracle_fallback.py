"""A primary feed with a fallback, switched by Liquity's validation rules (liquity/dev
packages/contracts/contracts/PriceFeed.sol, fetchPrice): Chainlink primary, Tellor fallback, last good price.

Each block the oracle runs fetchPrice's state machine on the two feeds' latest responses:
- the primary is *broken* if its current or previous round is bad (no round, a timestamp in the future, an
  answer <= 0, or an invalid response: `ok` False), *frozen* if its answer is older than `timeout`
  (TIMEOUT = 4 h), and *moved too much* if two consecutive answers differ by more than `max_deviation` of the
  larger (MAX_PRICE_DEVIATION_FROM_PREVIOUS_ROUND = 50%);
- the fallback is broken (bad or invalid response) or frozen likewise;
- two prices are *similar* if they differ by at most `max_difference` of the smaller
  (MAX_PRICE_DIFFERENCE_BETWEEN_ORACLES = 5%).
The five statuses (chainlinkWorking, usingTellorChainlinkUntrusted, bothOraclesUntrusted,
usingTellorChainlinkFrozen, usingChainlinkTellorUntrusted) and their transitions are those of the contract;
`price` is the last good price it returns. A status change is an `oracle_status` event.
"""

from __future__ import annotations

from collections.abc import Callable

import mesa

from defistress.agents.oracles import Oracle
from defistress.protocols.events import Generic

#: statuses of Liquity's PriceFeed, in the contract's order
STATUSES = (
    "chainlinkWorking",
    "usingTellorChainlinkUntrusted",
    "bothOraclesUntrusted",
    "usingTellorChainlinkFrozen",
    "usingChainlinkTellorUntrusted",
)


class FallbackOracle(Oracle):
    """Liquity's PriceFeed over a `primary` and a `fallback` oracle; `price` is its last good price."""

    def __init__(
        self,
        model: mesa.Model,
        oracle_id: str,
        asset: str,
        primary: Oracle,
        fallback: Oracle,
        reference: Callable[[], float],
        timeout_s: float = 4 * 3600.0,
        max_deviation: float = 0.5,
        max_difference: float = 0.05,
    ):
        self.primary, self.fallback = primary, fallback
        self.timeout_s, self.max_deviation, self.max_difference = timeout_s, max_deviation, max_difference
        super().__init__(model, oracle_id, asset, lambda: float(primary.price), reference)
        self.status = "chainlinkWorking"  # setAddresses requires a working, current primary at deployment
        self.updated_at = primary.updated_at
        self.now = 0.0

    # --- the contract's predicates ------------------------------------------------------------------
    def _bad(self, round_id: int, answer: float, ts: float, ok: bool) -> bool:
        return (not ok) or round_id == 0 or ts > self.now or not answer > 0

    def primary_broken(self) -> bool:
        """_chainlinkIsBroken: the current or the previous round is bad."""
        p = self.primary
        prev_bad = p.prev_updated_at > self.now or not p.prev_price > 0
        return self._bad(p.round_id, p.price, p.updated_at, p.ok) or prev_bad

    def primary_frozen(self) -> bool:
        return self.now - self.primary.updated_at > self.timeout_s

    def primary_moved_too_much(self) -> bool:
        cur, prev = self.primary.price, self.primary.prev_price
        return (max(cur, prev) - min(cur, prev)) / max(cur, prev) > self.max_deviation

    def fallback_broken(self) -> bool:
        f = self.fallback
        return (not f.ok) or f.updated_at > self.now or not f.price > 0

    def fallback_frozen(self) -> bool:
        return self.now - self.fallback.updated_at > self.timeout_s

    def similar(self) -> bool:
        a, b = self.primary.price, self.fallback.price
        return (max(a, b) - min(a, b)) / min(a, b) <= self.max_difference

    def both_live_unbroken_similar(self) -> bool:
        if self.fallback_broken() or self.fallback_frozen() or self.primary_broken() or self.primary_frozen():
            return False
        return self.similar()

    # --- fetchPrice --------------------------------------------------------------------------------------
    def fetch(self) -> tuple[str, str | None]:
        """(new status, the feed whose price is stored: "primary", "fallback", or None to return the last good
        price): PriceFeed.fetchPrice."""
        s, P, F = self.status, "primary", "fallback"
        if s == "chainlinkWorking":
            if self.primary_broken():
                if self.fallback_broken():
                    return "bothOraclesUntrusted", None
                if self.fallback_frozen():
                    return "usingTellorChainlinkUntrusted", None
                return "usingTellorChainlinkUntrusted", F
            if self.primary_frozen():
                if self.fallback_broken():
                    return "usingChainlinkTellorUntrusted", None
                return "usingTellorChainlinkFrozen", None if self.fallback_frozen() else F
            if self.primary_moved_too_much():
                if self.fallback_broken():
                    return "bothOraclesUntrusted", None
                if self.fallback_frozen():
                    return "usingTellorChainlinkUntrusted", None
                if self.similar():
                    return s, P
                return "usingTellorChainlinkUntrusted", F
            if self.fallback_broken():
                return "usingChainlinkTellorUntrusted", P
            return s, P
        if s == "usingTellorChainlinkUntrusted":
            if self.both_live_unbroken_similar():
                return "chainlinkWorking", P
            if self.fallback_broken():
                return "bothOraclesUntrusted", None
            return s, None if self.fallback_frozen() else F
        if s == "bothOraclesUntrusted":
            return ("chainlinkWorking", P) if self.both_live_unbroken_similar() else (s, None)
        if s == "usingTellorChainlinkFrozen":
            if self.primary_broken():
                if self.fallback_broken():
                    return "bothOraclesUntrusted", None
                return "usingTellorChainlinkUntrusted", None if self.fallback_frozen() else F
            if self.primary_frozen():
                if self.fallback_broken():
                    return "usingChainlinkTellorUntrusted", None
                return s, None if self.fallback_frozen() else F
            if self.fallback_broken():
                return "usingChainlinkTellorUntrusted", P
            if self.fallback_frozen():
                return s, None
            if self.similar():
                return "chainlinkWorking", P
            return "usingTellorChainlinkUntrusted", F
        # usingChainlinkTellorUntrusted
        if self.primary_broken():
            return "bothOraclesUntrusted", None
        if self.primary_frozen():
            return s, None
        if self.both_live_unbroken_similar():
            return "chainlinkWorking", P
        if self.primary_moved_too_much():
            return "bothOraclesUntrusted", None
        return s, P

    def update(self, block: int, seconds: float):
        """Run fetchPrice; returns the events (a status change, a new last good price)."""
        self.now = seconds
        status, which = self.fetch()
        out = []
        if status != self.status:
            out.append(
                Generic(block, self.id, "oracle_status", {"asset": self.asset, "old": self.status, "new": status})
            )
            self.status = status
        if which is not None:
            src = self.primary if which == "primary" else self.fallback
            if src.price != self.price or src.updated_at != self.updated_at:
                out.append(self.publish(block, seconds, float(src.price), which))
                self.updated_at = src.updated_at  # the answer is as old as the feed it came from
        return out or None
