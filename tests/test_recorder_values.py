"""The recorder's ledger valuation (liquidator PnL, every block): each holder's balances at reference prices, tokens
outside the market left out, several holders valued in one pass exactly as one at a time."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from defistress.protocols.ledger import Ledger
from defistress.sim.engine.metrics import Recorder


def recorder_over(ledger: Ledger, prices: dict[str, float]) -> Recorder:
    """A Recorder reading only `ledger` and a market at `prices` (USD per token); nothing else of a model."""
    market = SimpleNamespace(symbols=list(prices), prices=np.array(list(prices.values())))
    rec = Recorder.__new__(Recorder)  # _values reads model.market and model.env.ledger only
    rec.model = SimpleNamespace(market=market, env=SimpleNamespace(ledger=ledger))
    return rec


def test_holders_are_valued_at_reference_prices_without_tokens_outside_the_market():
    led = Ledger()
    led.mint("ETH", "liq-a", 2.0, "test")
    led.mint("USDC", "liq-a", 1_000.0, "test")
    led.mint("XYZ", "liq-a", 5.0, "test")  # no reference price: not counted
    led.mint("USDC", "liq-b", 3.0, "test")
    rec = recorder_over(led, {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 0.5})
    # liq-a: 2 x 2,000 + 1,000 x 0.5 = 4,500 USD; liq-b: 3 x 0.5 = 1.5 USD; nobody: 0
    assert rec._values(["liq-a", "liq-b", "nobody"]) == [4_500.0, 1.5, 0.0]
    assert [rec._value(h) for h in ("liq-a", "liq-b", "nobody")] == [4_500.0, 1.5, 0.0]


def test_one_pass_over_several_holders_equals_each_valued_alone_bit_for_bit():
    rng = np.random.default_rng(3)
    led = Ledger()
    holders = [f"h{k}" for k in range(5)]
    for token in ("USDC", "ETH", "XYZ", "BTC"):  # ledger order differs from market order
        for h in holders:
            led.mint(token, h, float(rng.lognormal(3.0, 2.0)), "test")
    rec = recorder_over(led, {"ETH": 1_987.123, "BTC": 61_234.5678, "USDC": 0.99973})
    alone = []
    for h in holders:  # the sum in the ledger's token order, as the recorder defines it
        total = 0.0
        for token in ("USDC", "ETH", "BTC"):
            total += led.balance(h, token) * {"ETH": 1_987.123, "BTC": 61_234.5678, "USDC": 0.99973}[token]
        alone.append(total)
    assert rec._values(holders) == alone
