"""The lending market against an independent scalar re-implementation of Aave v3's rules (docs/margin-methods.md
5.1: GenericLogic health factor, LiquidationLogic close factor and seizure, v3.3 dust rule and bad-debt burn,
DefaultReserveInterestRateStrategy rates), on random books with accrued indices and prices away from 1.

The reference works on plain floats, one account at a time, in token units; it shares no code with the market."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import track_env
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import BadDebt
from defistress.protocols.lending import AssetParams, LendingMarket

ASSETS = [
    AssetParams("ETH", 0.80, 0.85, 0.05, protocol_fee=0.10, reserve_factor=0.15, slope1=0.03, slope2=0.8),
    AssetParams("BTC", 0.70, 0.75, 0.065, protocol_fee=0.20, reserve_factor=0.20, slope1=0.04, slope2=3.0),
    AssetParams("DAI", 0.75, 0.80, 0.04, protocol_fee=0.10, reserve_factor=0.10, slope1=0.05, slope2=0.75),
    AssetParams(
        "USDC", 0.86, 0.88, 0.045, protocol_fee=0.10, reserve_factor=0.10, base_rate=0.01, optimal_utilisation=0.8
    ),
]
START = {"ETH": 2_000.0, "BTC": 50_000.0, "DAI": 0.98, "USDC": 1.0}
SYMS = [a.symbol for a in ASSETS]
P = {a.symbol: a for a in ASSETS}
LIQ = "liquidator"
YEAR = 365.0 * 86400.0


# --- the reference ---------------------------------------------------------------------------------------
def ref_health(coll: dict, debt: dict, px: dict) -> float:
    d = sum(debt[s] * px[s] for s in SYMS)
    w = sum(coll[s] * px[s] * P[s].liquidation_threshold for s in SYMS)
    return w / d if d > 0 else math.inf


def ref_max_cover(rule: str, coll: dict, debt: dict, px: dict, j: str, i: str | None) -> float:
    hf = ref_health(coll, debt, px)
    if rule == "aave-v3.0":
        return debt[j] * (0.5 if hf > 0.95 else 1.0)
    coll_usd = coll[i] * px[i] if i is not None else sum(coll[s] * px[s] for s in SYMS)
    total_debt_usd = sum(debt[s] * px[s] for s in SYMS)
    if coll_usd >= 2000 and debt[j] * px[j] >= 2000 and hf > 0.95:
        return min(debt[j], 0.5 * total_debt_usd / px[j])
    return debt[j]


def ref_preview(rule, coll, debt, px, i, j, cover):
    """(debt repaid, collateral to the liquidator, fee to the treasury), token units."""
    bonus = 1 + P[i].liquidation_bonus
    repay = min(cover, ref_max_cover(rule, coll, debt, px, j, i))
    seized = repay * px[j] / px[i] * bonus
    if seized > coll[i]:
        seized = coll[i]
        repay = coll[i] * px[i] / px[j] / bonus
    fee = (seized - seized / bonus) * P[i].protocol_fee
    return repay, seized - fee, fee


def ref_rate(u: float, a: AssetParams) -> float:
    if u <= a.optimal_utilisation:
        return a.base_rate + a.slope1 * u / a.optimal_utilisation
    return a.base_rate + a.slope1 + a.slope2 * (u - a.optimal_utilisation) / (1 - a.optimal_utilisation)


# --- building a random book ------------------------------------------------------------------------------
def make(rule: str):
    env = Env()
    track_env(env)
    oracles = {s: FixedPrice(START[s], s) for s in SYMS}
    m = LendingMarket("lend", list(ASSETS), oracles, env, rule)
    for s in SYMS:
        env.ledger.mint(s, "lenders", 1e9 / START[s], "genesis")
        m.supply_liquidity("lenders", s, 1e8 / START[s])
        env.ledger.mint(s, LIQ, 1e8 / START[s], "genesis")
    return m, oracles


usd = st.floats(min_value=100.0, max_value=200_000.0)
books = st.lists(
    st.tuples(st.sampled_from(SYMS), usd, st.sampled_from(SYMS), st.floats(0.2, 0.98)), min_size=1, max_size=4
)
moves = st.fixed_dictionaries({s: st.floats(0.3, 1.3) for s in SYMS})


def open_book(m, book):
    """One account per entry: collateral worth `usd` of one asset, debt of another at a share of the LTV limit."""
    rows = []
    for c_sym, c_usd, d_sym, use in book:
        a = m.add_accounts(1)
        amount = c_usd / START[c_sym]
        m.env.ledger.mint(c_sym, "user", amount, "genesis")
        m.supply("user", a, c_sym, np.array([amount]))
        m.borrow("user", a, d_sym, np.array([c_usd * P[c_sym].ltv * use / START[d_sym]]))
        rows.append(int(a[0]))
    return rows


def account(m, a):
    c, d = m.collateral()[a], m.debt()[a]
    return {s: float(c[k]) for k, s in enumerate(SYMS)}, {s: float(d[k]) for k, s in enumerate(SYMS)}


# --- the tests -------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books, years=st.floats(0.0, 3.0), move=moves, rule=st.sampled_from(["aave-v3.0", "aave-v3.3"]))
def test_health_close_factor_and_preview_match_the_reference(book, years, move, rule):
    m, oracles = make(rule)
    rows = open_book(m, book)
    # rates at the opening utilisation, then one accrual step (linear, Aave MathUtils.calculateLinearInterest)
    debt_tot, coll_tot = m.debt().sum(axis=0), m.collateral().sum(axis=0)
    u = {s: min(debt_tot[k] / (coll_tot[k] + 1e8 / START[s]), 1.0) for k, s in enumerate(SYMS)}
    for k, s in enumerate(SYMS):
        assert m.utilisation()[k] == pytest.approx(u[s], rel=1e-12, abs=1e-15)
        assert m.borrow_rate()[k] == pytest.approx(ref_rate(u[s], P[s]), rel=1e-12, abs=1e-15)
    m.accrue(years * YEAR)
    for k, s in enumerate(SYMS):
        rb = ref_rate(u[s], P[s])
        bi, li = 1 + rb * years, 1 + rb * u[s] * (1 - P[s].reserve_factor) * years
        assert m.borrow_index[k] == pytest.approx(bi, rel=1e-12)
        assert m.liq_index[k] == pytest.approx(li, rel=1e-12)
        # claims grow with the indices: utilisation = debt·bi / ((collateral + lenders' deposit)·li)
        u_now = min(debt_tot[k] * bi / ((coll_tot[k] + 1e8 / START[s]) * li), 1.0)
        assert m.utilisation()[k] == pytest.approx(u_now, rel=1e-12, abs=1e-15)
        assert m.debt()[:, k].sum() == pytest.approx(debt_tot[k] * bi, rel=1e-12)
        assert m.collateral()[:, k].sum() == pytest.approx(coll_tot[k] * li, rel=1e-12)
    for s in SYMS:
        oracles[s].price = START[s] * move[s]
    px = {s: oracles[s].price for s in SYMS}
    for a in rows:
        coll, debt = account(m, a)
        hf = ref_health(coll, debt, px)
        assert m.health()[a] == pytest.approx(hf, rel=1e-12)
        assert m.insolvent_debt_usd()[a] == pytest.approx(
            max(sum(debt[s] * px[s] for s in SYMS) - sum(coll[s] * px[s] for s in SYMS), 0.0), rel=1e-9, abs=1e-9
        )
        for j in SYMS:
            if debt[j] == 0:
                continue
            assert m.max_debt_to_cover(a, j) == pytest.approx(ref_max_cover(rule, coll, debt, px, j, None), rel=1e-12)
            for i in SYMS:
                if coll[i] == 0:
                    continue
                want = ref_max_cover(rule, coll, debt, px, j, i)
                assert m.max_debt_to_cover(a, j, i) == pytest.approx(want, rel=1e-12)
                for share in (0.3, 1.0, 5.0):
                    pv = m.preview(a, i, j, share * debt[j])
                    repay, to_liq, fee = ref_preview(rule, coll, debt, px, i, j, share * debt[j])
                    assert (pv.debt_to_repay, pv.collateral_seized, pv.protocol_fee) == pytest.approx(
                        (repay, to_liq, fee), rel=1e-12
                    )
                    assert pv.debt_usd == pytest.approx(repay * px[j], rel=1e-12)
                    assert pv.collateral_usd == pytest.approx(to_liq * px[i], rel=1e-12)
    unhealthy = [a for a in rows if ref_health(*account(m, a), px) < 1.0]
    assert sorted(m.liquidatable().tolist()) == unhealthy
    assert m.metrics()["accounts_unhealthy"] == len(unhealthy)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    book=books,
    years=st.floats(0.0, 2.0),
    move=moves,
    rule=st.sampled_from(["aave-v3.0", "aave-v3.3"]),
    calls=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(SYMS), st.sampled_from(SYMS), st.floats(0.05, 3.0))),
)
# a second fee of 1.12e-13 DAI credited to a treasury already holding the first: the balance's difference is the fee
# rounded to the balance's ulp (1.14e-13), which an absolute bound of 1e-15 refused
@example(
    book=[("DAI", 183450.0, "ETH", 0.75), ("ETH", 100.0, "DAI", 0.5625)],
    years=0.5,
    move={"ETH": 1.0, "BTC": 1.0, "DAI": 0.5, "USDC": 1.0},
    rule="aave-v3.0",
    calls=[(0, "DAI", "ETH", 1.0), (0, "DAI", "ETH", 1.0)],
)
def test_liquidations_move_what_the_reference_says(book, years, move, rule, calls):
    m, oracles = make(rule)
    rows = open_book(m, book)
    m.accrue(years * YEAR)
    for s in SYMS:
        oracles[s].price = START[s] * move[s]
    px = {s: oracles[s].price for s in SYMS}
    led = m.env.ledger
    deficit = dict.fromkeys(SYMS, 0.0)
    liquidated_usd = 0.0
    for k, i, j, share in calls:
        a = rows[k % len(rows)]
        coll, debt = account(m, a)
        hf = ref_health(coll, debt, px)
        liq_before = {s: led.balance(LIQ, s) for s in SYMS}
        treasury_before = led.balance(m.treasury, i)
        n_bad = sum(isinstance(e, BadDebt) for e in m.env.events)
        # which reverts the reference expects (Aave ValidationLogic.validateLiquidationCall, then v3.3 dust)
        reason = None
        if hf >= 1.0:
            reason = "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
        elif coll[i] <= 0:  # v3.0.2 ValidationLogic checks the collateral ('46') before the debt ('47')
            reason = "COLLATERAL_CANNOT_BE_LIQUIDATED"
        elif debt[j] <= 0:
            reason = "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"
        if reason is None:
            repay, to_liq, fee = ref_preview(rule, coll, debt, px, i, j, share * debt[j])
            left_debt, left_coll = (debt[j] - repay) * px[j], (coll[i] - to_liq - fee) * px[i]
            both = left_debt > 1e-9 and left_coll > 1e-9
            if rule == "aave-v3.3" and both and (left_debt < 1000 or left_coll < 1000):
                reason = "MustNotLeaveDust"
        if reason is not None:
            with pytest.raises(Revert, match=f"^{reason}$"):
                m.liquidate(a, i, j, share * debt[j], LIQ)
            assert account(m, a) == (coll, debt)
            continue
        held = led.balance(m.id, j)
        ev = m.liquidate(a, i, j, share * debt[j], LIQ)
        assert (ev.debt_repaid, ev.collateral_seized, ev.protocol_fee) == pytest.approx((repay, to_liq, fee), rel=1e-12)
        assert (ev.block, ev.source, ev.account, ev.liquidator) == (m.env.clock.block, "lend", a, LIQ)
        assert (ev.debt_asset, ev.collateral_asset) == (j, i)
        assert (ev.debt_repaid_usd, ev.collateral_seized_usd) == pytest.approx(
            (repay * px[j], to_liq * px[i]), rel=1e-12
        )
        if i != j:  # the repayment reaches the market
            assert led.balance(m.id, j) - held == pytest.approx(repay, rel=1e-9, abs=1e-7)
        assert ev.health_before == pytest.approx(hf, rel=1e-12)
        assert ev.bonus_usd == pytest.approx((to_liq + fee) * px[i] - repay * px[j], rel=1e-9, abs=1e-9)
        liquidated_usd += repay * px[j]
        new_coll, new_debt = account(m, a)
        assert new_coll[i] == pytest.approx(coll[i] - to_liq - fee, rel=1e-9, abs=1e-9 * coll[i])
        # wallet balances are ~1e8 tokens: their differences carry ~1e-8 of rounding
        got = led.balance(LIQ, i) - liq_before[i]
        assert got == pytest.approx(to_liq - (repay if i == j else 0.0), rel=1e-9, abs=1e-7)
        if i != j:
            assert liq_before[j] - led.balance(LIQ, j) == pytest.approx(repay, rel=1e-12, abs=1e-7)
        # the ledger rounds the credited balance to its own ulp: the difference carries up to one ulp of it
        treasury_after = led.balance(m.treasury, i)
        assert treasury_after - treasury_before == pytest.approx(
            fee, rel=1e-12, abs=max(1e-15, float(np.spacing(abs(treasury_after))))
        )
        if rule == "aave-v3.3" and all(new_coll[s] * 1.0 <= 1e-12 for s in SYMS):
            # v3.3: no collateral left -> every remaining debt is burned into the deficit (_burnBadDebt)
            assert all(v == 0.0 for v in new_debt.values())
            rest = {s: debt[s] - (repay if s == j else 0.0) for s in SYMS}
            for s in SYMS:
                deficit[s] += max(rest[s], 0.0)
            written = [e for e in m.env.events[n_bad:] if isinstance(e, BadDebt)]
            assert {e.asset: e.amount for e in written} == pytest.approx(
                {s: v for s, v in rest.items() if v > 1e-9}, rel=1e-9, abs=1e-9
            )
            for e in written:
                assert (e.account, e.source, e.block) == (a, "lend", m.env.clock.block)
                assert e.amount_usd == pytest.approx(e.amount * px[e.asset], rel=1e-12)
        else:
            assert new_debt[j] == pytest.approx(debt[j] - repay, rel=1e-9, abs=1e-9 * debt[j])
    np.testing.assert_allclose(m.deficit, [deficit[s] for s in SYMS], rtol=1e-9, atol=1e-9)
    met = m.metrics()
    assert met["liquidated_debt_usd"] == pytest.approx(liquidated_usd, rel=1e-9)
    assert met["deficit_usd"] == pytest.approx(sum(deficit[s] * px[s] for s in SYMS), rel=1e-9, abs=1e-9)
    coll_usd = sum(m.collateral()[:, k].sum() * px[s] for k, s in enumerate(SYMS))
    debt_usd = sum(m.debt()[:, k].sum() * px[s] for k, s in enumerate(SYMS))
    assert met["collateral_usd"] == pytest.approx(coll_usd, rel=1e-12)
    assert met["debt_usd"] == pytest.approx(debt_usd, rel=1e-12)
    short = sum(max(ref_short, 0.0) for ref_short in (m.debt() @ m.prices() - m.collateral() @ m.prices()))
    assert met["bad_debt_usd"] == pytest.approx(met["deficit_usd"] + short, rel=1e-9, abs=1e-9)


def test_write_offs_of_two_accounts_add_up_in_the_deficit_by_collateral():
    # two accounts, each 1 ETH against 1,500 DAI (at 0.98 USD): at ETH 1,200 both are insolvent. Seizing all
    # 1 ETH repays 1,200/0.98/1.05 = 1,166.18 DAI; the 333.82 DAI left on each is burned into the deficit
    m, oracles = make("aave-v3.3")
    rows = [int(m.add_accounts(1)[0]) for _ in range(2)]
    for a in rows:
        m.env.ledger.mint("ETH", "user", 1.0, "genesis")
        m.supply("user", np.array([a]), "ETH", np.array([1.0]))
        m.borrow("user", np.array([a]), "DAI", np.array([1_500.0]))
    oracles["ETH"].price = 1_200.0
    for a in rows:
        ev = m.liquidate(a, "ETH", "DAI", 1e9, LIQ)
        assert ev.debt_repaid == pytest.approx(1_200 / 0.98 / 1.05, rel=1e-12)
    left = 1_500.0 - 1_200 / 0.98 / 1.05
    k = m.idx["DAI"]
    assert m.deficit[k] == pytest.approx(2 * left, rel=1e-12)
    assert m.deficit_usd_by_collateral[m.idx["ETH"]] == pytest.approx(2 * left * 0.98, rel=1e-12)
    assert m.losses_by_collateral() == pytest.approx({"ETH": 2 * left * 0.98}, rel=1e-12)
    assert m.metrics()["deficit_usd"] == pytest.approx(2 * left * 0.98, rel=1e-12)


# --- controller entry points (Euler v2 EVC, docs/margin-methods.md 9.1) --------------------------------------
STABLES = ["USDC", "DAI"]  # in LendingMarket.stable_assets order


def ref_settle(amounts: dict, px: dict, cap_usd: float, limits: dict, asset: str | None) -> dict:
    """Tokens taken per stable asset: largest USD amount first, each capped by `limits` (token units)."""
    cand = STABLES if asset is None else [asset] if asset in STABLES else []
    cand = sorted(cand, key=lambda s: -amounts[s] * px[s])
    left, out = cap_usd, {}
    for s in cand:
        if left <= 0:
            break
        tok = min(left / px[s], amounts[s], limits[s])
        if tok <= 0:
            continue
        out[s] = tok
        left -= tok * px[s]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coll=st.fixed_dictionaries({s: st.floats(0.0, 5_000.0) for s in SYMS}),
    debt=st.fixed_dictionaries({s: st.floats(0.0, 0.6) for s in SYMS}),
    years=st.floats(0.0, 2.0),
    amount=st.floats(0.0, 30_000.0),
    asset=st.sampled_from([None, "USDC", "DAI", "ETH"]),
    payer=st.floats(0.0, 4_000.0),
)
def test_settle_out_and_in_match_the_reference(coll, debt, years, amount, asset, payer):
    m, oracles = make("aave-v3.3")
    a = int(m.add_accounts(1)[0])
    limit_usd = 0.0
    for s in SYMS:  # collateral worth coll[s] USD of each asset; then debt at a share of the borrow limit
        if coll[s] > 0:
            m.env.ledger.mint(s, "user", coll[s] / START[s], "genesis")
            m.supply("user", np.array([a]), s, np.array([coll[s] / START[s]]))
            limit_usd += coll[s] * P[s].ltv
    for s in SYMS:
        if debt[s] * limit_usd > 1.0:
            m.borrow("user", np.array([a]), s, np.array([debt[s] * limit_usd / 4 / START[s]]))
    m.accrue(years * YEAR)
    oracles["DAI"].price = 0.6  # a depeg: token and USD orders differ
    px = {s: oracles[s].price for s in SYMS}
    c, d = account(m, a)
    equity = sum(c[s] * px[s] for s in SYMS) - sum(d[s] * px[s] for s in SYMS)
    held = {s: m.env.ledger.balance(m.id, s) for s in SYMS}
    want = ref_settle(c, px, min(amount, max(equity, 0.0)), held, asset)
    moved = m.settle_out(a, amount, "to", asset)
    assert moved == pytest.approx(sum(t * px[s] for s, t in want.items()), rel=1e-12, abs=1e-12)
    c2, _ = account(m, a)
    for s in SYMS:
        assert m.env.ledger.balance("to", s) == pytest.approx(want.get(s, 0.0), rel=1e-12)
        assert c2[s] == pytest.approx(c[s] - want.get(s, 0.0), rel=1e-9, abs=1e-9)
    # settle_in: the payer holds `payer` USD of each stable; debts largest first, capped by what is owed
    for s in STABLES:
        m.env.ledger.mint(s, "payer", payer / px[s], "genesis")
    wallet = {s: m.env.ledger.balance("payer", s) for s in SYMS}
    c, d = account(m, a)
    want = ref_settle(d, px, amount, wallet, asset)
    moved = m.settle_in(a, amount, "payer", asset)
    assert moved == pytest.approx(sum(t * px[s] for s, t in want.items()), rel=1e-12, abs=1e-12)
    _, d2 = account(m, a)
    for s in SYMS:
        assert wallet[s] - m.env.ledger.balance("payer", s) == pytest.approx(want.get(s, 0.0), rel=1e-12)
        assert d2[s] == pytest.approx(d[s] - want.get(s, 0.0), rel=1e-9, abs=1e-9)


def ref_controller_close(coll, debt, px, fraction, penalty):
    """(repaid tokens, seized tokens) per asset, and whether the collateral capped the repayment."""
    repay = {s: fraction * debt[s] for s in SYMS}
    coll_usd = sum(coll[s] * px[s] for s in SYMS)
    repay_usd = sum(repay[s] * px[s] for s in SYMS)
    capped = repay_usd * (1 + penalty) > coll_usd
    if capped:
        repay = {s: v * coll_usd / (repay_usd * (1 + penalty)) for s, v in repay.items()}
        share = 1.0
    else:
        share = min(repay_usd * (1 + penalty) / coll_usd, 1.0)
    return repay, {s: coll[s] * share for s in SYMS}, capped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    book=books,
    years=st.floats(0.0, 2.0),
    move=moves,
    closes=st.lists(
        st.tuples(
            st.integers(0, 3), st.sampled_from([0.25, 0.5, 1.0]), st.sampled_from([0.0, 0.05, 0.3]), st.booleans()
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_controller_close_and_write_off_match_the_reference(book, years, move, closes):
    m, oracles = make("aave-v3.3")
    rows = open_book(m, book)
    m.accrue(years * YEAR)
    for s in SYMS:
        oracles[s].price = START[s] * move[s]
    px = {s: oracles[s].price for s in SYMS}
    led = m.env.ledger
    total_usd, deficit_usd = 0.0, np.zeros(len(SYMS))
    largest = None  # the collateral worth most in the market's last controller close (write-offs are booked to it)
    for k, fraction, penalty, write_off in closes:
        a = rows[k % len(rows)]
        coll, debt = account(m, a)
        if not any(v > 0 for v in debt.values()) or sum(coll[s] * px[s] for s in SYMS) <= 0:
            assert m.controller_close(a, fraction, LIQ, penalty=penalty) is None
        else:
            hf = ref_health(coll, debt, px)
            repay, seize, capped = ref_controller_close(coll, debt, px, fraction, penalty)
            wallet = {s: led.balance(LIQ, s) for s in SYMS}
            ev = m.controller_close(a, fraction, LIQ, penalty=penalty)
            c2, d2 = account(m, a)
            for s in SYMS:
                assert wallet[s] - led.balance(LIQ, s) == pytest.approx(repay[s] - seize[s], rel=1e-9, abs=1e-7)
                full = fraction == 1.0 and not capped
                assert d2[s] == pytest.approx(0.0 if full else debt[s] - repay[s], rel=1e-9, abs=1e-9)
                assert c2[s] == pytest.approx(0.0 if capped else coll[s] - seize[s], rel=1e-9, abs=1e-9)
            repaid_usd = sum(repay[s] * px[s] for s in SYMS)
            seized_usd = sum(seize[s] * px[s] for s in SYMS)
            total_usd += repaid_usd
            d_names = [s for s in SYMS if repay[s] > 0]
            c_names = [s for s in SYMS if seize[s] > 0]
            assert (ev.block, ev.source, ev.account, ev.liquidator) == (m.env.clock.block, "lend", a, LIQ)
            assert (ev.debt_asset, ev.collateral_asset) == ("+".join(d_names), "+".join(c_names))
            want_d = repay[d_names[0]] if len(d_names) == 1 else repaid_usd
            want_c = seize[c_names[0]] if len(c_names) == 1 else seized_usd
            assert (ev.debt_repaid, ev.collateral_seized) == pytest.approx((want_d, want_c), rel=1e-9)
            assert (ev.debt_repaid_usd, ev.collateral_seized_usd) == pytest.approx((repaid_usd, seized_usd), rel=1e-9)
            assert ev.bonus_usd == pytest.approx(seized_usd - repaid_usd, rel=1e-9, abs=1e-9)
            assert ev.protocol_fee == 0.0 and ev.health_before == pytest.approx(hf, rel=1e-12)
            largest = max(SYMS, key=lambda s: (coll[s] * px[s], -SYMS.index(s)))
        if write_off:
            c2, d2 = account(m, a)
            bad = m.write_off(a)
            if any(c2[s] > 1e-12 for s in SYMS):
                assert bad == 0.0
            else:
                assert bad == pytest.approx(sum(d2[s] * px[s] for s in SYMS), rel=1e-9)
                assert all(v == 0.0 for v in account(m, a)[1].values())
                deficit_usd[SYMS.index(largest)] += bad
    assert m.metrics()["liquidated_debt_usd"] == pytest.approx(total_usd, rel=1e-9)
    np.testing.assert_allclose(m.deficit_usd_by_collateral, deficit_usd, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("call", ["controller_close", "settle_out", "settle_in", "write_off"])
def test_controller_entry_points_refuse_an_account_out_of_range(call):
    m, _ = make("aave-v3.3")
    m.add_accounts(2)
    args = {"controller_close": (1.0, LIQ), "settle_out": (1.0, "to"), "settle_in": (1.0, "x"), "write_off": ()}[call]
    for a in (2, -1):
        with pytest.raises(Revert, match=f"no account #{a}"):
            getattr(m, call)(a, *args)


def test_controller_close_refuses_a_fraction_outside_0_1_and_a_penalty_of_1():
    m, _ = make("aave-v3.3")
    a = open_book(m, [("ETH", 10_000.0, "USDC", 0.5)])[0]
    for fraction in (0.0, 1.5, 2.0):
        with pytest.raises(Revert, match="fraction must be in"):
            m.controller_close(a, fraction, LIQ)
    for penalty in (-0.1, 1.0, 1.5):
        with pytest.raises(Revert, match=r"penalty must be in \[0, 1\)"):
            m.controller_close(a, 1.0, LIQ, penalty=penalty)
    # a liquidator holding exactly what it must repay may close; one short by more than rounding may not
    debt = m.debt()[a, m.idx["USDC"]]
    m.env.ledger.mint("USDC", "exact", debt, "genesis")
    m.env.ledger.mint("USDC", "short", debt * (1 - 1e-9), "genesis")
    with pytest.raises(Revert, match="cannot repay USDC"):
        m.controller_close(a, 1.0, "short")
    m.controller_close(a, 1.0, "exact")
    assert m.debt()[a].sum() == 0.0 and m.env.ledger.balance("exact", "USDC") == 0.0


@pytest.mark.parametrize(
    "usdc, dai, moved",
    [
        # USDC 250 (250 USD), DAI 350 at 0.6 (210 USD): USDC first (larger in USD, though not in tokens):
        # 250 USDC, then the 50 USD left as 50/0.6 = 83.33 DAI
        (250.0, 350.0, {"USDC": 250.0, "DAI": 50 / 0.6}),
        # USDC 150, DAI 400 (240 USD): DAI first, all 400 tokens (240 USD), then the 60 USD left in USDC
        (150.0, 400.0, {"DAI": 400.0, "USDC": 60.0}),
    ],
)
def test_settlements_take_the_largest_stable_in_usd_first(usdc, dai, moved):
    m, oracles = make("aave-v3.3")
    oracles["DAI"].price = 0.6
    a = int(m.add_accounts(1)[0])
    for s, amount in (("USDC", usdc), ("DAI", dai), ("ETH", 10.0)):
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", np.array([a]), s, np.array([amount]))
    assert m.settle_out(a, 300.0, "to") == pytest.approx(300.0, rel=1e-12)
    for s, tok in moved.items():
        assert m.env.ledger.balance("to", s) == pytest.approx(tok, rel=1e-12)
    # the same amounts as debts, repaid by settle_in
    b = int(m.add_accounts(1)[0])
    m.env.ledger.mint("ETH", "user", 10.0, "genesis")
    m.supply("user", np.array([b]), "ETH", np.array([10.0]))
    m.borrow("user", np.array([b]), "USDC", np.array([usdc]))
    m.borrow("user", np.array([b]), "DAI", np.array([dai]))
    for s in STABLES:
        m.env.ledger.mint(s, "payer", 1_000.0, "genesis")
    assert m.settle_in(b, 300.0, "payer") == pytest.approx(300.0, rel=1e-12)
    for s, tok in moved.items():
        assert 1_000.0 - m.env.ledger.balance("payer", s) == pytest.approx(tok, rel=1e-12)
        assert m.debt()[b, m.idx[s]] == pytest.approx({"USDC": usdc, "DAI": dai}[s] - tok, rel=1e-9, abs=1e-9)


def test_an_account_at_exactly_health_1_is_not_liquidatable():
    # 1 BTC at 50,000 with LT 0.75: weighted collateral 37,500 = the 37,500 USDC debt, HF = 1 exactly (Aave
    # liquidates only below 1: ValidationLogic HEALTH_FACTOR_LIQUIDATION_THRESHOLD)
    m, oracles = make("aave-v3.3")
    a = m.add_accounts(1)
    m.env.ledger.mint("BTC", "user", 1.0, "genesis")
    m.supply("user", a, "BTC", np.array([1.0]))
    m.seed_borrow("user", a, "USDC", np.array([37_500.0]))
    assert m.health()[a[0]] == 1.0
    assert m.liquidatable().size == 0 and m.metrics()["accounts_unhealthy"] == 0
    with pytest.raises(Revert, match="HEALTH_FACTOR_NOT_BELOW_THRESHOLD"):
        m.liquidate(int(a[0]), "BTC", "USDC", 1_000.0, LIQ)
    with pytest.raises(Revert, match="health factor 1"):
        m.seed_borrow("user", a, "USDC", np.array([0.01]))


def test_set_controlled_refuses_rows_out_of_range():
    m, _ = make("aave-v3.3")
    m.add_accounts(2)
    for rows in ([2], [-1], [0, 2]):
        with pytest.raises(Revert, match=r"account index out of range \[0, 2\)"):
            m.set_controlled(rows)
    m.set_controlled([1])
    assert m.controlled.tolist() == [False, True]


def accrued_market():
    """Two accounts after a year of interest (indices away from 1), DAI depegged to 0.6 USD.
    #0: 1 ETH + 400 USDC + 500 DAI collateral, 600 USDC + 300 DAI of debt (drawn before the year);
    #1: 1 BTC collateral, 20,000 USDC of debt."""
    m, oracles = make("aave-v3.3")
    a, b = (int(x) for x in m.add_accounts(2))
    for row, s, amount in ((a, "ETH", 1.0), (a, "USDC", 400.0), (a, "DAI", 500.0), (b, "BTC", 1.0)):
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", np.array([row]), s, np.array([amount]))
    m.borrow("user", np.array([a]), "USDC", np.array([600.0]))
    m.borrow("user", np.array([a]), "DAI", np.array([300.0]))
    m.borrow("user", np.array([b]), "USDC", np.array([20_000.0]))
    m.accrue(YEAR)
    oracles["DAI"].price = 0.6
    assert np.all(m.borrow_index[[m.idx["USDC"], m.idx["DAI"]]] > 1.0) and m.liq_index[m.idx["USDC"]] > 1.0
    return m, oracles, a, b


def test_settlements_with_accrued_indices_move_tokens_not_scaled_units():
    m, oracles, a, b = accrued_market()
    c, d = account(m, a)
    px = {s: oracles[s].price for s in SYMS}
    held = m.env.ledger.balance(m.id, "USDC")
    # settle out 100 USD: USDC (400·li USD) is the larger stable collateral: 100 USDC leave
    assert m.settle_out(a, 100.0, "to") == pytest.approx(100.0, rel=1e-12)
    assert m.collateral()[a, m.idx["USDC"]] == pytest.approx(c["USDC"] - 100.0, rel=1e-12)
    assert m.env.ledger.balance(m.id, "USDC") == pytest.approx(held - 100.0, rel=1e-12)
    # settle in 200 USD from a payer holding only DAI: USDC is the larger debt but the payer has none, so DAI
    m.env.ledger.mint("DAI", "payer", 1_000.0, "genesis")
    assert m.settle_in(a, 200.0, "payer") == pytest.approx(min(200.0, d["DAI"] * px["DAI"]), rel=1e-12)
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(d["USDC"], rel=1e-12)
    assert m.debt()[a, m.idx["DAI"]] == pytest.approx(max(d["DAI"] - 200.0 / 0.6, 0.0), rel=1e-9, abs=1e-9)
    # a repay changes only its own row and brings the tokens into the market
    debt_b = m.debt()[b, m.idx["USDC"]]
    m.env.ledger.mint("USDC", "payer", 50.0, "genesis")
    held = m.env.ledger.balance(m.id, "USDC")
    m.repay("payer", np.array([a]), "USDC", np.array([50.0]))
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(d["USDC"] - 50.0, rel=1e-12)
    assert m.debt()[b, m.idx["USDC"]] == debt_b
    assert m.env.ledger.balance(m.id, "USDC") == pytest.approx(held + 50.0, rel=1e-12)
    # an account with no equity settles nothing out
    oracles["BTC"].price = 10_000.0  # #1: 10,000 of collateral against > 20,000 of debt
    assert m.settle_out(b, 1_000.0, "to") == 0.0
    # weighted collateral (the HF numerator) and the exposures are in token and USD terms of the accrued book
    c, d = account(m, a)
    px = {s: oracles[s].price for s in SYMS}
    w = sum(c[s] * px[s] * P[s].liquidation_threshold for s in SYMS)
    assert m.weighted_collateral_usd()[a] == pytest.approx(w, rel=1e-12)
    ex = {(e.kind, e.asset): e.amount for e in m.exposures()}
    for k, s in enumerate(SYMS):
        assert ex[("holds", s)] == pytest.approx(m.collateral()[:, k].sum(), rel=1e-12)
    assert ex[("receivable", "USDC")] == pytest.approx(m.debt()[:, m.idx["USDC"]].sum(), rel=1e-12)
    assert ("receivable", "ETH") not in ex and ("receivable", "BTC") not in ex


def test_write_offs_after_controller_closes_go_to_the_deficit_of_the_last_seized_collateral():
    m, oracles, a, b = accrued_market()
    oracles["BTC"].price = 10_000.0  # #1 deeply insolvent: 10,000 of BTC against 20,000·bi of USDC
    oracles["ETH"].price = 1.0  # #0: 1 + 400·li + 500·li·0.6 of collateral against 600·bi + 300·bi·0.6: insolvent
    px = {s: oracles[s].price for s in SYMS}
    # losses by collateral: each insolvent account's shortfall split by its collateral values
    short = {}
    for row in (a, b):
        c, d = account(m, row)
        short[row] = sum(d[s] * px[s] for s in SYMS) - sum(c[s] * px[s] for s in SYMS)
    assert short[a] > 0 and short[b] > 0
    c, _ = account(m, a)
    want = {"BTC": short[b]}
    if short[a] > 0:
        tot = sum(c[s] * px[s] for s in SYMS)
        for s in SYMS:
            if c[s] > 0:
                want[s] = want.get(s, 0.0) + short[a] * c[s] * px[s] / tot
    assert m.losses_by_collateral() == pytest.approx(want, rel=1e-9)
    # the controller closes #1 in full: the BTC caps it, the rest of the debt stays, then is written off
    _, d = account(m, b)
    m.env.ledger.mint("USDC", LIQ, 1e6, "genesis")
    m.controller_close(b, 1.0, LIQ)
    left = d["USDC"] - 10_000.0
    assert m.debt()[b, m.idx["USDC"]] == pytest.approx(left, rel=1e-9)
    n_events = len(m.env.events)
    assert m.write_off(b) == pytest.approx(left, rel=1e-9)
    (ev,) = m.env.events[n_events:]
    assert isinstance(ev, BadDebt)
    assert (ev.block, ev.source, ev.account, ev.asset) == (m.env.clock.block, "lend", b, "USDC")
    assert (ev.amount, ev.amount_usd) == pytest.approx((left, left), rel=1e-9)
    assert m.deficit[m.idx["USDC"]] == pytest.approx(left, rel=1e-9)
    # booked to BTC, the collateral the last close seized, not to the USDC debt asset
    assert m.deficit_usd_by_collateral[m.idx["BTC"]] == pytest.approx(left, rel=1e-9)
    assert m.deficit_usd_by_collateral[m.idx["USDC"]] == 0.0
    # #0 closed the same way: its DAI debt (at 0.6) joins the deficit, booked to its largest collateral (USDC)
    m.controller_close(a, 1.0, LIQ)
    _, rest = account(m, a)
    bad = m.write_off(a)
    assert rest["USDC"] > 0 and rest["DAI"] > 0  # the collateral capped the close: debt is left over
    assert bad == pytest.approx(rest["USDC"] + rest["DAI"] * 0.6, rel=1e-9)
    assert m.deficit[m.idx["USDC"]] == pytest.approx(left + rest["USDC"], rel=1e-9)
    assert m.deficit[m.idx["DAI"]] == pytest.approx(rest["DAI"], rel=1e-9)
    assert m.deficit_usd_by_collateral[m.idx["USDC"]] == pytest.approx(bad, rel=1e-9)
    assert m.write_off(a) == 0.0  # nothing left to write off


def test_two_liquidations_of_an_accrued_account_add_up():
    # one account: 2 ETH against DAI (depegged to 0.6) after a year of interest; v3.3
    m, oracles = make("aave-v3.3")
    a = int(m.add_accounts(1)[0])
    m.env.ledger.mint("ETH", "user", 2.0, "genesis")
    m.supply("user", np.array([a]), "ETH", np.array([2.0]))
    m.borrow("user", np.array([a]), "DAI", np.array([3_000.0]))  # 2,940 USD at 0.98
    m.accrue(YEAR)
    oracles["DAI"].price = 0.6
    oracles["ETH"].price = 1_000.0
    px = {s: oracles[s].price for s in SYMS}
    c, d = account(m, a)
    assert m.borrow_index[m.idx["DAI"]] > 1.0 and m.liq_index[m.idx["ETH"]] >= 1.0
    # collateral 2,000·li USD vs debt 3,000·bi·0.6 = 1,800·bi: HF = 1,700·li/(1,800·bi) < 1; the reference
    # says how much each call moves
    total_usd = 0.0
    for share in (0.3, 10.0):
        c, d = account(m, a)
        repay, to_liq, fee = ref_preview("aave-v3.3", c, d, px, "ETH", "DAI", share * d["DAI"])
        ev = m.liquidate(a, "ETH", "DAI", share * d["DAI"], LIQ)
        assert ev.debt_repaid == pytest.approx(repay, rel=1e-12)
        total_usd += repay * px["DAI"]
        c2, _ = account(m, a)
        assert c2["ETH"] == pytest.approx(c["ETH"] - to_liq - fee, rel=1e-9, abs=1e-12)
    assert m.metrics()["liquidated_debt_usd"] == pytest.approx(total_usd, rel=1e-12)


def test_v33_writes_off_when_the_collateral_is_gone_with_accrued_indices():
    m, oracles = make("aave-v3.3")
    a = int(m.add_accounts(1)[0])
    m.env.ledger.mint("ETH", "user", 1.0, "genesis")
    m.supply("user", np.array([a]), "ETH", np.array([1.0]))
    m.borrow("user", np.array([a]), "DAI", np.array([1_500.0]))
    m.accrue(2 * YEAR)
    oracles["DAI"].price = 0.6
    oracles["ETH"].price = 500.0  # 500·li USD of ETH against 1,500·bi·0.6 = 900·bi USD of DAI
    c, d = account(m, a)
    repay, to_liq, fee = ref_preview("aave-v3.3", c, d, {s: oracles[s].price for s in SYMS}, "ETH", "DAI", 1e12)
    assert to_liq + fee == pytest.approx(c["ETH"], rel=1e-12)  # all the ETH goes
    n = len(m.env.events)
    m.liquidate(a, "ETH", "DAI", 1e12, LIQ)
    left = d["DAI"] - repay
    (ev,) = [e for e in m.env.events[n:] if isinstance(e, BadDebt)]
    assert (ev.block, ev.source, ev.account, ev.asset) == (m.env.clock.block, "lend", a, "DAI")
    assert (ev.amount, ev.amount_usd) == pytest.approx((left, left * 0.6), rel=1e-9)
    assert m.deficit[m.idx["DAI"]] == pytest.approx(left, rel=1e-9) and m.debt()[a].sum() == 0.0
    assert m.deficit_usd_by_collateral[m.idx["ETH"]] == pytest.approx(left * 0.6, rel=1e-9)


def test_a_partial_v33_liquidation_leaving_less_than_one_token_of_collateral_writes_nothing_off():
    # 10 ETH, 12,900 USDC at ETH 1,425 (HF 0.95): repaying 11,900 leaves 1,000 USDC of debt and
    # 10 − 11,900·1.05/1,425 = 1.2316 ETH (1,755 USD); at ETH 2,000 the same leaves 0.73 ETH: collateral below
    # one token is still collateral, so nothing is written off
    m, oracles = make("aave-v3.3")
    a = int(m.add_accounts(1)[0])
    m.env.ledger.mint("ETH", "user", 10.0, "genesis")
    m.supply("user", np.array([a]), "ETH", np.array([10.0]))
    m.borrow("user", np.array([a]), "USDC", np.array([13_500.0]))
    oracles["ETH"].price = 1_600.0  # HF = 16,000·0.85/13,500 = 1.007 -> 1,580: 0.9948 in (0.95, 1)
    oracles["ETH"].price = 1_580.0
    ev = m.liquidate(a, "ETH", "USDC", 1e12, LIQ)  # 50%: 6,750 repaid, 6,750·1.05/1,580 = 4.486 ETH seized
    assert ev.debt_repaid == pytest.approx(6_750.0, rel=1e-12)
    oracles["ETH"].price = 1_100.0  # 5.514 ETH = 6,065 USD vs 6,750 debt: HF < 0.95 -> 100%
    c, d = account(m, a)
    cover = (c["ETH"] - 0.7) * 1_100.0 / 1.05  # leaves 0.7 ETH (770 USD < 1,000: refused as dust)
    with pytest.raises(Revert, match="^MustNotLeaveDust$"):
        m.liquidate(a, "ETH", "USDC", cover, LIQ)
    assert m.deficit.sum() == 0.0 and m.debt()[a].sum() == pytest.approx(6_750.0)


def test_utilisation_is_0_without_supply_and_at_most_1():
    env = Env()
    track_env(env)
    m = LendingMarket("lend", list(ASSETS), {s: FixedPrice(START[s], s) for s in SYMS}, env, "aave-v3.3")
    assert m.utilisation().tolist() == [0.0, 0.0, 0.0, 0.0]  # nothing supplied: 0, not nan
    # a tiny supply, fully borrowed, then years of interest: debt outgrows supply, utilisation stays 1
    env.ledger.mint("USDC", "lenders", 0.5, "genesis")
    m.supply_liquidity("lenders", "USDC", 0.5)
    a = m.add_accounts(1)
    env.ledger.mint("ETH", "user", 1.0, "genesis")
    m.supply("user", a, "ETH", np.array([1.0]))
    m.borrow("user", a, "USDC", np.array([0.25]))
    assert m.utilisation()[m.idx["USDC"]] == pytest.approx(0.5, rel=1e-12)  # 0.25 of 0.5: below 1 USD still counts
    m.borrow("user", a, "USDC", np.array([0.25]))
    m.accrue(5 * YEAR)
    assert m.debt()[0, m.idx["USDC"]] > m.collateral()[:, m.idx["USDC"]].sum() + 0.5
    assert m.utilisation()[m.idx["USDC"]] == 1.0


def test_health_and_metrics_follow_accrual_and_new_accounts():
    m, oracles = make("aave-v3.3")
    rows = open_book(m, [("ETH", 10_000.0, "USDC", 0.9)])
    hf0 = m.health()[rows[0]]
    m.metrics()
    m.accrue(YEAR)
    m.add_accounts(1)  # a state change right after the accrual: the cache must not come back
    bi = m.borrow_index[m.idx["USDC"]]
    li = m.liq_index[m.idx["ETH"]]
    assert m.health()[rows[0]] == pytest.approx(hf0 * li / bi, rel=1e-12)
    met = m.metrics()  # after the book grew by one row
    assert met["debt_usd"] == pytest.approx(float(m.debt()[:, m.idx["USDC"]].sum()), rel=1e-12)
    assert met["bad_debt_usd"] == 0.0


def test_preview_applies_the_2000_usd_test_to_the_collateral_reserve_seized():
    # ETH reserve 1,500 USD (< 2,000), BTC 793 USD; 2,000 USDC of debt; HF = (1,275 + 594.75)/2,000 = 0.935:
    # below 0.95 anyway, so make it 0.97 with more BTC: 0.85·1,500 + 0.75·x = 1,940 -> x = 886.67 USD of BTC
    m, oracles = make("aave-v3.3")
    a = int(m.add_accounts(1)[0])
    for s, amount in (("ETH", 1.0), ("BTC", 886.67 / 50_000)):
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", np.array([a]), s, np.array([amount]))
    m.seed_borrow("user", np.array([a]), "USDC", np.array([2_000.0]))
    oracles["ETH"].price = 1_500.0
    assert m.health()[a] == pytest.approx((1_275 + 886.67 * 0.75) / 2_000, rel=1e-9)
    # seizing ETH: its reserve is under 2,000 USD -> 100% may be covered, and the 1,500 of ETH caps it:
    # 1,500/1.05 = 1,428.57 repaid (with 50% of the total debt it would have been 1,000)
    assert m.preview(a, "ETH", "USDC", 2_000.0).debt_to_repay == pytest.approx(1_500 / 1.05, rel=1e-12)


def test_liquidation_refuses_an_account_out_of_range_and_accepts_a_debt_below_one_token():
    m, oracles = make("aave-v3.3")
    rows = open_book(m, [("ETH", 100_000.0, "BTC", 0.9)])  # 0.9·80,000 = 72,000 USD of BTC = 1.44 BTC
    with pytest.raises(Revert, match="no account #1"):
        m.liquidate(1, "ETH", "BTC", 1.0, LIQ)
    with pytest.raises(Revert, match="unknown asset pair ETH/XYZ"):
        m.liquidate(rows[0], "ETH", "XYZ", 1.0, LIQ)
    oracles["ETH"].price = 1_500.0  # HF = 75,000·0.85/72,000 = 0.885
    ev = m.liquidate(rows[0], "ETH", "BTC", 0.5, LIQ)  # half a BTC: scaled debt units below 1 still count
    assert ev.debt_repaid == pytest.approx(0.5, rel=1e-12)
    m.set_controlled(np.array([0.0]))  # float rows are indices too
    assert m.controlled.tolist() == [True]
