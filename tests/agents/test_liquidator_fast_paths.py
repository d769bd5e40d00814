"""The liquidators' shortcuts (issue 14) against their plain path, on crafted books: `_all_hopeless` (a block in which
no pair of any ranked row pays, so `_pairs` and `_hopeless` are not run) and the previews shared between the
liquidators of a block (`_preview`), `_hopeless` taking its figures from `_all_hopeless`'s (`_pair_figures`) and a
skip carried between blocks (`_Idle`). Every case is run twice on identical worlds, once as the engine runs it and
once with the shortcuts off, and the transactions and everything they do when executed must be the same."""

from __future__ import annotations

from types import SimpleNamespace

import mesa
import numpy as np
import pytest
from conftest import track_env

from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.liquidator import Liquidator, _Idle
from defistress.agents.tx import BlockView
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.flash_loan import FlashLender
from defistress.protocols.lending import AssetParams, LendingMarket

# as shipped (the runs below patch them)
ALL_HOPELESS, PREVIEW, PLAN, STILL = Liquidator._all_hopeless, Liquidator._preview, Liquidator._plan, _Idle.still
PAIR_FIGURES = Liquidator._pair_figures
PRICES = {"ETH": 1600.0, "BTC": 40_000.0, "USDC": 1.0, "DAI": 1.0}


def _spec(min_profit_usd: float, max_tx: int = 3) -> SimpleNamespace:
    return SimpleNamespace(
        latency_blocks=0,
        max_tx_per_block=max_tx,
        min_profit_usd=min_profit_usd,
        profit_share_to_gas=0.3,
        max_priority_fee_gwei=100.0,
        gas_budget_eth=1.0,
        private_orderflow=True,
    )


def _world(seed: int, rule: str, capital_usd: float, funding: str, special: int | None = None, base_rate: float = 0.0):
    """A market of four assets with 14 accounts holding one or two collaterals and one or two debts (random sizes from
    $100 to $30,000 of debt, health about 0.82 to 1.06 after a 20% ETH and BTC drop), pools for every
    collateral/debt pair, and three liquidators with `capital_usd` of each stablecoin.
    `special`: an account that also supplies 1 USDC with its collateral flag off (under the account model);
    `base_rate`: every reserve's base borrow rate (a year's fraction)."""
    rng = np.random.default_rng(seed)
    env = track_env(Env())
    led = env.ledger
    oracles = {s: FixedPrice(p, s) for s, p in PRICES.items()}
    params = [
        AssetParams("ETH", 0.80, 0.85, 0.05, 0.10, base_rate=base_rate),
        AssetParams("BTC", 0.75, 0.80, 0.08, 0.10, base_rate=base_rate),
        AssetParams("USDC", 0.85, 0.90, 0.045, 0.10, base_rate=base_rate),
        AssetParams("DAI", 0.80, 0.85, 0.06, 0.10, base_rate=base_rate),
    ]
    m = LendingMarket("lend", params, oracles, env, rule)
    for s in ("USDC", "DAI", "ETH"):
        led.mint(s, "lenders", 1e7 / PRICES[s], "genesis")
        m.supply_liquidity("lenders", s, 1e7 / PRICES[s])
    rows = m.add_accounts(14)
    for a in rows:
        colls = rng.choice(["ETH", "BTC"], size=rng.integers(1, 3), replace=False)
        debts = rng.choice(["USDC", "DAI", "ETH"], size=rng.integers(1, 3), replace=False)
        debt_usd = float(np.exp(rng.uniform(np.log(100.0), np.log(30_000.0))))
        hf_after = rng.uniform(0.82, 1.0)
        coll_usd = debt_usd * hf_after / 0.8 / 0.80  # healthy before the drop (seed_borrow needs it)
        for c in colls:
            amount = coll_usd / len(colls) / PRICES[c]
            led.mint(c, "pop", amount, "genesis")
            m.supply("pop", [a], c, [amount])
        for d in debts:
            if d in colls:
                continue
            m.seed_borrow("pop", [a], d, [debt_usd / len(debts) / PRICES[d]])
    if special is not None:
        led.mint("USDC", "pop", 1.0, "genesis")
        m.supply("pop", [special], "USDC", [1.0])
        m.set_collateral(np.array([special]), "USDC", False)
    return (env, m, *_drop_pools_and_bots(env, oracles, capital_usd, funding))


def _drop_pools_and_bots(env, oracles, capital_usd: float, funding: str, eth_capital: bool = True):
    """ETH and BTC 20% down, a pool for every collateral/debt pair, and three liquidators with `capital_usd` of each
    stablecoin (and of ETH if `eth_capital`), 1 ETH of gas each, funded as `funding` says: (pools, bots)."""
    led = env.ledger
    for s in ("ETH", "BTC"):
        oracles[s].price = PRICES[s] * 0.8
    pools = []
    for coll, debt in (("ETH", "USDC"), ("BTC", "USDC"), ("ETH", "DAI"), ("BTC", "DAI")):
        pool = ConstantProductPool(PoolParams(f"{coll}-{debt}", coll, debt, 0.003), env)
        pool.seed(2e7 / PRICES[coll] / 0.8, 2e7)
        pools.append(pool)
    lender = FlashLender("aave-v3", 0.0005, env)
    bots = []
    for k in range(3):
        holder = f"bot-{k}"
        for s in ("USDC", "DAI"):
            led.mint(s, holder, capital_usd, "genesis")
        if eth_capital:
            led.mint("ETH", holder, capital_usd / PRICES["ETH"], "genesis")
        led.mint("ETH", holder, 1.0, "genesis_gas")
        bots.append((holder, CAPITAL if funding == "capital" else Funding(funding, lender)))
    return pools, bots


def _run(seed, rule, capital_usd, funding, min_profit_usd, base_fee_gwei, fast: bool, monkeypatch, special=None):
    """Three liquidators submit in one block and their transactions are executed in order; returns what each
    submitted, what the executed transactions logged, each liquidator's `_all_hopeless` verdicts (holder, verdict)
    and the liquidators that called `_plan`."""
    env, m, pools, bots = _world(seed, rule, capital_usd, funding, special)
    verdicts: list[tuple[str, bool]] = []
    planners: set[str] = set()

    def watched(self, *a):
        v = ALL_HOPELESS(self, *a)
        verdicts.append((self.holder, v))
        return v if fast else False

    def plan(self, *a):
        planners.add(self.holder)
        return PLAN(self, *a)

    monkeypatch.setattr(Liquidator, "_all_hopeless", watched)
    monkeypatch.setattr(Liquidator, "_plan", plan)
    # `_hopeless`'s figures taken from `_all_hopeless`'s, or screened again for the pairs `_pairs` picks
    monkeypatch.setattr(Liquidator, "_pair_figures", PAIR_FIGURES if fast else lambda *a: None)
    # the previews the liquidators of a block share, or each its own as `_plan` computed them before
    monkeypatch.setattr(
        Liquidator, "_preview", PREVIEW if fast else lambda self, m, a, c, d, x, view: m.preview(a, c, d, x)
    )
    model = mesa.Model(rng=0)
    liqs = [
        Liquidator(model, h, _spec(min_profit_usd), [m], pools, 500_000, lambda: PRICES["ETH"] * 0.8, f)
        for h, f in bots
    ]
    ref = {s: p * (0.8 if s in ("ETH", "BTC") else 1.0) for s, p in PRICES.items()}
    view = BlockView(5, 60.0, base_fee_gwei, ref)
    sent = [tx for liq in liqs for tx in liq.submit(view)]
    log = [(tx.sender, tx.label, tx.gas, tx.priority_fee_gwei) for tx in sent]
    for tx in sorted(sent, key=lambda t: -t.priority_fee_gwei):
        try:
            tx.action()
        except Revert:
            log.append(("reverted", tx.sender))
    return log, [repr(e) for e in env.events], verdicts, planners


CASES = [
    (seed, rule, capital, funding, min_profit, base_fee)
    for seed in (1, 2)
    for rule in ("aave-v3.0", "aave-v3.3")
    for capital, funding in ((5e6, "capital"), (400.0, "capital"), (0.0, "flash-loan"), (300.0, "both"))
    for min_profit in (0.0, 60.0, 400.0)
    for base_fee in (2.0, 60.0)
]


@pytest.mark.parametrize("seed,rule,capital,funding,min_profit,base_fee", CASES)
def test_the_block_wide_skip_submits_and_executes_what_the_plain_path_does(
    monkeypatch: pytest.MonkeyPatch, seed, rule, capital, funding, min_profit, base_fee
):
    fast = _run(seed, rule, capital, funding, min_profit, base_fee, True, monkeypatch)
    plain = _run(seed, rule, capital, funding, min_profit, base_fee, False, monkeypatch)
    assert fast[0] == plain[0] and fast[1] == plain[1]
    assert fast[2] == plain[2]  # the same verdicts were reached (the plain run only ignored them)
    skipped = {h for h, v in plain[2] if v}
    assert not skipped & plain[3], "the plain path plans a row for a liquidator the block-wide skip passes over"


def test_the_cases_cover_both_verdicts_and_real_liquidations(monkeypatch: pytest.MonkeyPatch):
    """The grid above bites: some cases are skipped block-wide, others liquidate (so the comparison is not between
    two empty runs), with and without binding capital."""
    skipped, liquidated = set(), set()
    for seed, rule, capital, funding, min_profit, base_fee in CASES:
        log, events, verdicts, _ = _run(seed, rule, capital, funding, min_profit, base_fee, False, monkeypatch)
        if verdicts and all(v for _, v in verdicts):
            skipped.add((capital, funding))
        if any(e.startswith("Liquidated(") for e in events):
            liquidated.add((capital, funding))
    assert {(5e6, "capital"), (0.0, "flash-loan")} <= skipped
    assert {(5e6, "capital"), (400.0, "capital"), (0.0, "flash-loan"), (300.0, "both")} <= liquidated


def test_a_row_under_the_account_model_is_never_skipped_block_wide(monkeypatch: pytest.MonkeyPatch):
    """A row with a collateral flag off is not screened (`_screen` leaves it to `_plan`): the block-wide skip must
    not claim it even when nothing else could pay (a minimum profit of a billion dollars), and both paths then
    submit and execute the same."""
    env, m, pools, bots = _world(1, "aave-v3.3", 5e6, "capital")
    ref = {s: p * (0.8 if s in ("ETH", "BTC") else 1.0) for s, p in PRICES.items()}
    liq = Liquidator(mesa.Model(rng=0), bots[0][0], _spec(1e9), [m], pools, 500_000, lambda: 1280.0)
    top = np.flatnonzero(m.health() < 1.0)
    assert top.size >= 3
    assert liq._all_hopeless(m, top, BlockView(5, 60.0, 60.0, ref), env.ledger)
    env, m, pools, bots = _world(1, "aave-v3.3", 5e6, "capital", special=int(top[0]))
    liq = Liquidator(mesa.Model(rng=0), bots[0][0], _spec(1e9), [m], pools, 500_000, lambda: 1280.0)
    assert int(top[0]) in m._special_rows() and m.health()[top[0]] < 1.0
    assert not liq._all_hopeless(m, np.flatnonzero(m.health() < 1.0), BlockView(5, 60.0, 60.0, ref), env.ledger)
    for min_profit in (0.0, 1e9):
        fast = _run(1, "aave-v3.3", 5e6, "capital", min_profit, 60.0, True, monkeypatch, special=int(top[0]))
        plain = _run(1, "aave-v3.3", 5e6, "capital", min_profit, 60.0, False, monkeypatch, special=int(top[0]))
        assert fast[:2] == plain[:2]


def one_binding_account(capital: float):
    """The binding case below: one $100,000 USDC debt on ETH at health 0.9 (row 0), a shallow pool (selling the whole
    cap loses, a smaller repayment can pay), and a liquidator "bot" holding `capital` USDC and 1 ETH for gas.
    Returns (env, market, pool)."""
    env = track_env(Env())
    led = env.ledger
    oracles = {"ETH": FixedPrice(2000.0, "ETH"), "USDC": FixedPrice(1.0, "USDC")}
    params = [AssetParams("ETH", 0.80, 0.85, 0.05, 0.10), AssetParams("USDC", 0.85, 0.90, 0.045, 0.10)]
    m = LendingMarket("lend", params, oracles, env, "aave-v3.0")
    led.mint("USDC", "lenders", 1e6, "genesis")
    m.supply_liquidity("lenders", "USDC", 1e6)
    (a,) = m.add_accounts(1)
    led.mint("ETH", "pop", 100_000.0 * 0.9 / 0.85 / 1600.0, "genesis")
    m.supply("pop", [a], "ETH", [100_000.0 * 0.9 / 0.85 / 1600.0])
    m.seed_borrow("pop", [a], "USDC", [100_000.0])
    oracles["ETH"].price = 1600.0
    pool = ConstantProductPool(PoolParams("ETH-USDC", "ETH", "USDC", 0.003), env)
    pool.seed(500_000.0 / 1600.0, 500_000.0)  # shallow: the whole cap sells at a loss, a small repayment pays
    if capital:
        led.mint("USDC", "bot", capital, "genesis")
    led.mint("ETH", "bot", 1.0, "genesis_gas")
    return env, m, pool


def test_capital_that_binds_is_screened_with_its_own_figures(monkeypatch: pytest.MonkeyPatch):
    """One account of $100,000 USDC debt on ETH, health 0.9 (close factor 50%), and a shallow ETH/USDC pool: the whole
    $50,000 cap would sell about $52,000 of ETH into a $500,000 pool, a loss, so the shared screen (no capital limit)
    says nothing pays; a liquidator holding $2,000 repays only that, sells about $2,000 of ETH, and profits. The
    block-wide skip must not take the shared verdict for its own."""
    env, m, pool = one_binding_account(2_000.0)
    led, a = env.ledger, 0
    assert m.health()[a] == pytest.approx(0.9)
    liq = Liquidator(mesa.Model(rng=0), "bot", _spec(0.0), [m], [pool], 500_000, lambda: 1600.0)
    view = BlockView(5, 60.0, 1.0, {"ETH": 1600.0, "USDC": 1.0})
    rows = np.array([a])
    shared = liq._screen(m, rows, np.array([0]), np.array([1]), view, led, np.full(2, np.inf))
    own = liq._screen(m, rows, np.array([0]), np.array([1]), view, led, np.array([0.0, 2_000.0]))
    assert shared[0].tolist() == [True] and own[0].tolist() == [False]  # the case is the one described
    assert not liq._all_hopeless(m, rows, view, led)
    (tx,) = liq.submit(view)
    tx.action()
    assert [type(e).__name__ for e in env.events].count("Liquidated") == 1
    assert led.balance("bot", "USDC") > 2_000.0


def squeeze_run(rule: str, min_profit_usd: float = 40.0) -> tuple[list, list[str]]:
    """Ninety blocks of a slow squeeze on the crafted book: each block accrues a day of interest at a 60% base rate
    (the debts, the caps and so the profits grow, health falls), the gas price and the reference prices wander, and
    every 30 blocks the ETH oracle moves 1%. Three liquidators submit each block and their transactions execute.
    Returns the transactions (and reverts) and the event log."""
    env, m, pools, bots = _world(4, rule, 5e6, "capital", base_rate=0.6)
    rng = np.random.default_rng(4)
    market = {"ETH": PRICES["ETH"] * 0.8, "BTC": PRICES["BTC"] * 0.8, "USDC": 1.0, "DAI": 1.0, "gwei": 20.0}
    liqs = [
        Liquidator(mesa.Model(rng=0), h, _spec(min_profit_usd), [m], pools, 500_000, lambda: market["ETH"], f)
        for h, f in bots
    ]
    log: list = []
    for b in range(1, 91):
        m.accrue(86_400.0)
        market["gwei"] *= float(np.exp(rng.normal(0.0, 0.05)))
        for a in ("ETH", "BTC", "USDC", "DAI"):
            market[a] *= float(np.exp(rng.normal(0.0, 0.002)))
        if b % 30 == 0:
            m.oracles[m.idx["ETH"]].price *= 0.99
        view = BlockView(b, 12.0 * b, market["gwei"], {a: market[a] for a in ("ETH", "BTC", "USDC", "DAI")})
        sent = [tx for liq in liqs for tx in liq.submit(view)]
        log += [(b, tx.sender, tx.label, tx.priority_fee_gwei) for tx in sent]
        for tx in sorted(sent, key=lambda t: -t.priority_fee_gwei):
            try:
                tx.action()
            except Revert:
                log.append((b, "reverted", tx.sender))
    return log, [repr(e) for e in env.events]


def _squeeze(rule: str, carry: bool, monkeypatch: pytest.MonkeyPatch, min_profit_usd: float = 40.0):
    """`squeeze_run` with block-wide skips carried between blocks (`_Idle`, `carry`) or screened every block.
    Returns the transactions, the event log and how many blocks a skip was carried."""
    monkeypatch.setattr(_Idle, "still", STILL if carry else lambda self, *a: None)
    carried = []

    def still(self, *a):
        v = STILL(self, *a)
        carried.append(v is not None)
        return v

    if carry:
        monkeypatch.setattr(_Idle, "still", still)
    log, events = squeeze_run(rule, min_profit_usd)
    return log, events, sum(carried)


@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_a_skip_carried_between_blocks_decides_what_screening_every_block_decides(
    monkeypatch: pytest.MonkeyPatch, rule: str
):
    """`_Idle`'s bound against screening every block, over blocks in which interest, gas and reference prices move:
    the same transactions and the same executed liquidations, while the carried skip really is used and the squeeze
    really liquidates (the comparison is not between two idle runs)."""
    carried_log, carried_events, carried = _squeeze(rule, True, monkeypatch)
    plain_log, plain_events, _ = _squeeze(rule, False, monkeypatch)
    assert carried_log == plain_log and carried_events == plain_events
    assert carried >= 10, "the carried skip was hardly used: the test would not bite"
    assert sum(e.startswith("Liquidated(") for e in plain_events) >= 3
