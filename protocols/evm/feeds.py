"""Writing an oracle's answers into an on-chain feed: a listener for an oracle agent that turns each publication into
a RoundFeed round (`transmit`), stamped with the run's time, so `latestRoundData` on chain is what the agent
published (answer to 8 decimals, updatedAt in seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from defistress.protocols.evm.rpc import Chain


@dataclass
class FeedWriter:
    """Call it as listener(price USD, seconds since the run's start): one round per call. `start` is the chain time
    (seconds) of the run's second 0; answers have the feed's `decimals`."""

    chain: Chain
    feed: Any  # a RoundFeed handle
    writer: str  # the feed's writer (its deployer)
    start: int
    decimals: int = 8
    rounds: int = 0

    def answer(self, price: float) -> int:
        return int((Decimal(repr(float(price))) * 10**self.decimals).to_integral_value())

    def __call__(self, price: float, seconds: float) -> None:
        ts = self.start + int(round(seconds))
        if ts > self.chain.timestamp():
            self.chain.set_next_block_timestamp(ts)
        codec = self.chain.codec(self.feed, "transmit")
        self.chain.send_tx(codec.tx(self.writer, self.answer(price), gas=300_000))
        self.rounds += 1
