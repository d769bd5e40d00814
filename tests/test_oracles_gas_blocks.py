"""Oracle agents (push, delayed, failures), the EIP-1559 gas market and block building."""

from __future__ import annotations

import mesa
import numpy as np
import pytest

from defistress.agents.oracles import DelayedOracle, PushOracle
from defistress.agents.tx import GWEI, Tx
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.base import Env, Revert
from defistress.protocols.events import Reverted
from defistress.scenarios.schema import GasSpec, OracleFailure, ShockSpec
from defistress.sim.engine.blocks import BUILDER, build_block
from defistress.sim.engine.gas import GasMarket


class Source:
    """A settable price that an oracle reads (USD per token)."""

    def __init__(self, price: float):
        self.value = price

    def __call__(self) -> float:
        return self.value


def push(src: Source, failure=None) -> PushOracle:
    return PushOracle(
        mesa.Model(rng=0), "chainlink-eth", "ETH", src, src, deviation=0.01, heartbeat_s=3600.0, failure=failure
    )


def drive(oracle, src: Source, path: dict[int, float], blocks: int, block_s: float = 12.0) -> dict[int, tuple]:
    """Step the oracle block by block; `path` sets the source price from a block on. Returns publications."""
    published = {}
    for b in range(1, blocks):
        if b in path:
            src.value = path[b]
        ev = oracle.update(b, b * block_s)
        if ev is not None:
            published[b] = (ev.price, ev.reason)
    return published


# --- oracles ------------------------------------------------------------------------------------------
def test_push_oracle_publishes_on_deviation_and_heartbeat_only():
    src = Source(100.0)
    o = push(src)
    # block 10: +0.5% (under the 1% threshold): nothing; block 20: 101.2 is +1.2% from 100: published;
    # block 30: 101.5 is +0.3% from 101.2: nothing until the heartbeat, 3,600 s = 300 blocks after block 20
    pub = drive(o, src, {10: 100.5, 20: 101.2, 30: 101.5}, blocks=20 + 300 + 50)
    assert pub == {20: (101.2, "deviation"), 320: (101.5, "heartbeat")}
    assert o.price == 101.5 and o.updated_at == 320 * 12.0 and o.updates == 2


def test_push_oracle_heartbeat_republishes_an_unchanged_price():
    src = Source(100.0)
    o = push(src)
    pub = drive(o, src, {}, blocks=601)
    assert pub == {300: (100.0, "heartbeat"), 600: (100.0, "heartbeat")}


def test_delayed_oracle_publishes_the_price_of_one_hop_ago():
    src = Source(100.0)
    o = DelayedOracle(mesa.Model(rng=0), "osm-eth", "ETH", src, src, hop_s=3600.0)
    # the source jumps to 120 at block 100 (1,200 s) and to 90 at block 400 (4,800 s)
    pub = drive(o, src, {100: 120.0, 400: 90.0}, blocks=901)
    # t=3,600: the queued price (read at t=0) becomes current: 100; 120 is queued
    # t=7,200: 120 (read at 3,600) becomes current; 90 is queued; t=10,800: 90
    assert pub == {300: (100.0, "delayed"), 600: (120.0, "delayed"), 900: (90.0, "delayed")}
    assert o.next_price == 90.0


def test_stale_failure_stops_updates():
    src = Source(100.0)
    o = push(src, OracleFailure(mode="stale", at=1_200.0))  # from block 100 on
    pub = drive(o, src, {50: 102.0, 150: 50.0}, blocks=1_000)
    assert pub == {50: (102.0, "deviation")}  # the −51% move at block 150 is never seen
    assert o.price == 102.0


def test_floor_failure_clamps_at_the_floor_price():
    src = Source(100.0)
    o = push(src, OracleFailure(mode="floor", at=0.0, floor_price=60.0))
    pub = drive(o, src, {10: 80.0, 20: 10.0, 30: 5.0}, blocks=400)
    # 80 is published as is; 10 is below minAnswer 60 -> 60 ("floor"); 5 -> still 60: nothing new,
    # and the heartbeat does not republish the floored answer
    assert pub == {10: (80.0, "deviation"), 20: (60.0, "floor")}
    assert o.price == 60.0


# --- gas ----------------------------------------------------------------------------------------------
def test_base_fee_rises_one_eighth_after_a_full_block_and_falls_one_eighth_after_an_empty_one():
    spec = GasSpec(block_gas_limit=30_000_000, base_fee_gwei=20.0)
    g = GasMarket(spec, n_blocks=10, block_seconds=12.0)
    g.after_block(30_000_000)  # (30M − 15M)/15M/8 = +12.5%: 20 -> 22.5
    assert g.base_fee_gwei == pytest.approx(22.5)
    g.after_block(0)  # (0 − 15M)/15M/8 = −12.5%: 22.5 -> 19.6875
    assert g.base_fee_gwei == pytest.approx(19.6875)
    g.after_block(15_000_000)  # at target: unchanged
    assert g.base_fee_gwei == pytest.approx(19.6875)


def test_background_demand_follows_shocks_and_falls_with_the_base_fee():
    spec = GasSpec(
        block_gas_limit=30_000_000, base_fee_gwei=20.0, background_demand=0.5, background_price_elasticity=1.0
    )
    shocks = [ShockSpec(at=12.0, until=36.0, gas_demand_multiplier=2.5)]
    g = GasMarket(spec, n_blocks=5, block_seconds=12.0, shocks=shocks)
    assert g.background_gas(0) == pytest.approx(15_000_000)  # 0.5 · 30M
    assert g.background_gas(1) == pytest.approx(37_500_000)  # × 2.5 in [12 s, 36 s)
    assert g.background_gas(3) == pytest.approx(15_000_000)
    g.base_fee_gwei = 40.0  # twice the start: (40/20)^−1 = 1/2
    assert g.background_gas(0) == pytest.approx(7_500_000)


# --- block building ---------------------------------------------------------------------------------
def funded_env(*senders: str, eth: float = 10.0) -> Env:
    env = Env()
    for s in senders:
        env.ledger.mint("ETH", s, eth, "genesis_gas")
    return env


def test_block_orders_by_priority_fee_then_submission_order():
    env = funded_env("a", "b", "c", "d")
    ran = []
    txs = [
        Tx(s, (lambda s=s: ran.append(s)), 100_000, tip, s)
        for s, tip in (("a", 2.0), ("b", 5.0), ("c", 5.0), ("d", 1.0))
    ]
    stats = build_block(txs, env, base_fee_gwei=10.0, gas_limit=30_000_000, background_gas=0.0, background_tip_gwei=0.0)
    assert ran == ["b", "c", "a", "d"]  # tip 5 (b before c: submitted first), then 2, then 1
    assert stats.included == 4 and stats.gas_used == 400_000
    env.ledger.check_conservation()


def test_block_excludes_transactions_over_the_gas_limit():
    env = funded_env("a", "b", "c")
    ran = []
    txs = [
        Tx(s, (lambda s=s: ran.append(s)), gas, 3.0, s) for s, gas in (("a", 600_000), ("b", 600_000), ("c", 300_000))
    ]
    stats = build_block(txs, env, 10.0, gas_limit=1_000_000, background_gas=0.0, background_tip_gwei=0.0)
    # a fits (400k left), b does not and is dropped without paying, c fits in the 400k
    assert ran == ["a", "c"]
    assert stats.dropped == 1 and stats.gas_used == 900_000
    assert env.ledger.balance("b", "ETH") == 10.0
    env.ledger.check_conservation()


def test_background_users_go_before_lower_tips():
    env = funded_env("a", "b")
    ran = []
    txs = [Tx("a", lambda: ran.append("a"), 200_000, 2.0, "a"), Tx("b", lambda: ran.append("b"), 200_000, 1.0, "b")]
    stats = build_block(txs, env, 10.0, gas_limit=1_000_000, background_gas=900_000, background_tip_gwei=1.5)
    # a (tip 2 > 1.5) goes first: 800k left; background users take all 800k; b (tip 1) no longer fits
    assert ran == ["a"]
    assert stats.background_gas == 800_000 and stats.dropped == 1 and stats.gas_used == 1_000_000


@pytest.fixture
def pool_env():
    env = funded_env("trader")
    pool = ConstantProductPool(PoolParams("uni-eth-usdc", "ETH", "USDC"), env)
    pool.seed(1_000.0, 2_000_000.0)
    env.ledger.mint("USDC", "trader", 10_000.0, "genesis")
    return env, pool


def test_reverted_transaction_pays_gas_and_leaves_state_unchanged(pool_env):
    env, pool = pool_env
    reserves = pool.reserves()
    tx = Tx("trader", lambda: pool.swap("trader", "USDC", 10_000.0, min_out=100.0), 150_000, 2.0, "swap")
    stats = build_block(
        [tx], env, base_fee_gwei=30.0, gas_limit=30_000_000, background_gas=0.0, background_tip_gwei=0.0
    )
    # gas: 150,000 · (30 + 2) gwei = 0.0048 ETH; base 150,000 · 30 gwei = 0.0045 ETH burned, tip 0.0003 ETH
    assert stats.included == 1 and stats.reverted == 1
    assert env.ledger.balance("trader", "ETH") == pytest.approx(10.0 - 0.0048)
    assert env.ledger.burned["ETH"] == pytest.approx(0.0045)
    assert env.ledger.balance(BUILDER, "ETH") == pytest.approx(0.0003)
    assert pool.reserves() == reserves and env.ledger.balance("trader", "USDC") == 10_000.0
    rev = [e for e in env.events if isinstance(e, Reverted)]
    assert len(rev) == 1 and rev[0].gas_paid_eth == pytest.approx(0.0048) and "below minimum" in rev[0].reason
    env.ledger.check_conservation()


def test_private_transaction_that_would_revert_is_not_included_and_pays_nothing(pool_env):
    env, pool = pool_env
    reserves = pool.reserves()
    tx = Tx("trader", lambda: pool.swap("trader", "USDC", 10_000.0, min_out=100.0), 150_000, 2.0, "swap", private=True)
    stats = build_block([tx], env, 30.0, 30_000_000, 0.0, 0.0)
    assert stats.included == 0 and stats.dropped == 1 and stats.reverted == 0 and stats.gas_used == 0
    assert env.ledger.balance("trader", "ETH") == 10.0
    assert pool.reserves() == reserves
    assert not env.events
    env.ledger.check_conservation()


def test_private_transaction_that_succeeds_is_included_and_pays(pool_env):
    env, pool = pool_env
    tx = Tx("trader", lambda: pool.swap("trader", "USDC", 10_000.0), 150_000, 2.0, "swap", private=True)
    stats = build_block([tx], env, 30.0, 30_000_000, 0.0, 0.0)
    assert stats.included == 1 and stats.reverted == 0
    # out = 10,000·0.997·1,000 / (2,000,000 + 9,970) = 4.960273 ETH; gas 150,000 · 32 gwei = 0.0048 ETH
    assert env.ledger.balance("trader", "ETH") == pytest.approx(10.0 - 0.0048 + 4.960273, abs=1e-6)
    assert env.ledger.balance("trader", "USDC") == 0.0
    env.ledger.check_conservation()


def test_sender_without_eth_for_gas_is_dropped():
    env = funded_env("rich")
    env.ledger.mint("ETH", "poor", 0.001, "genesis_gas")  # needs 500,000 · 22 gwei = 0.011 ETH
    ran = []
    txs = [
        Tx("poor", lambda: ran.append("poor"), 500_000, 2.0, "liquidate"),
        Tx("nobody", lambda: ran.append("nobody"), 21_000, 2.0, "transfer"),
        Tx("rich", lambda: ran.append("rich"), 500_000, 1.0, "liquidate"),
    ]
    stats = build_block(txs, env, 20.0, 30_000_000, 0.0, 0.0)
    assert ran == ["rich"]
    assert stats.dropped == 2 and stats.included == 1
    assert env.ledger.balance("poor", "ETH") == 0.001
    env.ledger.check_conservation()


def test_revert_inside_a_protocol_call_is_caught_as_a_revert():
    env = funded_env("keeper")

    def fail():
        raise Revert("HEALTH_FACTOR_NOT_BELOW_THRESHOLD")

    stats = build_block([Tx("keeper", fail, 300_000, 0.0, "liquidate:lend")], env, 10.0, 30_000_000, 0.0, 0.0)
    assert stats.reverted == 1
    assert np.isclose(env.ledger.balance("keeper", "ETH"), 10.0 - 300_000 * 10 * GWEI)
    assert env.events[-1].reason == "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"


# --- boundaries of gas and block building (exact values; see tests/mutation) ------------------------------
def test_base_fee_has_a_floor_and_a_replayed_series_overrides_the_update():
    g = GasMarket(GasSpec(block_gas_limit=30_000_000, base_fee_gwei=1e-9), n_blocks=3, block_seconds=12.0)
    g.after_block(0)  # 1e-9 · (1 − 1/8) would go below the 1e-9 gwei floor
    assert g.base_fee_gwei == 1e-9
    replay = np.array([50.0, 70.0, 90.0])
    g = GasMarket(GasSpec(), n_blocks=3, block_seconds=12.0, replay_gwei=replay)
    assert g.base_fee_gwei == 50.0  # the first replayed value from the start
    g.set_block(1)
    g.after_block(30_000_000)  # a full block: no EIP-1559 update while replaying
    assert g.base_fee_gwei == 70.0
    g.set_block(7)  # past the end of the series: its last value
    assert g.base_fee_gwei == 90.0
    g = GasMarket(GasSpec(base_fee_gwei=20.0), n_blocks=3, block_seconds=12.0)
    g.set_block(1)  # without a replay, set_block leaves the fee alone
    assert g.base_fee_gwei == 20.0


def test_shock_window_includes_its_start_and_excludes_its_end_and_later_blocks_use_the_last():
    spec = GasSpec(block_gas_limit=1_000_000, base_fee_gwei=20.0, background_demand=1.0)
    shocks = [ShockSpec(at=24.0, until=48.0, gas_demand_multiplier=3.0)]
    g = GasMarket(spec, n_blocks=4, block_seconds=12.0, shocks=shocks)
    # blocks at 0, 12, 24, 36 s: the window [24, 48) holds blocks 2 and 3
    assert [g.background_gas(b) for b in range(4)] == [1e6, 1e6, 3e6, 3e6]
    assert g.background_gas(10) == 3e6  # beyond the run: the last block's multiplier
    two = [
        ShockSpec(at=0.0, until=24.0, gas_demand_multiplier=2.0),
        ShockSpec(at=12.0, until=36.0, gas_demand_multiplier=5.0),
    ]
    g = GasMarket(spec, n_blocks=4, block_seconds=12.0, shocks=two)
    assert [g.background_gas(b) for b in range(4)] == [2e6, 10e6, 5e6, 1e6]  # overlapping windows multiply
    assert g.background_gas(4) == g.background_gas(100) == 1e6  # after the last block: the last block's


def test_a_transaction_of_exactly_the_gas_left_fits_and_exactly_enough_eth_pays():
    # gas: 400k + 600k = the 1M limit exactly; the second sender holds exactly 600,000 · (10 + 2) gwei
    env = funded_env("a")
    env.ledger.mint("ETH", "b", 600_000 * 12 * GWEI, "genesis_gas")
    ran = []
    txs = [Tx("a", lambda: ran.append("a"), 400_000, 3.0, "a"), Tx("b", lambda: ran.append("b"), 600_000, 2.0, "b")]
    stats = build_block(txs, env, 10.0, gas_limit=1_000_000, background_gas=0.0, background_tip_gwei=0.0)
    assert ran == ["a", "b"] and stats.included == 2 and stats.dropped == 0
    assert stats.gas_used == 1_000_000 and stats.agent_gas == 1_000_000
    # tips 400,000·3 + 600,000·2 gwei = 2.4e-3 ETH to the builder; base fees 1e6 · 10 gwei = 0.01 ETH burned
    assert stats.tips_eth == pytest.approx(2.4e-3, rel=1e-12)
    assert stats.base_fee_burned_eth == pytest.approx(0.01, rel=1e-12)
    assert env.ledger.balance(BUILDER, "ETH") == pytest.approx(2.4e-3, rel=1e-12)
    assert env.ledger.burned["ETH"] == pytest.approx(0.01, rel=1e-12)
    assert env.ledger.burn_reasons[("ETH", "eip1559_base_fee")] == pytest.approx(0.01, rel=1e-12)
    assert env.ledger.balance("b", "ETH") == pytest.approx(0.0, abs=1e-18)
    env.ledger.check_conservation()


def test_a_tip_equal_to_the_background_tip_goes_before_the_background_users():
    env = funded_env("a", "b")
    ran = []
    txs = [Tx("a", lambda: ran.append("a"), 300_000, 1.5, "a"), Tx("b", lambda: ran.append("b"), 300_000, 1.0, "b")]
    stats = build_block(txs, env, 10.0, gas_limit=1_000_000, background_gas=800_000, background_tip_gwei=1.5)
    # a ties with the background tip and goes first (300k); the background takes the 700k left; b does not fit
    # (had the background gone first, its 800k would have left a no room)
    assert ran == ["a"] and stats.background_gas == 700_000 and stats.dropped == 1
    assert stats.gas_used == 1_000_000 and stats.agent_gas == 300_000


def test_background_gas_fills_the_block_when_no_agent_bids_below_it():
    env = funded_env("a")
    stats = build_block([], env, 10.0, gas_limit=1_000_000, background_gas=1_500_000, background_tip_gwei=1.5)
    assert stats.background_gas == 1_000_000 and stats.gas_used == 1_000_000 and stats.included == 0
    txs = [Tx("a", lambda: None, 100_000, 5.0, "a")]  # only a higher tip: the background comes after it
    stats = build_block(txs, env, 10.0, gas_limit=1_000_000, background_gas=400_000, background_tip_gwei=1.5)
    assert stats.background_gas == 400_000 and stats.gas_used == 500_000 and stats.agent_gas == 100_000


def test_reverts_and_ledger_refusals_are_recorded_with_the_gas_paid():
    env = funded_env("k")

    def short():
        env.ledger.transfer("USDC", "k", "x", 1.0)  # k holds no USDC: InsufficientBalance

    txs = [Tx("k", short, 100_000, 1.0, "pay"), Tx("k", lambda: None, 50_000, 0.5, "ok")]
    stats = build_block(txs, env, 10.0, 30_000_000, 0.0, 0.0)
    assert stats.included == 2 and stats.reverted == 1 and stats.dropped == 0
    (rev,) = [e for e in env.events if isinstance(e, Reverted)]
    assert (rev.block, rev.source, rev.sender, rev.action) == (env.clock.block, "k", "k", "pay")
    assert "k holds 0" in rev.reason and rev.gas_paid_eth == pytest.approx(100_000 * 11 * GWEI, rel=1e-12)
    assert env.ledger.balance("k", "ETH") == pytest.approx(10.0 - (100_000 * 11 + 50_000 * 10.5) * GWEI, rel=1e-12)


def test_drops_and_reverts_are_counted_one_by_one():
    env = funded_env("a", "b", "c", "d", "e")
    boom = "x" * 300

    def fail():
        raise Revert(boom)

    txs = [
        Tx("a", fail, 100_000, 9.0, "a"),
        Tx("b", fail, 100_000, 8.0, "b"),
        Tx("c", lambda: None, 900_000, 7.0, "c"),  # over the 800k left: dropped
        Tx("d", lambda: None, 850_000, 6.0, "d"),  # dropped too
        Tx("e", fail, 100_000, 5.0, "e", private=True),  # would revert: not included
        Tx("e", lambda: None, 100_000, 4.0, "e2", private=True),  # a later private one still goes in
    ]
    stats = build_block(txs, env, 10.0, gas_limit=1_000_000, background_gas=0.0, background_tip_gwei=0.0)
    assert (stats.included, stats.reverted, stats.dropped) == (3, 2, 3)
    assert stats.agent_gas == 300_000
    reasons = [e.reason for e in env.events if isinstance(e, Reverted)]
    assert reasons == ["x" * 200, "x" * 200]  # the reason is cut to 200 characters
