"""The perp DEX skips a deleveraging pass when nothing it reads moved since a pass that attempted nothing, and
runs it again after any one of those reads changes (hand-built one-market books: each change alone turns an idle
pass into a deleveraging)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

ETH = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)  # MMF 5%


def book(fund: float = 0.0):
    """ETH at 2,000: account 0 long 10 ETH on 1,000 USD, account 1 short 10 ETH on 100,000 USD (its ADL
    counterparty); whole positions per liquidation."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    params = PerpDexParams(
        markets=[ETH],
        insurance_fund_usd=fund,
        max_position_portion_liquidated=1.0,
        max_notional_liquidated_per_block_usd=1e12,
    )
    dex = PerpDex(params, orc, env)
    env.ledger.mint("USDC", "pop", 101_000.0, "test")
    dex.open_accounts("pop", [1000.0, 100_000.0], [[10.0], [-10.0]])
    return env, dex, orc


def idle_then(dex, env, change) -> tuple[int, int]:
    """(ADL fills of a pass, of a second pass after `change`) in the same block unless `change` moves it."""
    dex.accrue(0.0)
    first = dex.adl_count
    change()
    dex.accrue(0.0)
    return first, dex.adl_count


def bump_block(env):
    env.clock.block += 1


def test_an_unchanged_state_is_skipped_and_gives_the_same_nothing():
    # ETH 1,850: the long's equity 1,000 − 1,500 = −500 < 0 and an empty fund: deleveraged against the short
    env, dex, orc = book()
    dex.accrue(0.0)
    assert dex.adl_count == 0 and dex._adl_idle is not None
    calls = []
    real = dex._values
    dex._values = lambda: calls.append(1) or real()
    dex.accrue(0.0)  # nothing moved: the pass is skipped before reading the book
    bump_block(env)
    dex.accrue(0.0)  # a new block, still nothing moved
    assert calls == [] and dex.adl_count == 0
    dex._values = real
    orc["ETH"].price = 1850.0
    dex.accrue(0.0)
    assert dex.adl_count == 1 and dex.size[0, 0] == 0.0 and dex.size[1, 0] == 0.0
    assert dex._adl_idle is None  # an attempt was made: the next pass reads the book again


def test_a_price_move_alone_is_seen():
    env, dex, orc = book()
    assert idle_then(dex, env, lambda: setattr(orc["ETH"], "price", 1850.0)) == (0, 1)


def test_a_funding_index_move_alone_is_seen():
    # index +200 USD per ETH: the long owes 10·200 = 2,000, equity −1,000 (no state version change)
    env, dex, orc = book()
    assert idle_then(dex, env, lambda: setattr(dex, "funding_index", dex.funding_index + np.array([200.0]))) == (0, 1)


def test_a_collateral_change_alone_is_seen():
    # the long's collateral 1,000 -> −500 (a state change, as every write to the book, bumps the version)
    env, dex, orc = book()

    def lose() -> None:
        dex.collateral[0] -= 1500.0
        dex._touch()

    assert idle_then(dex, env, lose) == (0, 1)


def test_a_fund_drain_alone_is_seen():
    # ETH 1,850 with a 1e6 fund: the fund covers the payout, so liquidators, not ADL, take it; drained, ADL does
    env, dex, orc = book(fund=1e6)
    orc["ETH"].price = 1850.0
    assert idle_then(dex, env, lambda: env.ledger.transfer("USDC", dex.insurance, "elsewhere", 1e6)) == (0, 1)


def test_a_release_from_a_controller_alone_is_seen():
    env, dex, orc = book()
    orc["ETH"].price = 1850.0
    dex.set_controlled([0])
    assert idle_then(dex, env, lambda: dex.set_controlled([0], False)) == (0, 1)


def test_insurance_drawn_this_block_alone_is_seen():
    # 1e6 fund, but the long already drew the per-block limit of 1e6 this block: nothing left for it, ADL
    env, dex, orc = book(fund=1e6)
    orc["ETH"].price = 1850.0
    assert idle_then(dex, env, lambda: dex._block_insurance.update({0: 1e6})) == (0, 1)


@pytest.mark.parametrize(
    "limit",
    [
        lambda dex: dex._block_liquidated.add((0, 0)),  # already liquidated in this market this block
        lambda dex: dex._block_notional.update({0: 1e12}),  # the block's notional limit used up
        lambda dex: setattr(dex, "_block_adl_attempts", 10),  # the block's deleveraging attempts used up
    ],
    ids=["liquidated", "notional", "attempts"],
)
def test_a_block_limit_that_stopped_a_pass_is_lifted_by_the_next_block(limit):
    env, dex, orc = book()
    orc["ETH"].price = 1850.0
    dex._roll_block()
    limit(dex)
    assert idle_then(dex, env, lambda: bump_block(env)) == (0, 1)
