"""The keeper's vectorised auction screen and its spent-budget shortcut decide exactly as the scalar rules do.

The reference is the keeper's per-auction loop as it was before the screen (every running auction in id order
through `_maybe_redo` / `_maybe_take`, every kick tried whatever the budget): a subclass below restores it. Both
keepers look at the same CDP state (submit only reads it) over many auction ages, cash levels, gas budgets and
with or without a pool, and must queue the same transactions, spend the same gas and (with latency) record the
same sightings.
"""

import itertools

import mesa
import numpy as np
import pytest

from defistress.agents.keeper import Keeper, KeeperParams, _bind, _Ctx, _kick_room
from defistress.agents.tx import BlockView
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.clip import ClipParams


class ScalarKeeper(Keeper):
    """The keeper without the screen: the per-auction loop and no spent-budget shortcut."""

    def _spent_out(self, gas: int, ctx: _Ctx) -> bool:
        return False

    def _clip_auctions(self, cdp: Cdp, ctx: _Ctx) -> None:
        clip = cdp.clipper
        needs, price = clip.status()
        for i in clip.active_ids():
            if not self._room(ctx):
                return
            if needs[i]:
                self._maybe_redo(cdp, int(i), ctx)
                continue
            self._maybe_take(cdp, int(i), float(price[i]), ctx)


def auction_book(n: int = 40, seed: int = 7) -> tuple[Env, Cdp]:
    """A CDP with `n` Clipper auctions of varied tab and lot, kicked at different times (so at different prices,
    some needing a redo), and a few unsafe vaults left to kick."""
    rng = np.random.default_rng(seed)
    env = Env()
    oracle = FixedPrice(200.0)
    cdp = Cdp(CdpParams(dust=100.0, hole=1e9, Hole=1e9, clip=ClipParams(tip=5.0, chip=0.001)), oracle, env, "maker")
    ink = rng.uniform(1.0, 40.0, n + 5)
    debt = ink * 200.0 / rng.uniform(1.55, 1.9, n + 5)
    env.ledger.mint("ETH", "population", float(ink.sum()), "genesis")
    cdp.open_vaults(ink, debt)
    oracle.price = 120.0  # every vault unsafe
    for j in range(n):
        env.clock.block = int(j * rng.integers(20, 60))
        cdp.bark(j, "someone")
    return env, cdp


def pool_for(env: Env, eth: float) -> ConstantProductPool:
    """125 DAI per ETH; a shallow pool makes a smaller slice worth more per unit (less slippage), so the cash a
    take leaves decides whether a later auction pays."""
    pool = ConstantProductPool(PoolParams("uni-eth-dai", "ETH", "DAI"), env)
    pool.seed(eth, 125.0 * eth)
    return pool


def pair(model, cdp, dai, pool=None, **kw):
    """A screened keeper and a scalar one with the same cash and parameters (fresh holders)."""
    env = cdp.env
    out = []
    tag = len(model.agents)
    for cls, holder in ((Keeper, f"fast-{tag}"), (ScalarKeeper, f"slow-{tag}")):
        if dai > 0:
            env.ledger.mint("DAI", holder, dai, "genesis")
        out.append(cls(model, holder, [cdp], KeeperParams(**kw), pool=pool))
    return out


def decide(k: Keeper, env: Env, base_fee: float) -> tuple:
    txs = k.submit(BlockView(env.clock.block, env.clock.seconds, base_fee, {"ETH": 125.0, "DAI": 1.0}, None))
    # the sightings decide something only with latency: without it the shortcut may skip recording them
    return [t.label for t in txs], k.gas_spent_eth, sorted(k._seen.items()) if k.p.latency_blocks else None


@pytest.mark.parametrize("pool_eth", [0.0, 150.0, 2_000.0])
@pytest.mark.parametrize("dai", [0.0, 900.0, 3_000.0, 20_000.0, 1e7])
def test_the_screened_keeper_queues_what_the_scalar_keeper_queues(pool_eth, dai):
    env, cdp = auction_book()
    pool = pool_for(env, pool_eth) if pool_eth else None
    model = mesa.Model(rng=0)
    seen_any = set()
    for margin, budget, latency in itertools.product((0.0, 0.01, 0.02, 0.05, 0.3), (float("inf"), 0.05), (0, 2)):
        fast, slow = pair(
            model,
            cdp,
            dai,
            pool,
            min_margin=margin,
            gas_budget_eth=budget,
            latency_blocks=latency,
            max_actions_per_block=100,
        )
        for block in range(2_400, 2_400 + 4 * 170, 170):  # auctions of many ages, same blocks for both
            env.clock.block = block
            for base_fee in (5.0, 60.0):
                got, want = decide(fast, env, base_fee), decide(slow, env, base_fee)
                assert got == want, (margin, budget, latency, block, base_fee)
                seen_any.update(lbl.split()[0] for lbl in got[0])
    assert {"take", "redo", "bark"} <= seen_any or dai == 0.0  # the comparison covered every kind of action
    assert {"redo", "bark"} <= seen_any


def test_a_spent_budget_skips_the_scan_only_without_latency():
    env, cdp = auction_book(n=10)
    model = mesa.Model(rng=0)
    env.clock.block = 3_000
    view = BlockView(env.clock.block, env.clock.seconds, 60.0, {"ETH": 125.0, "DAI": 1.0}, None)
    # 0.001 ETH buys no action at 62 gwei (a redo of 150,000 gas costs 0.0093 ETH)
    quick = Keeper(model, "quick", [cdp], KeeperParams(gas_budget_eth=0.001))
    assert quick.submit(view) == [] and quick._seen == {}
    patient = Keeper(model, "patient", [cdp], KeeperParams(gas_budget_eth=0.001, latency_blocks=3))
    assert patient.submit(view) == []
    # with latency the keeper still records what it saw (the five vaults left to kick, the auctions to redo)
    assert {k[1] for k in patient._seen} == {"kick", "redo"}
    assert sum(k[1] == "kick" for k in patient._seen) == 5


class WholeBookKicker(Keeper):
    """The keeper's kicks as they were before the slices: one `preview_bark` over every unsafe vault."""

    def _kicks(self, cdp: Cdp, ctx: _Ctx) -> None:
        if self.p.kick_policy == "never" or self._spent_out(self.p.gas_bark, ctx):
            return
        unsafe = cdp.liquidatable()
        if len(unsafe) == 0:
            return
        unsafe = unsafe[np.argsort(cdp.health()[unsafe], kind="stable")]
        pv = cdp.preview_bark(unsafe)
        gas_usd = self._gas_usd(self.p.gas_bark, ctx)
        worth = pv["ok"] & ((self.p.kick_policy == "always") | (pv["coin"] - gas_usd >= self.p.min_profit_usd))
        room = _kick_room(cdp)
        used = 0.0
        for k in np.flatnonzero(worth):
            if not self._room(ctx):
                return
            if used > 0 and used + pv["tab"][k] > room:
                break
            vault = int(unsafe[k])
            if not self._ready((cdp.id, "kick", vault), ctx):
                continue
            if self._add(ctx, _bind(cdp.bark, vault, self.holder), self.p.gas_bark, f"bark {cdp.id}#{vault}"):
                used += float(pv["tab"][k])


def vault_book(hole: float, n: int = 300, seed: int = 3) -> tuple[Env, Cdp]:
    """`n` unsafe vaults of lognormal debt (median 1,000 DAI), so the most unsafe are often too small to pay a
    kick's gas from the chip alone; with the Dog's `hole` limit already used up to varied degrees."""
    rng = np.random.default_rng(seed)
    env = Env()
    oracle = FixedPrice(200.0)
    params = CdpParams(dust=100.0, hole=hole, Hole=hole, clip=ClipParams(tip=0.0, chip=0.001))
    cdp = Cdp(params, oracle, env, "maker")
    debt = rng.lognormal(np.log(1_000.0), 1.2, n) + 150.0
    ink = debt * rng.uniform(1.55, 1.9, n) / 200.0
    env.ledger.mint("ETH", "population", float(ink.sum()), "genesis")
    cdp.open_vaults(ink, debt)
    oracle.price = 120.0  # every vault unsafe
    return env, cdp


@pytest.mark.parametrize("hole", [1e9, 1e5, 2e4, 1_500.0, 1.0])
@pytest.mark.parametrize("used_up", [0.0, 0.6, 1.0])
def test_kicks_previewed_a_slice_at_a_time_match_one_preview_of_the_whole_book(hole, used_up):
    env, cdp = vault_book(hole)
    cdp.dirt = used_up * hole  # the share of the limit running auctions already hold
    model = mesa.Model(rng=0)
    order = cdp.liquidatable()[np.argsort(cdp.health()[cdp.liquidatable()], kind="stable")]
    rank = {int(v): r for r, v in enumerate(order)}  # position of each vault in the keeper's walk
    kicked = 0
    deepest = -1
    for base_fee, actions, latency, policy in itertools.product(
        (1.0, 60.0, 400.0), (1, 3, 50), (0, 2), ("incentive", "always")
    ):
        kw = dict(max_actions_per_block=actions, latency_blocks=latency, kick_policy=policy)
        tag = len(model.agents)
        fast = Keeper(model, f"fast-{tag}", [cdp], KeeperParams(**kw))
        slow = WholeBookKicker(model, f"slow-{tag}", [cdp], KeeperParams(**kw))
        for block in (10, 11, 12, 13):
            env.clock.block = block
            got, want = decide(fast, env, base_fee), decide(slow, env, base_fee)
            assert got == want, (base_fee, actions, latency, policy, block)
            kicked += len(got[0])
            deepest = max([deepest] + [rank[int(lbl.split("#")[1])] for lbl in got[0]])
    if used_up == 1.0 or hole == 1.0:  # no room, or room only for a dusty partial auction: nothing to kick
        assert kicked == 0
    else:
        assert kicked > 0
    if hole == 1e9 and used_up == 0.0:  # expensive gas: the first vault worth its gas lies past the first slices
        assert deepest >= 16 * 5


def test_no_preview_once_the_liquidation_limit_is_used_up():
    env, cdp = vault_book(2e4)
    cdp.dirt = 2e4  # Dog hole and Hole both reached: every bark would revert with Dog/liquidation-limit-hit
    calls = []
    real = cdp.preview_bark
    cdp.preview_bark = lambda v: calls.append(len(v)) or real(v)
    k = Keeper(mesa.Model(rng=0), "k", [cdp], KeeperParams(kick_policy="always"))
    assert decide(k, env, 1.0)[0] == [] and calls == []
    cdp.dirt = 2e4 - 5_000.0  # room again: the first slice of 16 is previewed
    assert decide(k, env, 1.0)[0] and calls[0] == 16


def test_keepers_of_a_block_share_the_status_and_the_kick_order_and_see_a_change():
    """Two keepers deciding on one block's view read Clipper.status and order the unsafe vaults once between
    them, and queue what each queues on a view of its own; a price move within the block is seen."""
    env, cdp = auction_book(n=12)
    env.clock.block = 2_400
    model = mesa.Model(rng=0)
    keepers = []
    for k in range(2):
        env.ledger.mint("DAI", f"k{k}", 5_000.0 * (k + 1), "genesis")
        keepers.append(Keeper(model, f"k{k}", [cdp], KeeperParams(max_actions_per_block=100)))
    calls = {"status": 0, "liquidatable": 0, "preview": 0}
    status, liquidatable, preview = cdp.clipper.status, cdp.liquidatable, cdp.preview_bark

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)

        return wrapper

    cdp.clipper.status, cdp.liquidatable = counted("status", status), counted("liquidatable", liquidatable)
    cdp.preview_bark = counted("preview", preview)

    def view(extra=None):
        return BlockView(
            env.clock.block, env.clock.seconds, 30.0, {"ETH": 125.0, "DAI": 1.0}, None, {} if extra is None else extra
        )

    alone = [[t.label for t in k.submit(view())] for k in keepers]
    assert calls == {"status": 2, "liquidatable": 2, "preview": 2} and any("bark" in x for x in sum(alone, []))
    shared = {}
    together = [[t.label for t in k.submit(view(shared))] for k in keepers]
    assert together == alone and calls == {"status": 3, "liquidatable": 3, "preview": 3}
    cdp.dirt += 1.0  # the Dog's Dirt moved: the vaults are read and previewed again, the Clipper status is kept
    assert [t.label for t in keepers[0].submit(view(shared))] == [t.label for t in keepers[0].submit(view())]
    assert calls == {"status": 4, "liquidatable": 5, "preview": 5}
    cdp.oracle.price *= 0.9  # the state moved within the block: read again, and decided on the new state
    moved = [t.label for t in keepers[0].submit(view(shared))]
    assert calls["liquidatable"] == 6 and moved == [t.label for t in keepers[0].submit(view())]
