"""`Cdp.health` and `Cdp.metrics` reuse their per-vault figures while the vaults (ink, art), the rate, the oracle
price and the liquidation ratio are unchanged: after each kind of change they must equal, bit for bit, the
formulas computed afresh (the code before the reuse, kept here as the reference), and a caller writing into a
returned health array must not change what the next call returns."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.cdp import PAR, Cdp, CdpParams
from defistress.protocols.clip import ClipParams


def make(price=200.0):
    env = Env()
    env.ledger.mint("ETH", "population", 1e6, "genesis")
    env.ledger.mint("DAI", "population", 0.0, "genesis")
    oracle = FixedPrice(price)
    params = CdpParams(dust=100.0, hole=1e6, Hole=1e7, stability_fee_per_year=0.05, clip=ClipParams(tip=3.0))
    return Cdp(params, oracle, env, "maker"), oracle, env


def ref_health(cdp: Cdp) -> np.ndarray:
    debt = cdp.debt()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(debt > 0, cdp.ink * cdp.spot / debt, np.inf)


def ref_metrics(cdp: Cdp) -> dict:
    """`Cdp.metrics` before the reuse of the per-vault sums."""
    price = cdp.price()
    a = cdp.auctions
    act = a.active[: a.kicks]
    lots = float(a.lot[: a.kicks][act].sum())
    running_sin = cdp.sin[: a.kicks][act]
    debt = cdp.debt()
    vault_short = np.maximum(debt - cdp.ink * price, 0.0).sum()
    auction_short = np.maximum(running_sin - a.lot[: a.kicks][act] * price, 0.0).sum()
    return {
        "collateral_usd": (float(cdp.ink.sum()) + lots) * price,
        "vault_collateral_usd": float(cdp.ink.sum()) * price,
        "auction_collateral_usd": lots * price,
        "debt_usd": float(debt.sum()) * PAR,
        "bad_debt_usd": cdp.woe * PAR,
        "surplus_usd": cdp.surplus * PAR,
        "debt_on_auction_usd": float(running_sin.sum()) * PAR,
        "tab_on_auction_usd": float(a.tab[: a.kicks][act].sum()) * PAR,
        "auctions_active": int(act.sum()),
        "auctions_kicked": int(a.kicks),
        "auctions_settled": cdp.settled,
        "zero_bid_auctions": cdp.zero_bids,
        "accounts_unhealthy": int(np.sum(cdp.ink * cdp.spot < cdp.art * cdp.rate)),
        "undercollateralised_debt_usd": float(vault_short + auction_short) * PAR,
        "liquidated_debt_usd": cdp.liquidated_debt * PAR,
        "incentives_paid_usd": cdp.incentives_paid * PAR,
        "stablecoin_outstanding": cdp.stablecoin_outstanding(),
        "rate": cdp.rate,
    }


def as_bits(d: dict) -> dict:
    return {k: (type(v).__name__, np.array(v, dtype=float).tobytes()) for k, v in d.items()}


def check(cdp: Cdp) -> None:
    """Twice each (a fresh computation, then the reused one), against the reference."""
    for _ in range(2):
        h = cdp.health()
        assert h.tobytes() == ref_health(cdp).tobytes()
        assert as_bits(cdp.metrics()) == as_bits(ref_metrics(cdp))


def test_no_vaults():
    cdp, _, _ = make()
    check(cdp)
    assert cdp.health().size == 0


def test_every_change_of_what_the_figures_read_is_seen():
    cdp, oracle, env = make()
    cdp.open_vaults(np.array([10.0, 5.0, 8.0, 3.0]), np.array([1000.0, 600.0, 500.0, 0.0]))
    check(cdp)
    oracle.price = 150.0  # the oracle
    check(cdp)
    cdp.deposit(np.array([1]), np.array([0.5]))  # ink
    check(cdp)
    cdp.repay(np.array([2]), np.array([100.0]))  # art
    check(cdp)
    cdp.accrue(86400.0)  # the rate
    check(cdp)
    cdp.p = cdp.p.model_copy(update={"liquidation_ratio": 1.3})  # governance: the ratio
    check(cdp)
    oracle.price = 90.0
    cdp.bark(0, "keeper")  # ink, art and an auction
    check(cdp)
    cdp.ink[3] = 4.0  # a write straight into the arrays
    check(cdp)
    cdp.art[3] = 200.0
    check(cdp)
    cdp.rate = 1.1  # a rate set outside accrue
    check(cdp)
    cdp.ink = cdp.ink.astype(np.float32)  # another dtype with other bytes
    check(cdp)


@pytest.mark.parametrize("before, after", [(0.0, -0.0), (-0.0, 0.0), (np.nan, 150.0), (150.0, np.nan), (1.0, np.inf)])
def test_a_price_change_that_compares_equal_or_unordered_is_seen(before, after):
    cdp, oracle, _ = make()
    cdp.open_vaults(np.array([10.0, 0.0]), np.array([1000.0, 0.0]))
    oracle.price = before
    with np.errstate(invalid="ignore"):
        check(cdp)
        oracle.price = after
        check(cdp)


def test_rate_change_to_negative_zero_is_seen():
    cdp, _, _ = make()
    cdp.open_vaults(np.array([10.0]), np.array([1000.0]))
    cdp.rate = 0.0
    check(cdp)
    cdp.rate = -0.0
    check(cdp)


def test_writing_into_a_returned_health_array_changes_nothing_kept():
    cdp, _, _ = make()
    cdp.open_vaults(np.array([10.0, 5.0]), np.array([1000.0, 600.0]))
    first = cdp.health()
    want = first.copy()
    first[:] = -1.0
    assert cdp.health().tobytes() == want.tobytes()
    assert cdp.health() is not cdp.health()
