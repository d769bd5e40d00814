"""The CDP's user-side rules at their boundaries and the records they leave (Maker dss src/vat.sol frob).

Common case: ETH at 200 DAI, mat 1.5, dust 100 DAI unless said otherwise; the CDP id is "maker".
"""

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.clip import ClipParams
from defistress.protocols.events import BadDebt, UserAction


def make(price=200.0, eth=1_000.0, **kw):
    env = Env()
    env.ledger.mint("ETH", "population", eth, "genesis")
    base = dict(dust=100.0, hole=1e6, Hole=1e7, clip=ClipParams(tip=0.0, chip=0.0))
    base.update(kw)
    return Cdp(CdpParams(**base), FixedPrice(price), env, "maker"), env


def test_repay_divides_by_the_rate_when_reducing_normalised_debt():
    cdp, env = make(stability_fee_per_year=0.05)
    cdp.open_vaults([10.0], [1000.0])
    cdp.accrue(365 * 86400.0)  # rate 1.05: debt 1050
    paid = cdp.repay([0], [525.0])
    # art = 1000 − 525/1.05 = 500; debt = 500·1.05 = 525
    assert paid[0] == 525.0
    assert cdp.art[0] == pytest.approx(500.0, rel=1e-12)
    assert cdp.debt()[0] == pytest.approx(525.0, rel=1e-12)
    assert env.ledger.burn_reasons[("DAI", "cdp_repay")] == 525.0


def test_repay_that_would_leave_dust_from_a_vault_just_above_dust_repays_the_excess_only():
    cdp, env = make()
    cdp.open_vaults([10.0], [100.5])
    # 50 would leave 50.5 < dust 100: cut to 100.5 − 100 = 0.5
    assert cdp.repay([0], [50.0])[0] == pytest.approx(0.5)
    assert cdp.debt()[0] == pytest.approx(100.0)
    assert env.ledger.balance("population", "DAI") == pytest.approx(100.0)


def test_full_repayment_clears_normalised_debt_exactly_at_any_rate():
    # x·rate/rate differs from x by one rounding in about 1 vault in 300: 2,000 vaults make that certain
    n = 2_000
    cdp, env = make(stability_fee_per_year=0.07, eth=1e6)
    debts = np.random.default_rng(0).uniform(100.0, 1e4, n)
    cdp.open_vaults(np.full(n, 500.0), debts)
    cdp.accrue(365 * 86400.0)  # rate 1.07
    env.ledger.mint("DAI", "population", 1e6, "external_inflow")
    paid = cdp.repay(np.arange(n), np.full(n, 1e9))
    np.testing.assert_allclose(paid, debts * cdp.rate, rtol=1e-12)
    assert np.all(cdp.art == 0.0)  # no residue of rounding left as debt
    assert np.all(np.isinf(cdp.health()))


def test_repay_records_the_burn_the_action_and_the_running_totals():
    cdp, env = make()
    cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])
    assert cdp.stablecoin_outstanding() == 2000.0
    cdp.repay([0, 1], [300.0, 200.0])
    ev = env.events[-1]
    assert ev == UserAction(env.clock.block, "maker", "repay", 2, "DAI", 500.0)
    cdp.repay([0], [100.0])
    # minted 2000, burned 300 + 200 + 100
    assert cdp.stablecoin_outstanding() == 1400.0
    assert env.ledger.burn_reasons[("DAI", "cdp_repay")] == 600.0
    assert env.ledger.total("DAI") == 1400.0


def test_repay_of_nothing_burns_nothing_and_below_one_dai_burns_it():
    cdp, env = make(dust=0.0)
    cdp.open_vaults([10.0], [100.0])
    cdp.repay([0], [0.0])
    assert ("DAI", "cdp_repay") not in env.ledger.burn_reasons
    cdp.repay([0], [0.5])
    assert env.ledger.burn_reasons[("DAI", "cdp_repay")] == 0.5
    assert cdp.debt()[0] == 99.5 and cdp.stablecoin_outstanding() == 99.5


def test_repay_beyond_what_the_population_holds_reverts_naming_the_amount():
    cdp, env = make()
    cdp.open_vaults([10.0], [1000.0])
    env.ledger.transfer("DAI", "population", "elsewhere", 500.0)
    with pytest.raises(Revert, match="^maker: population holds too little DAI to repay 600$"):
        cdp.repay([0], [600.0])
    assert cdp.debt()[0] == 1000.0


def test_batches_are_checked_for_index_range_and_amounts():
    cdp, _ = make()
    cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])
    for bad in ([2], [-1], [0, 2]):
        with pytest.raises(Revert, match=r"^maker: vault index out of range 0\.\.1$"):
            cdp.deposit(bad, 1.0)
    for amounts in ([-1.0], [np.nan], [np.inf]):
        with pytest.raises(Revert, match="^maker: amounts must be finite and non-negative$"):
            cdp.deposit([0], amounts)
    cdp.deposit([0], [0.0])  # zero is allowed
    cdp.deposit([0], [0.5])
    cdp.deposit(np.array([1.0]), [2.0])  # integer-valued float indices are vault numbers
    np.testing.assert_array_equal(cdp.ink, [10.5, 12.0])


def test_deposit_records_the_action_and_names_a_missing_balance():
    cdp, env = make(eth=25.0)
    cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])
    ev = cdp.deposit([0, 1], [2.0, 3.0])
    assert ev == UserAction(env.clock.block, "maker", "deposit", 2, "ETH", 5.0)
    assert env.events[-1] is ev
    with pytest.raises(Revert, match="^maker: cannot deposit: population holds"):
        cdp.deposit([0], [1.0])  # 0 ETH left


def test_health_is_infinite_without_debt_and_finite_for_any_debt():
    cdp, _ = make(dust=0.0)
    cdp.open_vaults([0.0, 1.0], [0.0, 0.5])
    # vault 1: 1·200/1.5 / 0.5 = 266.67
    h = cdp.health()
    assert h[0] == np.inf
    assert h[1] == pytest.approx(200.0 / 1.5 / 0.5, rel=1e-12)


def test_exposures_list_receivable_and_owed_debt_only_when_there_is_some():
    cdp, _ = make(dust=0.0)
    cdp.open_vaults([1.0], [0.0])
    kinds = {(e.kind, e.asset) for e in cdp.exposures()}
    assert kinds == {("holds", "ETH"), ("issues", "DAI")}
    cdp.open_vaults([1.0], [0.5])
    found = {(e.kind, e.asset): e.amount for e in cdp.exposures()}
    assert found[("receivable", "DAI")] == 0.5
    cdp.woe = 0.25  # system debt, as left by an auction that sold out short
    found = {(e.kind, e.asset): e.amount for e in cdp.exposures()}
    assert found[("owes", "DAI")] == 0.25


def test_a_vault_becomes_liquidatable_through_the_stability_fee_alone():
    cdp, _ = make(stability_fee_per_year=0.05)
    cdp.open_vaults([10.0], [1300.0])  # 10·200/1.5 = 1333.33 ≥ 1300: safe
    assert list(cdp.liquidatable()) == []
    assert cdp.metrics()["accounts_unhealthy"] == 0
    cdp.accrue(365 * 86400.0)  # debt 1300·1.05 = 1365 > 1333.33
    assert list(cdp.liquidatable()) == [0]
    assert cdp.metrics()["accounts_unhealthy"] == 1  # counted at art·rate, not art/rate = 1238


def test_metrics_report_the_book_by_hand():
    # mat 1.25: spot = price/1.25; chop 1.25; tip 5 DAI per kick; a 50 DAI surplus buffer
    cdp, env = make(
        liquidation_ratio=1.25, chop=1.25, surplus_buffer=50.0, clip=ClipParams(tip=5.0, chip=0.0, buf=1.25)
    )
    cdp.open_vaults([10.0, 10.0, 10.0], [1600.0, 1000.0, 1200.0])
    cdp.oracle.price = 150.0  # spot 120: vault 0 (1200 < 1600) unsafe; vault 2 at 1200 = 1200 exactly safe
    assert list(cdp.liquidatable()) == [0]
    cdp.bark(0, "kicker")  # whole vault: lot 10 ETH, due 1600, tab 1600·1.25 = 2000
    expected = {
        "collateral_usd": 30 * 150.0,
        "vault_collateral_usd": 20 * 150.0,
        "auction_collateral_usd": 10 * 150.0,
        "debt_usd": 2200.0,
        "bad_debt_usd": 0.0,  # the 5 DAI tip is system debt, healed from the 50 buffer
        "surplus_usd": 45.0,
        "debt_on_auction_usd": 1600.0,
        "tab_on_auction_usd": 2000.0,
        "auctions_active": 1,
        "auctions_kicked": 1,
        "auctions_settled": 0,
        "zero_bid_auctions": 0,
        "accounts_unhealthy": 0,
        "undercollateralised_debt_usd": 100.0,  # auction: 1600 − 10·150
        "liquidated_debt_usd": 1600.0,
        "incentives_paid_usd": 5.0,
        "stablecoin_outstanding": 3805.0,  # 3800 drawn + 5 tip
        "rate": 1.0,
    }
    assert cdp.metrics() == pytest.approx(expected, rel=1e-12)
    cdp.oracle.price = 110.0  # spot 88: vaults 1 (880 < 1000) and 2 (880 < 1200) unsafe
    m = cdp.metrics()
    assert m["accounts_unhealthy"] == 2
    # vault 2: 1200 − 1100 = 100; vault 1 is covered (1000 < 1100); auction: 1600 − 1100 = 500
    assert m["undercollateralised_debt_usd"] == pytest.approx(600.0, rel=1e-12)
    assert m["collateral_usd"] == pytest.approx(3300.0) and m["auction_collateral_usd"] == pytest.approx(1100.0)
    cdp.oracle.price = 170.0  # every vault and the auction's lot (1700 > 1600) cover their debt
    assert cdp.metrics()["undercollateralised_debt_usd"] == 0.0


def test_accrual_ignores_non_positive_time_and_accrues_any_positive_time_and_any_fee():
    SECONDS_PER_YEAR = 365 * 86400.0  # dss jug: per-second duty, 365-day years
    cdp, _ = make(stability_fee_per_year=0.05)
    cdp.open_vaults([10.0], [1000.0])
    cdp.accrue(-60.0)
    cdp.accrue(0.0)
    assert cdp.rate == 1.0 and cdp.surplus == 0.0
    cdp.accrue(1.0)  # one second: rate = 1.05^(1/year)
    assert cdp.rate == pytest.approx(1.05 ** (1.0 / SECONDS_PER_YEAR), rel=1e-15) and cdp.rate > 1.0
    cdp, _ = make(stability_fee_per_year=1.0)  # 100 % a year: half a year multiplies debt by sqrt(2)
    cdp.open_vaults([10.0], [1000.0])
    cdp.accrue(SECONDS_PER_YEAR / 2)
    assert cdp.debt()[0] == pytest.approx(1000.0 * 2**0.5, rel=1e-12)
    assert cdp.surplus == pytest.approx(1000.0 * (2**0.5 - 1.0), rel=1e-9)


def test_liquidations_2_ignore_lump_and_free_the_hole_room_when_an_auction_ends():
    cdp, env = make(lump=50.0)  # a Cat v1 setting: the Dog of Liquidations 2.0 does not use it
    env.ledger.mint("DAI", "k", 5000.0, "genesis")
    cdp.open_vaults([10.0], [1000.0])
    cdp.oracle.price = 140.0
    cdp.bark(0, "kicker")
    assert cdp.dirt == pytest.approx(1130.0)  # tab = 1000·1.13
    cdp.clipper.take(0, 10.0, 1e9, "k")
    assert cdp.dirt == 0.0  # dss dog.digs


def test_bark_needs_an_existing_strictly_unsafe_vault_and_counts_unsafe_at_the_accrued_rate():
    cdp, env = make(liquidation_ratio=1.25, stability_fee_per_year=0.05)
    cdp.open_vaults([10.0, 10.0], [1600.0, 1000.0])
    cdp.oracle.price = 160.0  # spot 128: vault 0 at 1280 < 1600 unsafe; vault 1 safe
    for bad in (2, -1):
        with pytest.raises(Revert, match=rf"^maker: no vault #{bad}$"):
            cdp.bark(bad, "kicker")
    cdp.oracle.price = 200.0  # spot 160: vault 0 at 1600 = 1600 exactly: not unsafe (dss: ink·spot < art·rate)
    with pytest.raises(Revert, match="^Dog/not-unsafe$"):
        cdp.bark(0, "kicker")
    cdp.accrue(86400.0)  # one day of fee: debt 1600·1.05^(1/365) > 1600
    ev = cdp.bark(0, "kicker")
    assert ev.tab == pytest.approx(1600.0 * 1.05 ** (1 / 365) * 1.13, rel=1e-12)
    assert cdp.ink[0] == 0.0 and cdp.art[0] == 0.0


def test_liquidated_debt_and_incentives_add_up_over_several_barks():
    cdp, env = make(surplus_buffer=1000.0, clip=ClipParams(tip=5.0, chip=0.0))
    cdp.open_vaults([10.0, 10.0], [1000.0, 1200.0])
    cdp.oracle.price = 140.0
    cdp.bark(0, "k1")
    cdp.bark(1, "k2")
    m = cdp.metrics()
    assert m["liquidated_debt_usd"] == pytest.approx(2200.0)
    assert m["incentives_paid_usd"] == 10.0 and m["surplus_usd"] == 990.0
    cdp2, _ = make(clip=ClipParams(tip=5.0, chip=0.0))  # no buffer: the tips are system debt
    cdp2.open_vaults([10.0, 10.0], [1000.0, 1200.0])
    cdp2.oracle.price = 140.0
    cdp2.bark(0, "k1")
    cdp2.bark(1, "k2")
    assert cdp2.metrics()["bad_debt_usd"] == 10.0


def test_governance_pause_stops_new_liquidations_with_the_auction_houses_revert():
    # dss clip.sol isStopped: require(stopped < level, "Clipper/stopped-incorrect"); flip.sol kick is `auth`
    # ("Flipper/not-authorized") once FlipperMom denies the Cat. A pause of another asset changes nothing.
    for mech, reason, unsafe, extra in (
        ("clip", "Clipper/stopped-incorrect", "Dog/not-unsafe", {}),
        ("flip", "Flipper/not-authorized", "Cat/not-unsafe", {"lump": 50.0}),
    ):
        cdp, env = make(mechanism=mech, **extra)
        cdp.open_vaults([10.0, 10.0], [1000.0, 100.0])
        cdp.oracle.price = 140.0  # spot 93.3: vault 0 (933 < 1000) unsafe, vault 1 (933 > 100) safe
        cdp.gates.set("paused", True, "WBTC")
        assert list(cdp.preview_bark(np.array([0, 1]))["reason"]) == ["", unsafe]
        cdp.gates.set("paused", True, "ETH")
        pv = cdp.preview_bark(np.array([0, 1]))
        assert list(pv["reason"]) == [reason, reason] and list(pv["ok"]) == [False, False]
        with pytest.raises(Revert, match=f"^{reason}$"):
            cdp.bark(0, "kicker")
        assert cdp.ink[0] == 10.0 and cdp.auctions.kicks == 0
        cdp.gates.set("paused", False, "ETH")
        assert cdp.bark(0, "kicker").auction == 0


def test_a_frozen_or_paused_ilk_opens_vaults_without_debt_but_draws_none():
    # a frozen ilk is a debt ceiling of zero (dss vat.frob 'Vat/ceiling-exceeded'); locking collateral is fine
    for state in ("frozen", "paused"):
        cdp, env = make()
        cdp.gates.set(state, True, "ETH")
        with pytest.raises(Revert, match=rf"^maker: Vat/ceiling-exceeded \(ETH {state} by governance\)$"):
            cdp.open_vaults([10.0], [1000.0])
        assert cdp.n_accounts == 0 and env.ledger.balance("population", "DAI") == 0.0
        assert list(cdp.open_vaults([10.0], [0.0])) == [0]
        assert cdp.ink[0] == 10.0 and cdp.art[0] == 0.0
        cdp.gates.set(state, False, "ETH")
        assert list(cdp.open_vaults([10.0], [1000.0])) == [1]


def test_a_repayment_reduces_only_the_vaults_it_names():
    cdp, _ = make()
    cdp.open_vaults([10.0, 10.0, 10.0], [1000.0, 1000.0, 1000.0])
    cdp.repay([1], [300.0])  # rate 1: art of vault 1 = 1000 − 300 = 700; the others keep 1000
    np.testing.assert_array_equal(cdp.art, [1000.0, 700.0, 1000.0])


def test_open_vaults_refuses_bad_batches_naming_the_rule():
    cdp, env = make()
    with pytest.raises(ValueError, match=r"^maker: ink and debt must have the same shape, got \(2,\) and \(1,\)$"):
        cdp.open_vaults([10.0, 10.0], [1000.0])
    bad = "^maker: ink and debt must be finite and non-negative$"
    for ink, debt in (
        ([-1.0], [0.0]),
        ([10.0], [-5.0]),
        ([np.nan], [0.0]),
        ([10.0], [np.inf]),
        ([10.0], [None]),
        ([None], [0.0]),
    ):
        with pytest.raises(Revert, match=bad):
            cdp.open_vaults(ink, debt)
    assert cdp.n_accounts == 0 and env.ledger.balance("population", "ETH") == 1_000.0


def test_debt_ceilings_admit_a_total_equal_to_the_ceiling_and_dust_applies_below_one_dai():
    # dss vat.frob: require(Art·rate <= line && debt <= Line, "Vat/ceiling-exceeded"); dust: debt 0 or >= dust
    for kw in ({"line": 2000.0}, {"Line": 2000.0}):
        cdp, env = make(**kw)
        cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])  # total 2000 = the ceiling: allowed
        with pytest.raises(Revert, match="^Vat/ceiling-exceeded$"):
            cdp.open_vaults([10.0], [100.0])  # 2100 > 2000
        assert cdp.total_debt() == 2000.0
    cdp, _ = make()
    with pytest.raises(Revert, match="^Vat/dust$"):
        cdp.open_vaults([10.0], [0.5])  # 0 < 0.5 < dust 100
    cdp, _ = make(dust=0.0)
    cdp.gates.set("frozen", True, "ETH")
    with pytest.raises(Revert, match=r"^maker: Vat/ceiling-exceeded \(ETH frozen by governance\)$"):
        cdp.open_vaults([10.0], [0.5])  # any new debt, even below 1 DAI, is refused while frozen


def test_opening_vaults_mints_the_draw_by_reason_and_needs_the_collateral():
    cdp, env = make(eth=15.0)
    cdp.open_vaults([10.0], [1000.0])
    assert env.ledger.mint_reasons[("DAI", "cdp_draw")] == 1000.0
    # 5 ETH left: locking 10 more fails in the ledger, and the revert says which holder and token
    with pytest.raises(Revert, match="^maker: cannot lock collateral: population holds 5 ETH, cannot send 10$"):
        cdp.open_vaults([10.0], [0.0])
    assert cdp.n_accounts == 1


def test_debt_opened_after_accrual_is_normalised_by_the_rate_and_a_debt_free_vault_mints_nothing():
    cdp, env = make(stability_fee_per_year=0.05)
    cdp.open_vaults([10.0], [0.0])
    assert ("DAI", "cdp_draw") not in env.ledger.mint_reasons  # no zero-amount mint on the books
    cdp.accrue(365 * 86400.0)  # rate 1.05
    cdp.open_vaults([10.0], [1050.0])  # dss vat.frob: art = debt / rate = 1050 / 1.05 = 1000
    assert cdp.art[1] == pytest.approx(1000.0, rel=1e-12) and cdp.debt()[1] == pytest.approx(1050.0, rel=1e-12)


def test_preview_of_no_vaults_is_empty():
    cdp, _ = make()
    cdp.open_vaults([10.0], [1000.0])
    pv = cdp.preview_bark([])  # a keeper with no candidates this block
    assert all(len(a) == 0 for a in pv.values()) and set(pv) >= {"ok", "reason", "tab"}


def _partial(hole):
    """A vault of 10 ETH, art 500, at rate 1.25 (25 %/yr for one year) and chop 1.25 (both exact in binary), at
    ETH 90 (spot 60: 600 < 625 unsafe), under a per-ilk Dog room `hole`."""
    cdp, _ = make(chop=1.25, stability_fee_per_year=0.25, hole=hole)
    cdp.open_vaults([10.0], [500.0])
    cdp.accrue(365 * 86400.0)
    assert cdp.rate == 1.25
    cdp.oracle.price = 90.0
    return {k: a[0] for k, a in cdp.preview_bark([0]).items()}


def test_dog_partial_liquidation_boundaries_at_exactly_dust():
    # Maker dss src/dog.sol bark: dart = min(art, room/rate/chop); if art > dart: the leftover (art − dart)·rate
    # < dust liquidates the whole vault, else the auction dart·rate must be >= dust
    pv = _partial(656.25)  # dart = 656.25/1.25/1.25 = 420: leftover 80·1.25 = 100 = dust, not below: partial
    assert (pv["ok"], pv["dart"], pv["due"], pv["tab"]) == (True, 420.0, 525.0, 656.25)
    pv = _partial(125.0)  # dart = 125/1.25/1.25 = 80: auction 80·1.25 = 100 = dust, not below: allowed
    assert (pv["ok"], pv["dart"], pv["due"], pv["tab"]) == (True, 80.0, 100.0, 125.0)
    pv = _partial(124.0)  # dart = 79.36: auction 99.2 < dust
    assert pv["reason"] == "Dog/dusty-auction-from-partial-liquidation"
    pv = _partial(656.0)  # dart = 419.84: leftover 80.16·1.25 = 100.2 >= dust: partial
    assert pv["dart"] == pytest.approx(419.84, rel=1e-12)
    pv = _partial(657.0)  # dart = 420.48: leftover 79.52·1.25 = 99.4 < dust: the whole vault
    assert (pv["ok"], pv["dart"], pv["due"]) == (True, 500.0, 625.0)


def test_a_vault_left_below_a_raised_dust_is_liquidated_whole():
    # governance raises dust above a vault's debt (dss vat.file dust); dss dog.bark checks a dusty auction only
    # for a partial liquidation, so the whole vault still goes to auction
    cdp, _ = make()
    cdp.open_vaults([10.0], [500.0])
    cdp.p = cdp.p.model_copy(update={"dust": 1000.0})
    cdp.oracle.price = 70.0  # spot 46.67: 466.7 < 500 unsafe
    pv = {k: a[0] for k, a in cdp.preview_bark([0]).items()}
    assert (pv["ok"], pv["dart"], pv["dink"], pv["due"]) == (True, 500.0, 10.0, 500.0)


def test_preview_seizes_collateral_in_proportion_for_any_debt_and_nothing_from_a_debt_free_vault():
    cdp, _ = make(dust=0.0)
    cdp.open_vaults([10.0, 0.01, 10.0], [1000.0, 0.5, 0.0])
    cdp.oracle.price = 70.0  # spot 46.67: 466.7 < 1000 and 0.467 < 0.5 unsafe; the debt-free vault is safe
    pv = cdp.preview_bark([0, 1, 2])
    # whole vaults (room is ample): dink = ink·dart/art = ink; a vault without debt seizes 0
    assert pv["dink"].dtype == float and list(pv["dink"]) == [10.0, 0.01, 0.0]
    assert list(pv["reason"]) == ["", "", "Dog/not-unsafe"]


def test_the_dog_room_is_what_the_global_hole_leaves_after_running_auctions_and_any_room_above_zero_is_used():
    # Maker dss src/dog.sol bark: require(Hole > Dirt && hole > dirt); room = min(Hole − Dirt, hole − dirt);
    # dart = min(art, room/rate/chop). Vaults of 10 ETH owing 1000 at ETH 140 (spot 93.3: unsafe), chop 1.25.
    cdp, _ = make(chop=1.25, Hole=2000.0)
    cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])
    cdp.oracle.price = 140.0
    assert cdp.bark(0, "k").tab == 1250.0  # room 2000: dart = min(1000, 2000/1.25) = 1000, whole; Dirt 1250
    pv = {k: a[0] for k, a in cdp.preview_bark([1]).items()}
    # room = 2000 − 1250 = 750: dart = 750/1.25 = 600, leftover 400 ≥ dust 100: a partial auction of tab 750
    assert (pv["ok"], pv["dart"], pv["tab"], pv["dink"]) == (True, 600.0, 750.0, 6.0)
    cdp, _ = make(dust=0.0, chop=1.25, hole=0.5)  # half a DAI of room is room
    cdp.open_vaults([10.0], [1000.0])
    cdp.oracle.price = 140.0
    pv = {k: a[0] for k, a in cdp.preview_bark([0]).items()}
    # dart = 0.5/1/1.25 = 0.4; dink = 10·0.4/1000 = 0.004
    assert (pv["ok"], pv["dart"], pv["tab"]) == (True, 0.4, 0.5) and pv["dink"] == pytest.approx(0.004, rel=1e-15)


def test_a_vault_without_collateral_is_a_null_auction_and_cat_v1_takes_debt_in_proportion_to_any_lot():
    # dss dog.sol bark / cat.sol bite: require(dink > 0, "Dog/null-auction" / "Cat/null-auction"). No user path
    # here leaves debt without collateral, so the state is set directly: ink 0, debt 1000 (unsafe at any price).
    for mech, extra, reason in (("clip", {}, "Dog/null-auction"), ("flip", {"lump": 50.0}, "Cat/null-auction")):
        cdp, _ = make(mechanism=mech, dust=0.0, **extra)
        cdp.open_vaults([10.0, 0.5], [1000.0, 60.0])
        cdp.ink[0] = 0.0
        cdp.oracle.price = 140.0  # spot 93.3: vault 1 at 46.7 < 60 unsafe
        pv = cdp.preview_bark([0, 1])
        assert list(pv["reason"]) == [reason, ""] and pv["dink"][0] == 0.0
        # vault 1: dink = min(0.5, lump 50) = 0.5 (Cat v1) or the whole 0.5 (Dog); dart = 0.5·60/0.5 = 60
        assert pv["dink"][1] == 0.5 and pv["dart"][1] == 60.0 and pv["due"][1] == 60.0
        if mech == "flip":
            assert pv["dart"][0] == 0.0  # Cat v1: dart = min(art, dink·art/ink), 0 without collateral


def _cat2(box, dust=100.0):
    """Cat v2 (Liquidations 1.2): two vaults of 10 ETH owing 1000 at ETH 140, chop 1.25, dunk 1250; vault 0
    bitten whole (dart = min(1000, min(1250, box)/1.25)), so the litter is its tab."""
    cdp, _ = make(mechanism="flip", dust=dust, chop=1.25, dunk=1250.0, box=box)
    cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])
    cdp.oracle.price = 140.0
    cdp.bite(0, "k")
    return {k: a[0] for k, a in cdp.preview_bark([1]).items()}


def test_cat_v2_room_must_be_at_least_dust_and_a_full_litterbox_stops_bites():
    # Maker dss src/cat.sol (Liq 1.2) bite: room = box − litter; require(litter < box && room >= dust,
    # "Cat/liquidation-limit-hit"); dart = min(art, min(dunk, room)/rate/chop)
    pv = _cat2(1350.0)  # litter 1250: room 100 = dust, allowed: dart = 100/1.25 = 80, tab 100
    assert (pv["ok"], pv["dart"], pv["tab"]) == (True, 80.0, 100.0)
    assert _cat2(1300.0)["reason"] == "Cat/liquidation-limit-hit"  # room 50 < dust 100
    assert _cat2(1250.0, dust=0.0)["reason"] == "Cat/liquidation-limit-hit"  # litter = box, even with dust 0


def test_cat_v2_takes_min_dunk_room_over_rate_and_chop_in_proportion_and_pays_no_keeper_coin():
    # Maker dss src/cat.sol (Liq 1.2) bite: dart = min(art, min(dunk, room)/rate/chop); dink = min(ink, ink·dart/art);
    # require(dart > 0 && dink > 0, "Cat/null-auction"); the Cat pays no keeper incentive (tip/chip are the Clipper's)
    def cat2(box):
        cdp, _ = make(
            mechanism="flip",
            dust=0.0,
            chop=1.25,
            dunk=500.0,
            box=box,
            stability_fee_per_year=0.25,
            clip=ClipParams(tip=5.0, chip=0.01),
        )
        cdp.open_vaults([10.0, 0.01, 10.0, 10.0], [1000.0, 0.5, 0.0, 1000.0])
        cdp.accrue(365 * 86400.0)  # rate 1.25: debts 1250, 0.625, 0, 1250
        cdp.ink[0] = 0.0  # debt without collateral (set directly; no user path leaves it)
        cdp.oracle.price = 50.0  # spot 33.3: vaults 0, 1 (0.333 < 0.625) and 3 (333 < 1250) unsafe
        return cdp.preview_bark([0, 1, 2, 3])

    pv = cat2(1e6)
    assert list(pv["reason"]) == ["Cat/null-auction", "", "Cat/not-unsafe", ""]
    # vault 3: dart = min(1000, 500/1.25/1.25 = 320) = 320, dink = 10·320/1000 = 3.2, due 400, tab 500
    # vault 1: dart = min(0.5, 320) = 0.5, dink = 0.01; the debt-free vault 2 seizes nothing
    assert list(pv["dart"][[1, 3]]) == [0.5, 320.0] and list(pv["tab"][[1, 3]]) == [0.78125, 500.0]
    assert pv["dink"].dtype == float and list(pv["dink"][1:]) == [0.01, 0.0, 3.2]
    assert list(pv["coin"]) == [0.0] * 4
    pv = cat2(0.5)  # room 0.5 stablecoin: dart = 0.5/1.25/1.25 = 0.32
    assert pv["dart"][3] == 0.32 and pv["reason"][3] == ""


def test_the_clip_preview_reports_the_keeper_coin_tip_plus_chip_of_tab():
    # dss clip.sol kick: coin = tip + wmul(tab, chip); tab = 1000·1.25 = 1250 at chop 1.25
    for tip, chip, coin in ((5.0, 0.01, 17.5), (0.0, 0.01, 12.5), (0.5, 0.0, 0.5), (0.0, 0.0, 0.0)):
        cdp, _ = make(chop=1.25, clip=ClipParams(tip=tip, chip=chip))
        cdp.open_vaults([10.0], [1000.0])
        cdp.oracle.price = 140.0
        pv = cdp.preview_bark([0])
        assert pv["tab"][0] == 1250.0 and pv["coin"][0] == pytest.approx(coin, rel=1e-15)


# --- the rounding-dust boundaries of repay and auction_closed (ABS_DUST = 1e-9 stablecoin, ledger.py) ---------
# A leftover, shortfall or new system debt of at most ABS_DUST is float rounding, so it counts as zero. The
# boundaries are built bit for bit: 2·1e-9 − 1e-9 == 1e-9 exactly (doubling and halving are exact in binary),
# and a − (a − d) == d when both are within a factor 2 (Sterbenz), which the tests assert before relying on it.
ABS_DUST_STABLE = 1e-9


def test_a_repayment_leaving_exactly_abs_dust_is_not_cut_back_as_dusty_and_clears_the_vault():
    cdp, env = make(dust=1.5e-9)  # dust between ABS_DUST and the vault's debt of 2e-9
    cdp.open_vaults([10.0], [2e-9])
    assert 2e-9 - ABS_DUST_STABLE == ABS_DUST_STABLE  # the leftover is exactly ABS_DUST
    paid = cdp.repay([0], [ABS_DUST_STABLE])
    # leftover 1e-9 ≤ ABS_DUST is rounding, not a dusty vault (0 < debt < dust): the repayment is not cut back to
    # 2e-9 − dust = 5e-10, and a repayment within ABS_DUST of the debt is full: the vault owes nothing
    assert paid[0] == ABS_DUST_STABLE
    assert cdp.art[0] == 0.0


def test_a_population_short_by_exactly_abs_dust_still_repays():
    cdp, env = make()
    cdp.open_vaults([10.0], [1000.0])
    have = 1000.0 - ABS_DUST_STABLE  # the float the rule compares against: total − ABS_DUST
    env.ledger.transfer("DAI", "population", "elsewhere", 1000.0 - have)
    assert env.ledger.balance("population", "DAI") == 1000.0 - ABS_DUST_STABLE
    # short of the 1000 DAI repayment by ABS_DUST only: rounding, so it repays (the ledger takes the whole balance)
    paid = cdp.repay([0], [1000.0])
    assert paid[0] == 1000.0
    assert cdp.art[0] == 0.0
    assert env.ledger.balance("population", "DAI") == 0.0


def test_a_repayment_of_exactly_debt_minus_abs_dust_is_full_and_leaves_no_normalised_debt():
    cdp, env = make()
    cdp.open_vaults([10.0], [1000.0])
    amount = 1000.0 - ABS_DUST_STABLE
    assert 1000.0 - amount < ABS_DUST_STABLE  # below ABS_DUST: not a dusty leftover, so nothing is cut back
    paid = cdp.repay([0], [amount])
    assert paid[0] == amount
    assert cdp.art[0] == 0.0  # full repayment: no 1e-9 residue of debt is kept


def test_an_auction_leaving_exactly_abs_dust_of_system_debt_reports_no_bad_debt():
    # dust 0 and chop 1: a vault of 2e-9 ETH owing 2e-9 DAI, barked at ETH = 1 (2e-9 / 1.5 < 2e-9: unsafe)
    cdp, env = make(dust=0.0, chop=1.0, clip=ClipParams(tip=0.0, chip=0.0, buf=1.0))
    cdp.open_vaults([2e-9], [2e-9])
    cdp.oracle.price = 1.0
    cdp.bark(0, "kicker")
    env.ledger.mint("DAI", "k", 1.0, "genesis")
    # buy 1e-9 ETH at 1 DAI: owe 1e-9, so the sin left is 2e-9 − 1e-9 == 1e-9 and the lot left is 1e-9 (rounding,
    # the auction closes): new system debt of exactly ABS_DUST
    assert 2e-9 - ABS_DUST_STABLE == ABS_DUST_STABLE
    cdp.clipper.take(0, ABS_DUST_STABLE, 1.0, "k")
    assert not cdp.clipper.active[0]
    assert cdp.woe == ABS_DUST_STABLE
    # ABS_DUST of new system debt is rounding: no BadDebt event (one is emitted only above ABS_DUST)
    assert not [e for e in env.events if isinstance(e, BadDebt)]
