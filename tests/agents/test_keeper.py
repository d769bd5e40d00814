"""Keeper decisions: kicks worth their gas, Clipper takes at a margin, flip bidding, gas ceilings and zero bids.

Gas arithmetic used below: a bark of 450,000 gas at 50 gwei base + 2 gwei priority costs
450,000 · 52e-9 = 0.0234 ETH = 3.276 USD at 140 USD/ETH.
"""

import mesa
import pytest

from defistress.agents.keeper import Keeper, KeeperParams
from defistress.agents.tx import BlockView
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.clip import ClipParams
from defistress.protocols.flip import FlipParams


def view(env, base_fee=50.0, eth=140.0, external=None):
    return BlockView(env.clock.block, env.clock.seconds, base_fee, {"ETH": eth, "DAI": 1.0}, external)


def run(txs):
    """A minimal block builder: highest priority fee first (stable), reverts swallowed."""
    done = []
    for tx in sorted(txs, key=lambda t: -t.priority_fee_gwei):
        try:
            done.append(tx.action())
        except Revert:
            done.append(None)
    return done


def clip_cdp(env, cdp_id="maker", tip=300.0, chip=0.001, vaults=1):
    oracle = FixedPrice(200.0)
    params = CdpParams(dust=100.0, hole=1e6, Hole=1e7, clip=ClipParams(tip=tip, chip=chip))
    cdp = Cdp(params, oracle, env, cdp_id)
    env.ledger.mint("ETH", "population", 10.0 * vaults, "genesis")
    cdp.open_vaults([10.0] * vaults, [1000.0] * vaults)
    oracle.price = 140.0  # every vault unsafe: 10·140/1.5 = 933 < 1000
    return cdp


def keeper(model, cdps, holder="k", dai=5000.0, pool=None, **kw):
    env = cdps[0].env
    env.ledger.mint("DAI", holder, dai, "genesis")
    return Keeper(model, holder, cdps, KeeperParams(**kw), pool=pool)


@pytest.fixture
def model():
    return mesa.Model(rng=0)


def test_keeper_barks_an_unsafe_vault_when_the_incentive_covers_gas(model):
    env = Env()
    cdp = clip_cdp(env)
    k = keeper(model, [cdp], dai=0.0)
    txs = k.submit(view(env))
    # incentive 300 + 0.001·1130 = 301.13 DAI > gas 3.276 USD
    assert [t.label for t in txs] == ["bark maker#0"]
    assert k.gas_spent_eth == pytest.approx(0.0234)
    run(txs)
    assert cdp.auctions.count() == 1
    assert env.ledger.balance("k", "DAI") == pytest.approx(301.13)
    env.ledger.check_conservation()


def test_keeper_skips_a_kick_without_incentive_unless_told_to_always_kick(model):
    env = Env()
    cdp = clip_cdp(env, tip=0.0, chip=0.0)
    assert keeper(model, [cdp], holder="greedy").submit(view(env)) == []
    always = keeper(model, [cdp], holder="civic", kick_policy="always")
    assert [t.label for t in always.submit(view(env))] == ["bark maker#0"]


def test_keeper_submits_nothing_when_the_base_fee_is_above_its_ceiling(model):
    env = Env()
    cdp = clip_cdp(env)
    k = keeper(model, [cdp], max_gas_price_gwei=100.0)
    assert k.submit(view(env, base_fee=98.5)) == []  # 98.5 base + 2 priority = 100.5 > 100
    assert [t.label for t in k.submit(view(env, base_fee=98.0))] == ["bark maker#0"]  # 100 ≤ 100


def test_keeper_takes_only_once_the_auction_price_is_below_market_by_its_margin(model):
    env = Env()
    cdp = clip_cdp(env)
    cdp.bark(0, "someone")  # tab 1130, lot 10, top 140·1.3 = 182
    k = keeper(model, [cdp], min_margin=0.02)
    env.clock.block = 2520 // 12  # 2520 s = 28 steps
    # 28 steps: 182·0.99^28 = 137.359; ·1.02 = 140.106 > market 140 -> wait
    assert k.submit(view(env)) == []
    env.clock.block = 218  # 2616 s: floor(2616/90) = 29 steps
    # 29 steps: 182·0.99^29 = 135.985; ·1.02 = 138.705 ≤ 140 -> take; owe = tab 1130, slice 8.3097 ETH
    txs = k.submit(view(env))
    assert [t.label for t in txs] == ["take maker:0"]
    run(txs)
    assert env.ledger.balance("k", "ETH") == pytest.approx(1130 / (182 * 0.99**29))
    assert env.ledger.balance("k", "DAI") == pytest.approx(5000 - 1130)
    assert cdp.auctions.count() == 0
    env.ledger.check_conservation()


def test_keeper_sells_taken_collateral_into_the_amm_pool_in_the_same_transaction(model):
    env = Env()
    cdp = clip_cdp(env)
    cdp.bark(0, "someone")
    pool = ConstantProductPool(PoolParams("uni-eth-dai", "ETH", "DAI"), env)
    pool.seed(1000.0, 140_000.0)  # pool price 140 DAI/ETH
    k = keeper(model, [cdp], pool=pool, min_margin=0.02)
    env.clock.block = 2700 // 12  # 30 steps: price 134.625
    txs = k.submit(view(env))
    assert [t.label for t in txs] == ["take maker:0"]
    run(txs)
    slice_ = 1130 / (182 * 0.99**30)  # 8.3937 ETH bought for 1130 DAI
    assert env.ledger.balance("k", "ETH") == 0.0
    # sold into x·y=k with a 0.3 % fee: out = a·0.997·140000/(1000 + a·0.997)
    a = slice_ * 0.997
    assert env.ledger.balance("k", "DAI") == pytest.approx(5000 - 1130 + a * 140_000 / (1000 + a))
    assert env.ledger.balance("k", "DAI") > 5000  # the discount beat the slippage
    env.ledger.check_conservation()


def test_keeper_capital_is_shared_across_cdps(model):
    env = Env()
    a, b = clip_cdp(env, "maker-a"), clip_cdp(env, "maker-b")
    a.bark(0, "x")
    b.bark(0, "x")
    k = keeper(model, [a, b], dai=1200.0, kick_policy="never")
    env.clock.block = 2700 // 12  # 30 steps: price 134.625 on both
    txs = k.submit(view(env))
    # the first take commits the whole tab of 1130; only the remaining 70 DAI go to the second auction
    assert [t.label for t in txs] == ["take maker-a:0", "take maker-b:0"]
    results = run(txs)
    assert all(r is not None for r in results)  # no take reverts for lack of funds
    assert results[1].bid == pytest.approx(70.0)
    assert env.ledger.balance("k", "DAI") == pytest.approx(0.0, abs=1e-9)
    env.ledger.check_conservation()


def test_keeper_redoes_a_stale_auction_when_the_incentive_covers_gas(model):
    env = Env()
    cdp = clip_cdp(env)
    cdp.bark(0, "x")
    k = keeper(model, [cdp], dai=0.0, kick_policy="never")
    env.clock.block = 8280 // 12  # 92 steps: below cusp, needs redo
    txs = k.submit(view(env))
    assert [t.label for t in txs] == ["redo maker:0"]
    run(txs)
    assert env.ledger.balance("k", "DAI") == pytest.approx(301.13)  # redo pays tip + chip·tab again


def test_latency_delays_the_first_action_by_that_many_blocks(model):
    env = Env()
    cdp = clip_cdp(env)
    k = keeper(model, [cdp], latency_blocks=2)
    env.clock.block = 10
    assert k.submit(view(env)) == []
    env.clock.block = 11
    assert k.submit(view(env)) == []
    env.clock.block = 12
    assert [t.label for t in k.submit(view(env))] == ["bark maker#0"]


def test_gas_budget_caps_what_the_keeper_spends(model):
    env = Env()
    cdp = clip_cdp(env)
    k = keeper(model, [cdp], gas_budget_eth=0.02)  # one bark costs 0.0234 ETH
    assert k.submit(view(env)) == []


def test_decisions_are_deterministic_given_the_state(model):
    env = Env()
    cdp = clip_cdp(env, vaults=3)
    k1 = keeper(model, [cdp], holder="k1")
    k2 = keeper(model, [cdp], holder="k2")
    labels = [t.label for t in k1.submit(view(env))]
    assert labels == [t.label for t in k2.submit(view(env))]
    assert labels == ["bark maker#0", "bark maker#1", "bark maker#2"]


def test_keeper_rejects_a_pool_that_pairs_other_tokens(model):
    env = Env()
    cdp = clip_cdp(env)
    pool = ConstantProductPool(PoolParams("uni-eth-usdc", "ETH", "USDC"), env)
    with pytest.raises(ValueError, match="pairs no"):
        Keeper(model, "k", [cdp], pool=pool)


# --- flip era: gas decides between a real bid and a zero bid ----------------------------------------
def flip_cdp(env, surplus_buffer=200.0):
    oracle = FixedPrice(200.0)
    params = CdpParams(
        dust=20.0,
        mechanism="flip",
        lump=50.0,
        surplus_buffer=surplus_buffer,
        flip=FlipParams(beg=1.03, ttl=600.0, tau=3 * 86400.0),
    )
    cdp = Cdp(params, oracle, env, "maker")
    env.ledger.mint("ETH", "population", 10.0, "genesis")
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    cdp.bite(0, "biter")  # lot 10 ETH, due 1000, tab 1130
    return cdp


def play(env, keepers, base_fee, blocks):
    for _ in range(blocks):
        env.clock.block += 1
        txs = [tx for k in keepers for tx in k.submit(view(env, base_fee=base_fee))]
        run(txs)


def flip_keepers(model, cdp):
    honest = keeper(model, [cdp], holder="honest", max_gas_price_gwei=100.0, flip_strategy="value")
    opportunist = keeper(
        model, [cdp], holder="zero", max_gas_price_gwei=1000.0, flip_strategy="increment", flip_opening_bid=1e-6
    )
    return honest, opportunist


def test_priced_out_keeper_leaves_the_auction_to_a_zero_bid(model):
    env = Env()
    cdp = flip_cdp(env)
    honest, opportunist = flip_keepers(model, cdp)
    env.clock.block += 1
    v = view(env, base_fee=200.0)  # Black Thursday: gas far above 100 gwei
    assert honest.submit(v) == []
    txs = opportunist.submit(v)
    assert [t.label for t in txs] == ["tend maker:0"]
    run(txs)
    assert cdp.flipper.bid[0] == 1e-6
    play(env, [honest, opportunist], base_fee=200.0, blocks=60)  # ttl 600 s = 50 blocks, then deal
    m = cdp.metrics()
    assert m["zero_bid_auctions"] == 1 and m["auctions_active"] == 0
    # system debt = due 1000 − raised 0.000001 − buffer 200
    assert m["bad_debt_usd"] == pytest.approx(799.999999)
    assert env.ledger.balance("zero", "ETH") == 10.0
    env.ledger.check_conservation()


def test_keeper_facing_cheap_gas_bids_and_the_tab_is_covered(model):
    env = Env()
    cdp = flip_cdp(env)
    honest, opportunist = flip_keepers(model, cdp)
    env.clock.block += 1
    txs = honest.submit(view(env, base_fee=20.0))
    # value strategy: min(tab 1130, 10 ETH · 140 · (1 − 0.02) = 1372) = 1130
    assert [t.label for t in txs] == ["tend maker:0"]
    run(txs)
    assert cdp.flipper.bid[0] == pytest.approx(1130.0)
    play(env, [honest, opportunist], base_fee=20.0, blocks=200)
    m = cdp.metrics()
    assert m["zero_bid_auctions"] == 0 and m["auctions_active"] == 0
    # the full tab was raised: due 1000 repaid, penalty 130 added to the buffer of 200
    assert m["bad_debt_usd"] == 0.0 and m["surplus_usd"] == pytest.approx(330.0)
    # dent bids returned collateral: the winner accepted at most tab / (140·0.98) = 8.2362 ETH
    won = env.ledger.balance("honest", "ETH") + env.ledger.balance("zero", "ETH")
    assert won == pytest.approx(1130 / (140 * 0.98), rel=1e-9)
    assert env.ledger.balance("population", "ETH") == pytest.approx(10.0 - won)
    env.ledger.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_keeper_ticks_an_expired_flip_auction_then_bids(model):
    env = Env()
    cdp = flip_cdp(env)
    honest, _ = flip_keepers(model, cdp)
    env.clock.block = (3 * 86400) // 12 + 1  # past end = 3 days with no bid
    txs = honest.submit(view(env, base_fee=20.0))
    assert [t.label for t in txs] == ["tick maker:0"]
    run(txs)
    env.clock.block += 1
    assert [t.label for t in honest.submit(view(env, base_fee=20.0))] == ["tend maker:0"]


# A spent budget: at 50 + 2 gwei a take of 250,000 gas costs 0.013 ETH, a redo of 150,000 0.0078 ETH, a bark of
# 450,000 0.0234 ETH (no pool, no outside market: no swap gas).
def test_a_keeper_whose_budget_refuses_every_action_reads_nothing(model):
    env = Env()
    cdp = clip_cdp(env, vaults=2)
    cdp.bark(0, "x")  # a running auction and an unsafe vault left
    k = keeper(model, [cdp], gas_budget_eth=0.0077)  # below the cheapest action (a redo)
    k._seen = {("maker", "kick", 1): 0}
    reads = []
    cdp.clipper.status = lambda: reads.append("status")
    cdp.liquidatable = lambda: reads.append("liquidatable")
    assert k.submit(view(env)) == [] and reads == [] and k._seen == {}


@pytest.mark.parametrize(
    ("gas", "block", "label"),
    [
        (dict(gas_redo=100_000, gas_take=300_000, gas_bark=300_000), 8280 // 12, "redo maker:0"),  # redo 0.0052 ETH
        (dict(gas_redo=300_000, gas_take=100_000, gas_bark=300_000), 218, "take maker:0"),  # take 0.0052 ETH
        (dict(gas_redo=300_000, gas_take=300_000, gas_bark=100_000), 0, "bark maker#1"),  # bark 0.0052 ETH
    ],
    ids=["redo", "take", "bark"],
)
def test_a_budget_that_still_admits_one_kind_of_action_is_not_skipped(model, gas, block, label):
    # budget 0.01 ETH: the 100,000-gas action fits (0.0052 ETH), the 300,000-gas ones (0.0156 ETH) do not;
    # auction 0 needs a redo at 8,280 s (below cusp) and is worth taking at 2,616 s (see the take test above)
    env = Env()
    cdp = clip_cdp(env, vaults=2)
    cdp.bark(0, "x")
    if block != 0:
        cdp.bark(1, "x")  # no unsafe vault left: only the auction can be acted on
    k = keeper(model, [cdp], gas_budget_eth=0.01, min_margin=0.02, **gas)
    env.clock.block = block
    assert [t.label for t in k.submit(view(env))] == [label]


def test_a_flipper_keeper_is_never_skipped_on_the_clipper_gas_budget(model):
    # base fee 20 + 2 gwei: a tick of 50,000 gas costs 0.0011 ETH, a redo of 150,000 0.0033 ETH: a budget of
    # 0.002 ETH refuses every Clipper action but admits the tick of the expired flip auction
    env = Env()
    cdp = flip_cdp(env)
    k = keeper(model, [cdp], holder="honest", flip_strategy="value", gas_budget_eth=0.002)
    env.clock.block = (3 * 86400) // 12 + 1
    assert [t.label for t in k.submit(view(env, base_fee=20.0))] == ["tick maker:0"]
