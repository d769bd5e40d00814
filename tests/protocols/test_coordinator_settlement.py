"""The margin coordinator's settlement (`MarginCoordinator._settle`) token by token, hand-computed.

Worlds of two lending markets with two stablecoins each (DAI and USDC, in that order: the tokens are tried in
the paying market's asset order), perp DEXes with a USDC quote, and an options venue; every price is a fixed
oracle. Settlement covers each venue's negative equity (USD at that venue's prices) from the principal's other
venues: at most what the paying row can spare, token by token through the settlement holder, the unused part
refunded to the paying row (protocols/coordinator.py `_settle`).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_coordinator import ETH_L, ETH_P

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.coordinator import CoordinatorParams, MarginCoordinator
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.perps import PerpDex, PerpDexParams

DAI_L = AssetParams("DAI", ltv=0.77, liquidation_threshold=0.80, liquidation_bonus=0.05)
USDC_L = AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048)
DAY = 86_400.0


class Venues:
    """One ledger; ETH at 2000 USD; lending markets and perp DEXes made on demand, with liquidity and a vault."""

    def __init__(self) -> None:
        self.env = Env()
        self.eth, self.usdc, self.dai = FixedPrice(2000.0), FixedPrice(1.0), FixedPrice(1.0)
        led = self.env.ledger
        for t in ("USDC", "DAI"):
            led.mint(t, "lenders", 1e8, "t")
        led.mint("USDC", "vault", 1e8, "t")

    def lending(self, id: str) -> LendingMarket:
        m = LendingMarket(id, [ETH_L, DAI_L, USDC_L], {"ETH": self.eth, "DAI": self.dai, "USDC": self.usdc}, self.env)
        for t in ("USDC", "DAI"):
            m.supply_liquidity("lenders", t, 1e7)
        return m

    def perps(self, id: str) -> PerpDex:
        d = PerpDex(PerpDexParams(markets=[ETH_P]), {"ETH": self.eth}, self.env, id=id)
        d.set_vault(int(d.open_accounts("vault", [1e6], None)[0]))
        return d

    def lend_row(self, m: LendingMarket, coll: dict[str, float], debt: dict[str, float]) -> int:
        a = m.add_accounts(1)
        for t, x in coll.items():
            self.env.ledger.mint(t, "alice", x, "t")
            m.supply("alice", a, t, np.array([x]))
        for t, x in debt.items():
            m.borrow("alice", a, t, np.array([x]))
        return int(a[0])

    def perp_row(self, d: PerpDex, coll: float, size: float = 0.0) -> int:
        self.env.ledger.mint("USDC", "alice", coll, "t")
        if size == 0.0:
            return int(d.open_accounts("alice", [coll], None)[0])
        return int(d.open_accounts(["alice", "vault"], [coll, 1e5], [[size], [-size]])[0])

    def coordinator(self, venues: dict, rows: dict[str, int]) -> tuple[MarginCoordinator, int]:
        c = MarginCoordinator(CoordinatorParams(), venues, self.env)
        return c, c.enroll("alice", rows)


def debt(m: LendingMarket, row: int, token: str) -> float:
    return float(m.debt()[row, m.idx[token]])


def coll(m: LendingMarket, row: int, token: str) -> float:
    return float(m.collateral()[row, m.idx[token]])


def test_a_token_the_receiving_row_does_not_owe_is_skipped_and_the_next_one_pays():
    w = Venues()
    a, b = w.lending("a"), w.lending("b")
    ra = w.lend_row(a, {"ETH": 10.0}, {"USDC": 16_000.0})
    rb = w.lend_row(b, {"DAI": 5000.0, "USDC": 5000.0}, {})
    c, i = w.coordinator({"a": a, "b": b}, {"a": ra, "b": rb})
    w.eth.price = 1500.0  # a: 15,000 − 16,000 = −1,000 USD
    # DAI first: a owes no DAI (accepts 0), so DAI is skipped; USDC pays the 1,000
    assert c._settle(i) == pytest.approx(1000.0)
    assert debt(a, ra, "USDC") == pytest.approx(15_000.0)
    assert (coll(b, rb, "DAI"), coll(b, rb, "USDC")) == (5000.0, pytest.approx(4000.0))
    assert w.env.ledger.balance(c.settlement_holder, "USDC") == 0.0
    w.env.ledger.check_conservation()


def test_a_token_the_paying_row_does_not_hold_is_skipped_and_the_next_one_pays():
    w = Venues()
    a, b = w.lending("a"), w.lending("b")
    ra = w.lend_row(a, {"ETH": 10.0}, {"DAI": 8000.0, "USDC": 8000.0})
    rb = w.lend_row(b, {"USDC": 5000.0}, {})
    c, i = w.coordinator({"a": a, "b": b}, {"a": ra, "b": rb})
    w.eth.price = 1500.0  # a: 15,000 − 16,000 = −1,000 USD
    # DAI first: a owes DAI and b can spare 5,000 USD, but b holds no DAI: nothing arrives; USDC pays the 1,000
    assert c._settle(i) == pytest.approx(1000.0)
    assert (debt(a, ra, "DAI"), debt(a, ra, "USDC")) == (8000.0, pytest.approx(7000.0))
    assert coll(b, rb, "USDC") == pytest.approx(4000.0)
    for t in ("DAI", "USDC"):
        assert w.env.ledger.balance(c.settlement_holder, t) == 0.0
    w.env.ledger.check_conservation()


def test_a_venue_covered_by_the_first_token_does_not_end_the_settlement_of_the_next_venue():
    w = Venues()
    a, b, p = w.lending("a"), w.lending("b"), w.perps("p")
    ra = w.lend_row(a, {"ETH": 10.0}, {"DAI": 16_000.0})
    rb = w.lend_row(b, {"DAI": 5000.0, "USDC": 5000.0}, {})
    rp = w.perp_row(p, 500.0, size=5.0)  # long 5 ETH at 2000
    c, i = w.coordinator({"a": a, "b": b, "p": p}, {"a": ra, "b": rb, "p": rp})
    w.eth.price = 1500.0
    # a: 15,000 − 16,000 = −1,000, paid in DAI from b (DAI is b's first token; USDC is then not needed);
    # p: 500 + 5 x (1500 − 2000) = −2,000, paid in USDC (the DEX's quote) from b. Total 3,000 USD
    assert c._settle(i) == pytest.approx(3000.0)
    assert debt(a, ra, "DAI") == pytest.approx(15_000.0)
    assert (coll(b, rb, "DAI"), coll(b, rb, "USDC")) == (pytest.approx(4000.0), pytest.approx(3000.0))
    assert p.equity()[rp] == pytest.approx(0.0, abs=1e-9)
    w.env.ledger.check_conservation()


def test_the_paying_market_pays_in_the_token_the_receiver_takes_not_its_largest_stablecoin():
    w = Venues()
    b, p = w.lending("b"), w.perps("p")
    rb = w.lend_row(b, {"DAI": 700.0, "USDC": 300.0}, {})
    rp = w.perp_row(p, 500.0, size=-5.0)  # short 5 ETH at 2000
    c, i = w.coordinator({"p": p, "b": b}, {"p": rp, "b": rb})
    w.eth.price = 2200.0  # p: 500 − 5 x 200 = −500
    # the DEX takes USDC only: b's 300 USDC go, its 700 DAI (its largest stablecoin) stay
    assert c._settle(i) == pytest.approx(300.0)
    assert (coll(b, rb, "DAI"), coll(b, rb, "USDC")) == (700.0, pytest.approx(0.0, abs=1e-9))
    assert p.equity()[rp] == pytest.approx(-200.0)
    for t in ("DAI", "USDC"):
        assert w.env.ledger.balance(c.settlement_holder, t) == 0.0
    w.env.ledger.check_conservation()


def test_tokens_left_over_at_a_receiver_that_prices_them_higher_go_back_to_the_paying_row():
    w = Venues()
    a, p = w.lending("a"), w.perps("p")
    ra = w.lend_row(a, {"ETH": 1.0}, {"USDC": 1600.0})
    rp = w.perp_row(p, 5000.0)  # cash only: it can spare all 5,000
    c, i = w.coordinator({"a": a, "p": p}, {"a": ra, "p": rp})
    w.eth.price, w.usdc.price = 31.5, 1.02  # the market's USDC oracle above par; the DEX counts USDC at 1
    # a: 31.5 − 1600 x 1.02 = −1,600.5 USD; the DEX sends 1,600.5 USDC; a repays all its 1,600 USDC of debt
    # (1,632 USD at its price) and 0.5 USDC go back to the DEX row: 5000 − 1600 = 3,400 left there
    assert c._settle(i) == pytest.approx(1632.0)
    assert debt(a, ra, "USDC") == pytest.approx(0.0, abs=1e-9)
    assert p.collateral[rp] == pytest.approx(3400.0)
    assert w.env.ledger.balance(c.settlement_holder, "USDC") == pytest.approx(0.0, abs=1e-9)
    w.env.ledger.check_conservation()


def test_a_deficit_below_one_dollar_is_settled():
    w = Venues()
    a, p = w.lending("a"), w.perps("p")
    ra = w.lend_row(a, {"ETH": 1.0}, {"USDC": 1600.0})
    rp = w.perp_row(p, 5000.0)
    c, i = w.coordinator({"a": a, "p": p}, {"a": ra, "p": rp})
    w.eth.price = 1599.5  # a: 1599.5 − 1600 = −0.5 USD
    assert c._settle(i) == pytest.approx(0.5)
    assert debt(a, ra, "USDC") == pytest.approx(1599.5)
    assert p.collateral[rp] == pytest.approx(4999.5)
    w.env.ledger.check_conservation()


def test_an_options_row_pays_only_what_keeps_it_at_its_own_maintenance_margin():
    from defistress.protocols.options import OptionsVenue, OptionsVenueParams

    w = Venues()
    a = w.lending("a")
    opt = OptionsVenue(OptionsVenueParams(), {"ETH": w.eth, "USDC": w.usdc}, w.env)
    w.env.ledger.mint("USDC", "mm", 1e7, "t")
    opt.set_market_maker(int(opt.open_accounts("mm", [1e7])[0]))
    put = opt.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    ra = w.lend_row(a, {"ETH": 10.0}, {"USDC": 16_000.0})
    w.env.ledger.mint("USDC", "alice", 2900.0, "t")
    ro = int(opt.open_accounts("alice", [2900.0])[0])
    opt.trade("alice", [ro], put, [-4.0], check_margin=False)  # the premium raises its cash
    c, i = w.coordinator({"a": a, "o": opt}, {"a": ra, "o": ro})
    w.eth.price = 1500.0  # a: 15,000 − 16,000 = −1,000 USD
    m = opt.margin([ro])
    eq, mm, cash = float(m.equity[0]), float(m.mm[0]), float(opt.cash[ro])
    spare = eq - mm
    assert 0 < spare < 1000.0 < cash  # its cash could pay all; its margin allows less
    assert c._settle(i) == pytest.approx(spare)
    after = opt.margin([ro])
    assert float(after.equity[0]) == pytest.approx(float(after.mm[0]))  # left at its maintenance margin
    assert debt(a, ra, "USDC") == pytest.approx(16_000.0 - spare)
    w.env.ledger.check_conservation()


def test_a_deficit_is_paid_by_the_next_venue_after_one_that_can_spare_only_part():
    w = Venues()
    a, p1, p2 = w.lending("a"), w.perps("p1"), w.perps("p2")
    ra = w.lend_row(a, {"ETH": 10.0}, {"USDC": 16_000.0})
    r1, r2 = w.perp_row(p1, 600.0), w.perp_row(p2, 5000.0)  # cash only: they can spare all of it
    c, i = w.coordinator({"a": a, "p1": p1, "p2": p2}, {"a": ra, "p1": r1, "p2": r2})
    w.eth.price = 1500.0  # a: 15,000 − 16,000 = −1,000
    # 600 from p1 (first in order), the remaining 400 from p2
    assert c._settle(i) == pytest.approx(1000.0)
    assert p1.collateral[r1] == pytest.approx(0.0, abs=1e-9)
    assert p2.collateral[r2] == pytest.approx(4600.0)
    assert debt(a, ra, "USDC") == pytest.approx(15_000.0)
    w.env.ledger.check_conservation()


def test_tokens_left_over_go_back_to_a_paying_lending_row():
    w = Venues()
    b = w.lending("b")  # pays: USDC at 1 USD
    usdc_a = FixedPrice(1.0)  # the receiving market's own USDC oracle
    a = LendingMarket("a", [ETH_L, DAI_L, USDC_L], {"ETH": w.eth, "DAI": w.dai, "USDC": usdc_a}, w.env)
    a.supply_liquidity("lenders", "USDC", 1e7)
    ra = w.lend_row(a, {"ETH": 1.0}, {"USDC": 1600.0})
    rb = w.lend_row(b, {"USDC": 5000.0}, {})
    c, i = w.coordinator({"a": a, "b": b}, {"a": ra, "b": rb})
    w.eth.price, usdc_a.price = 31.5, 1.02
    # as test_tokens_left_over_at_a_receiver_that_prices_them_higher_go_back_to_the_paying_row, with a lending
    # row paying: 1,600.5 USDC out of b, 1,600 repay a's debt (1,632 USD at a's price), 0.5 supplied back to b
    assert c._settle(i) == pytest.approx(1632.0)
    assert debt(a, ra, "USDC") == pytest.approx(0.0, abs=1e-9)
    assert coll(b, rb, "USDC") == pytest.approx(3400.0)
    assert w.env.ledger.balance(c.settlement_holder, "USDC") == pytest.approx(0.0, abs=1e-9)
    w.env.ledger.check_conservation()
