"""Tests of the perp trader population and the perp liquidator."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from conftest import track_env
from pydantic import ValidationError

from defistress.agents.perp_liquidator import PerpLiquidator, PerpLiquidatorParams
from defistress.agents.traders import Lognormal, TraderParams, TraderPopulation
from defistress.agents.tx import GWEI, BlockView
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import Liquidated, UserAction
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams
from defistress.sim.engine.blocks import build_block

MARKETS = [PerpMarketParams(asset="ETH"), PerpMarketParams.dydx_tier("BTC", "mid_cap")]


def make(n=2000, seed=1, dex_kw=None, **kw):
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0), "BTC": FixedPrice(60_000.0)}
    dex = PerpDex(PerpDexParams(markets=MARKETS, insurance_fund_usd=1e6, **(dex_kw or {})), orc, env)
    fields = dict(accounts=n, market_weights={"ETH": 0.7, "BTC": 0.3}, long_share=0.6)
    fields.update(kw)
    pop = TraderPopulation(mesa.Model(seed=seed), TraderParams(**fields), dex, np.random.default_rng(seed))
    return env, dex, orc, pop


def view(block, base_fee=10.0):
    return BlockView(block=block, seconds=12.0 * block, base_fee_gwei=base_fee, reference={})


# --- population set-up ------------------------------------------------------------------------------------
def test_population_opens_a_balanced_book_with_the_vault_taking_the_residual():
    env, dex, orc, pop = make()
    assert dex.n_accounts == 2001 and dex.vault_account == pop.vault == 2000
    np.testing.assert_allclose(dex.size.sum(axis=0), 0.0, atol=1e-9 * np.abs(dex.size).sum())
    np.testing.assert_allclose(dex.size[pop.vault], -dex.size[pop.accounts].sum(axis=0))
    m = dex.metrics()
    assert m["open_interest_long_usd"] == pytest.approx(m["open_interest_short_usd"])
    # each trader holds one market, opened at the oracle (no PnL yet) and at or above initial margin
    assert np.all((dex.size[pop.accounts] != 0).sum(axis=1) == 1)
    np.testing.assert_allclose(dex.unrealised_pnl(), 0.0, atol=1e-6)
    assert np.all(dex.free_collateral() >= -1e-9 * dex.equity())
    assert pop.leverage.min() >= 1.0 and pop.leverage.max() <= 50.0
    assert np.mean(pop.market_of == 0) == pytest.approx(0.7, abs=0.05)
    assert np.mean(dex.size[pop.accounts].sum(axis=1) > 0) == pytest.approx(0.6, abs=0.05)
    # the population's wallet holds the spare USDC; the DEX holds every deposit
    assert env.ledger.balance("traders", "USDC") == pytest.approx(pop.wallet.sum())
    assert env.ledger.balance("perps", "USDC") == pytest.approx(dex.collateral.sum())
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def test_same_seed_gives_the_same_book():
    a = make(n=300, seed=5)[1]
    b = make(n=300, seed=5)[1]
    c = make(n=300, seed=6)[1]
    np.testing.assert_array_equal(a.size, b.size)
    np.testing.assert_array_equal(a.collateral, b.collateral)
    assert not np.array_equal(a.size, c.size)


def test_leverage_is_capped_by_the_oi_scaled_initial_margin():
    # BTC on the mid-cap tier: 400 accounts of ~$1M push OI past the 40M lower cap, so IMF_eff > 5%
    env, dex, orc, pop = make(
        n=400,
        market_weights={"BTC": 1.0},
        leverage=Lognormal(median=100, sigma=0.01),
        size_usd=Lognormal(median=1e6, sigma=0.01),
    )
    imf = dex.imf_effective()[1]
    assert imf > 0.05
    np.testing.assert_allclose(pop.leverage, 1.0 / imf)


def test_trader_params_validate_weights_and_alarm_range():
    with pytest.raises(ValidationError, match="market_weights"):
        TraderParams(accounts=10, market_weights={"ETH": 0.5})
    with pytest.raises(ValidationError, match="alarm_health_high"):
        TraderParams(accounts=10, market_weights={"ETH": 1.0}, alarm_health_low=2.0, alarm_health_high=1.5)
    with pytest.raises(ValidationError, match="accounts"):
        TraderParams(accounts=0, market_weights={"ETH": 1.0})
    env = Env()
    dex = PerpDex(PerpDexParams(markets=MARKETS), {"ETH": FixedPrice(1.0), "BTC": FixedPrice(1.0)}, env)
    with pytest.raises(ValueError, match="no market for \\['SOL'\\]"):
        TraderPopulation(
            mesa.Model(), TraderParams(accounts=10, market_weights={"SOL": 1.0}), dex, np.random.default_rng(0)
        )


# --- population behaviour -------------------------------------------------------------------------------
def crash(orc, pop, dex, fall=0.06):
    """Lower prices so that longs lose `fall` of their notional."""
    orc["ETH"].price *= 1 - fall
    orc["BTC"].price *= 1 - fall
    return dex.health()[pop.accounts]


def test_attentive_users_top_up_after_the_reaction_delay_in_one_batched_tx():
    env, dex, orc, pop = make(n=500, attentive_share=1.0, reaction_delay_blocks=2, wallet_share=20.0)
    h = crash(orc, pop, dex)
    alarmed = np.flatnonzero((h < pop.alarm) & (h > 0))
    assert alarmed.size > 0
    assert pop.submit(view(10)) == [] and pop.submit(view(11)) == []  # waiting out the delay
    txs = pop.submit(view(12))
    assert [t.label for t in txs] == ["top_up:perps"]
    ready = np.flatnonzero(h < pop.alarm)
    assert txs[0].gas == pop.params.top_up_gas * ready.size  # per-user gas times users
    txs[0].action()
    h2 = dex.health()[pop.accounts[alarmed]]
    np.testing.assert_allclose(h2, pop.target_health[alarmed], rtol=1e-9)  # restored to restore_multiple x alarm
    ev = [e for e in env.events if isinstance(e, UserAction)]
    assert ev and ev[-1].action == "top_up" and ev[-1].amount == pytest.approx(pop.topped_up_usd)
    assert env.ledger.balance("traders", "USDC") == pytest.approx(pop.wallet.sum())
    env.ledger.check_conservation()


def test_users_without_a_wallet_reduce_against_the_vault():
    env, dex, orc, pop = make(n=500, attentive_share=1.0, reaction_delay_blocks=0, wallet_share=0.0)
    h = crash(orc, pop, dex)
    cut = np.flatnonzero((h < pop.alarm) & (dex.equity()[pop.accounts] > 0))
    vault_before = dex.size[pop.vault].copy()
    txs = pop.submit(view(1))
    assert [t.label for t in txs] == ["reduce:perps"] and txs[0].gas == pop.params.reduce_gas * cut.size
    txs[0].action()
    # scaling positions by equity/(target·MMR) at the oracle leaves equity and gives health = target
    np.testing.assert_allclose(dex.health()[pop.accounts[cut]], pop.target_health[cut], rtol=1e-9)
    assert not np.allclose(dex.size[pop.vault], vault_before)
    np.testing.assert_allclose(dex.size.sum(axis=0), 0.0, atol=1e-9 * np.abs(dex.size).sum())
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def test_inattentive_population_submits_nothing():
    env, dex, orc, pop = make(n=200, attentive_share=0.0)
    crash(orc, pop, dex, fall=0.2)
    assert pop.submit(view(100)) == []


# --- liquidator --------------------------------------------------------------------------------------------
def liquidator(dex, env, **kw):
    fields = dict(id="perp-liq", capital_usd=5e6, latency_blocks=1, max_tx_per_block=3, min_profit_usd=1.0)
    fields.update(kw)
    env.ledger.mint("USDC", fields["id"], fields["capital_usd"], "test")
    return PerpLiquidator(mesa.Model(), PerpLiquidatorParams(**fields), dex, eth_price=lambda: 2000.0)


def test_liquidator_waits_its_latency_then_liquidates_and_unwinds_to_the_vault():
    env, dex, orc, pop = make(n=1000, dex_kw={"max_position_portion_liquidated": 1.0})
    liq = liquidator(dex, env)
    crash(orc, pop, dex, fall=0.05)
    assert dex.liquidatable().size > 3
    assert liq.submit(view(5)) == []  # first seen this block: latency 1
    txs = liq.submit(view(6))
    assert len(txs) == 3 and all(t.gas == 500_000 for t in txs)
    assert all(0 < t.priority_fee_gwei <= 500.0 for t in txs)
    equity_before = dex.equity()[liq.account]
    for t in txs:
        t.action()
    evs = [e for e in env.events if isinstance(e, Liquidated)]
    assert len(evs) == 3 and all(e.liquidator == "perp-liq" for e in evs)
    assert np.all(dex.size[liq.account] == 0)  # unwound against the vault in the same call
    assert dex.equity()[liq.account] - equity_before == pytest.approx(sum(e.bonus_usd for e in evs))
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def test_liquidator_skips_liquidations_below_its_minimum_profit():
    env, dex, orc, pop = make(n=500)
    liq = liquidator(dex, env, min_profit_usd=1e9, latency_blocks=0)
    crash(orc, pop, dex, fall=0.05)
    assert dex.liquidatable().size > 0 and liq.submit(view(1)) == []


def test_slower_liquidator_reverts_in_the_block_and_still_pays_gas():
    env, dex, orc, pop = make(n=500, dex_kw={"max_position_portion_liquidated": 1.0})
    fast = liquidator(dex, env, id="fast", latency_blocks=0, max_tx_per_block=1, max_priority_fee_gwei=50.0)
    slow = liquidator(dex, env, id="slow", latency_blocks=0, max_tx_per_block=1, profit_share_to_gas=0.0)
    for holder in ("fast", "slow"):
        env.ledger.mint("ETH", holder, 10.0, "test")
    crash(orc, pop, dex, fall=0.05)
    txs = fast.submit(view(1)) + slow.submit(view(1))
    assert len(txs) == 2 and txs[0].priority_fee_gwei > txs[1].priority_fee_gwei
    stats = build_block(txs, env, base_fee_gwei=10.0, gas_limit=30e6, background_gas=0.0, background_tip_gwei=0.0)
    assert stats.included == 2 and stats.reverted == 1  # same account: the second call finds it done
    assert env.ledger.balance("slow", "ETH") == pytest.approx(10.0 - 500_000 * 10.0 * GWEI)
    env.ledger.check_conservation()


def test_liquidator_tx_reverts_when_the_account_recovered():
    env, dex, orc, pop = make(n=500)
    liq = liquidator(dex, env, latency_blocks=0)
    crash(orc, pop, dex, fall=0.05)
    txs = liq.submit(view(1))
    orc["ETH"].price, orc["BTC"].price = 2000.0, 60_000.0
    with pytest.raises(Revert, match="not liquidatable"):
        txs[0].action()


def test_liquidators_of_a_block_share_previews_and_decide_as_if_alone():
    """Three liquidators deciding on one block's view preview each account once between them, and queue what each
    queues on a view of its own; a state change in the block (a price move) is seen, not served from the memo."""
    env, dex, orc, pop = make(n=500, dex_kw={"max_position_portion_liquidated": 1.0})
    liqs = [liquidator(dex, env, id=f"liq-{k}", latency_blocks=0, capital_usd=(300.0, 3e3, 5e6)[k]) for k in range(3)]
    crash(orc, pop, dex, fall=0.05)
    calls = []
    real = dex.preview_liquidation
    dex.preview_liquidation = lambda a, *args, **kw: calls.append(a) or real(a, *args, **kw)

    def decided(txs):
        return [(t.label, t.priority_fee_gwei, t.action.args) for t in txs]

    alone = [decided(liq.submit(view(1))) for liq in liqs]
    n_alone = len(calls)
    calls.clear()
    shared = view(1)
    assert [decided(liq.submit(shared)) for liq in liqs] == alone
    assert len(calls) == len(set(calls)) < n_alone  # each account previewed once for the three
    assert any(alone) and alone[0] != alone[2]  # capital differs, so the decisions do too
    orc["ETH"].price *= 0.99  # the state moved within the block: previews are taken again
    calls.clear()
    moved = decided(liqs[2].submit(shared))
    assert calls and moved == decided(liqs[2].submit(view(1)))


def test_alarm_dates_hold_while_nothing_moves_and_reset_when_prices_recover():
    # delay 2: dated at the first block seen alarmed; a recovery forgets the date, a new fall dates it anew
    env, dex, orc, pop = make(n=300, attentive_share=1.0, reaction_delay_blocks=2, wallet_share=20.0)
    h = crash(orc, pop, dex)
    alarmed = h < pop.alarm
    assert alarmed.any()
    assert pop.submit(view(10)) == [] and pop.submit(view(11)) == []
    assert np.all(pop.below_since[alarmed] == 10) and np.all(pop.below_since[~alarmed] == -1)
    orc["ETH"].price, orc["BTC"].price = 2000.0, 60_000.0  # back to the opening prices: nobody alarmed
    assert pop.submit(view(12)) == [] and np.all(pop.below_since == -1)
    assert np.array_equal(crash(orc, pop, dex) < pop.alarm, alarmed)
    assert pop.submit(view(13)) == [] and pop.submit(view(14)) == []
    assert np.all(pop.below_since[alarmed] == 13)
    assert [t.label for t in pop.submit(view(15))] == ["top_up:perps"]
