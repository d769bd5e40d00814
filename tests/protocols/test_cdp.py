"""The CDP: vault book, Dog and Cat liquidation rules, stability fee, Vow accounting and conservation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import MAKER_2020_ETH_A, MAKER_LIQ2_ETH_A, Cdp, CdpParams
from defistress.protocols.clip import ClipParams
from defistress.protocols.flip import FlipParams


def make(price=200.0, eth=1_000.0, **kw):
    env = Env()
    env.ledger.mint("ETH", "population", eth, "genesis")
    oracle = FixedPrice(price)
    base = dict(dust=100.0, hole=1e6, Hole=1e7, clip=ClipParams(tip=300.0, chip=0.001))
    base.update(kw)
    return Cdp(CdpParams(**base), oracle, env, "maker"), oracle, env


def test_open_vaults_locks_collateral_and_mints_the_debt_to_the_population():
    cdp, _, env = make()
    idx = cdp.open_vaults([10.0, 20.0], [1000.0, 2000.0])
    led = env.ledger
    assert list(idx) == [0, 1]
    assert led.balance("population", "ETH") == 970.0 and led.balance("maker", "ETH") == 30.0
    assert led.balance("population", "DAI") == 3000.0
    # health = ink·price / (debt·mat) = 10·200 / (1000·1.5) = 1.3333
    np.testing.assert_allclose(cdp.health(), [4 / 3, 4 / 3])
    led.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_open_vaults_reverts_on_an_unsafe_vault_and_changes_nothing():
    cdp, _, env = make()
    # 10 ETH at 200 with mat 1.5 carries at most 10·200/1.5 = 1333.33 DAI
    with pytest.raises(Revert, match="^Vat/not-safe$"):
        cdp.open_vaults([10.0, 10.0], [1000.0, 1400.0])
    assert cdp.n_accounts == 0
    assert env.ledger.balance("population", "ETH") == 1000.0
    assert env.ledger.total("DAI") == 0.0


def test_open_vaults_enforces_dust_and_debt_ceilings():
    cdp, _, _ = make(line=1500.0)
    with pytest.raises(Revert, match="^Vat/dust$"):
        cdp.open_vaults([10.0], [50.0])  # 50 < dust 100
    with pytest.raises(Revert, match="^Vat/ceiling-exceeded$"):
        cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])  # 2000 > line 1500
    cdp.open_vaults([10.0], [0.0])  # no debt is not dust


def test_health_and_liquidatable_follow_the_oracle():
    cdp, oracle, _ = make()
    cdp.open_vaults([10.0, 20.0], [1000.0, 1000.0])
    oracle.price = 140.0
    # vault 0: 10·140/(1000·1.5) = 0.9333 unsafe; vault 1: 20·140/1500 = 1.8667 safe
    np.testing.assert_allclose(cdp.health(), [0.933333333, 1.866666667])
    assert list(cdp.liquidatable()) == [0]
    oracle.price = 150.0  # ink·spot = 10·100 = 1000 = debt: safe (not <)
    assert list(cdp.liquidatable()) == []


def test_bark_liquidates_part_of_the_vault_within_the_hole_room():
    cdp, oracle, env = make(hole=565.0, Hole=1e6)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    ev = cdp.bark(0, "keeper")
    # room 565: dart = 565/rate/chop = 565/1/1.13 = 500; dink = 10·500/1000 = 5; tab = 500·1.13 = 565
    assert ev.tab == pytest.approx(565.0) and ev.lot == pytest.approx(5.0)
    assert cdp.ink[0] == pytest.approx(5.0) and cdp.debt()[0] == pytest.approx(500.0)
    assert cdp.dirt == pytest.approx(565.0)
    # top = feed·buf = 140·1.30 = 182
    assert ev.start_price == pytest.approx(182.0)
    assert env.ledger.balance("maker:clip", "ETH") == pytest.approx(5.0)
    env.ledger.check_conservation()
    # the room is used up: the still-unsafe remainder cannot be barked now
    assert list(cdp.liquidatable()) == [0]
    with pytest.raises(Revert, match="^Dog/liquidation-limit-hit$"):
        cdp.bark(0, "keeper")


def test_bark_pays_the_keeper_tip_plus_chip_by_minting_and_adds_it_to_system_debt():
    cdp, oracle, env = make(hole=565.0)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    ev = cdp.bark(0, "keeper")
    # coin = tip + chip·tab = 300 + 0.001·565 = 300.565 DAI
    assert ev.incentive == pytest.approx(300.565)
    assert env.ledger.balance("keeper", "DAI") == pytest.approx(300.565)
    assert env.ledger.mint_reasons[("DAI", "cdp_keeper_incentive")] == pytest.approx(300.565)
    # no surplus buffer: the incentive is unbacked system debt (vat.suck)
    assert cdp.metrics()["bad_debt_usd"] == pytest.approx(300.565)
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_surplus_buffer_absorbs_the_incentive_first():
    cdp, oracle, _ = make(hole=565.0, surplus_buffer=1000.0)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    cdp.bark(0, "keeper")
    m = cdp.metrics()
    assert m["surplus_usd"] == pytest.approx(1000.0 - 300.565)  # 699.435
    assert m["bad_debt_usd"] == 0.0
    assert m["debt_on_auction_usd"] == pytest.approx(500.0)


def test_bark_takes_the_whole_vault_when_the_leftover_would_be_dust():
    cdp, oracle, _ = make(hole=565.0, dust=600.0)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    ev = cdp.bark(0, "keeper")
    # partial dart 500 would leave 500 < dust 600: liquidate all, dart = 1000, tab = 1130 (> hole)
    assert ev.tab == pytest.approx(1130.0) and ev.lot == pytest.approx(10.0)
    assert cdp.ink[0] == 0.0 and cdp.art[0] == 0.0


def test_bark_reverts_when_the_partial_auction_would_be_dust():
    cdp, oracle, env = make(hole=100.0, dust=100.0)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    # dart = 100/1.13 = 88.50 leaves 911.5 ≥ dust, but the auction's debt 88.50 < dust 100
    with pytest.raises(Revert, match="^Dog/dusty-auction-from-partial-liquidation$"):
        cdp.bark(0, "keeper")
    assert cdp.ink[0] == 10.0 and cdp.auctions.kicks == 0
    assert env.ledger.balance("keeper", "DAI") == 0.0


def test_bark_reverts_on_a_safe_vault():
    cdp, _, _ = make()
    cdp.open_vaults([10.0], [1000.0])
    with pytest.raises(Revert, match="^Dog/not-unsafe$"):
        cdp.bark(0, "keeper")


def test_stability_fee_of_five_percent_accrues_over_a_year_as_surplus_not_tokens():
    cdp, _, env = make(stability_fee_per_year=0.05)
    cdp.open_vaults([10.0], [1000.0])
    for _ in range(365):
        cdp.accrue(86400.0)
    # rate = 1.05^(365 days / 365 days) = 1.05: debt 1000 -> 1050, fee 50 is surplus
    assert cdp.rate == pytest.approx(1.05, rel=1e-12)
    assert cdp.debt()[0] == pytest.approx(1050.0, rel=1e-12)
    assert cdp.surplus == pytest.approx(50.0, rel=1e-9)
    assert env.ledger.total("DAI") == 1000.0  # no token minted by accrual
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)
    # repaying realises the fee: 1050 DAI burned (50 bought from outside)
    env.ledger.mint("DAI", "population", 50.0, "external_inflow")
    paid = cdp.repay([0], [1e9])
    assert paid[0] == pytest.approx(1050.0)
    assert cdp.art[0] == 0.0
    env.ledger.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_repay_burns_and_keeps_a_partial_repayment_above_dust():
    cdp, _, env = make(dust=100.0)
    cdp.open_vaults([10.0], [1000.0])
    assert cdp.repay([0], [400.0])[0] == 400.0  # 1000 -> 600
    # 550 would leave 50 < dust 100: cut to 500, leaving exactly 100
    assert cdp.repay([0], [550.0])[0] == pytest.approx(500.0)
    assert cdp.debt()[0] == pytest.approx(100.0)
    assert env.ledger.balance("population", "DAI") == pytest.approx(100.0)
    assert cdp.repay([0], [100.0])[0] == pytest.approx(100.0)
    assert cdp.art[0] == 0.0
    env.ledger.check_conservation()


def test_deposit_tops_up_collateral_for_many_vaults():
    cdp, oracle, env = make()
    cdp.open_vaults([10.0, 10.0], [1000.0, 1000.0])
    oracle.price = 140.0
    cdp.deposit(np.array([0, 1, 0]), np.array([1.0, 2.0, 1.0]))
    np.testing.assert_allclose(cdp.ink, [12.0, 12.0])
    # 12·140/(1000·1.5) = 1.12
    np.testing.assert_allclose(cdp.health(), [1.12, 1.12])
    assert env.ledger.balance("maker", "ETH") == 24.0
    env.ledger.check_conservation()


def test_cat_v1_bite_caps_the_lot_at_lump():
    cdp, oracle, env = make(mechanism="flip", lump=4.0)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    ev = cdp.bite(0, "keeper")
    # lot = min(10, 4) = 4; art = 1000·4/10 = 400; tab = 400·1.13 = 452; no incentive in the Cat era
    assert ev.lot == 4.0 and ev.tab == pytest.approx(452.0) and ev.incentive == 0.0
    assert cdp.debt()[0] == pytest.approx(600.0)
    assert env.ledger.balance("maker:flip", "ETH") == 4.0
    assert env.ledger.balance("keeper", "DAI") == 0.0


def test_cat_v2_bite_respects_dunk_and_box():
    cdp, oracle, _ = make(mechanism="flip", dunk=565.0, box=1000.0)
    cdp.open_vaults([10.0, 10.0, 10.0], [1000.0, 1000.0, 1000.0])
    oracle.price = 140.0
    # dart = min(1000, min(dunk 565, room 1000)/1.13) = 500 -> tab 565, litter 565
    assert cdp.bite(0, "k").tab == pytest.approx(565.0)
    # room = 1000 − 565 = 435 ≥ dust: dart = 435/1.13 = 384.956, tab 435, litter 1000
    ev = cdp.bite(1, "k")
    assert ev.tab == pytest.approx(435.0) and ev.lot == pytest.approx(3.849558, rel=1e-6)
    with pytest.raises(Revert, match="^Cat/liquidation-limit-hit$"):
        cdp.bite(2, "k")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"liquidation_ratio": 0.5}, "liquidation_ratio"),
        ({"chop": 0.9}, "chop"),
        ({"dust": -1.0}, "dust"),
        ({"hole": 0.0}, "hole"),
        ({"mechanism": "flip"}, "lump"),
        ({"mechanism": "flip", "lump": 50.0, "dunk": 1.0, "box": 2.0}, "lump"),
        ({"colateral": "ETH"}, "colateral"),
    ],
)
def test_params_reject_bad_input_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError) as err:
        CdpParams(**kwargs)
    assert field in str(err.value)


def test_params_are_frozen():
    with pytest.raises(ValidationError):
        MAKER_LIQ2_ETH_A.chop = 1.2


def test_presets_carry_the_documented_maker_values():
    bt = MAKER_2020_ETH_A
    assert (bt.mechanism, bt.liquidation_ratio, bt.chop, bt.lump) == ("flip", 1.5, 1.13, 50.0)
    assert bt.flip == FlipParams(beg=1.03, ttl=600.0, tau=3 * 86400.0)
    l2 = MAKER_LIQ2_ETH_A
    assert (l2.mechanism, l2.clip.buf, l2.clip.cusp, l2.clip.tail, l2.clip.chip) == ("clip", 1.3, 0.4, 8400.0, 0.001)
    assert (l2.clip.calc.cut, l2.clip.calc.step) == (0.99, 90.0)
    assert (l2.hole, l2.Hole) == (30e6, 100e6)


def test_metrics_and_exposures_report_the_book():
    cdp, oracle, _ = make(hole=565.0)
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    cdp.bark(0, "keeper")
    m = cdp.metrics()
    assert m["collateral_usd"] == pytest.approx(1400.0)  # 5 in the vault + 5 on auction, at 140
    assert m["debt_usd"] == pytest.approx(500.0)
    assert m["auctions_active"] == 1 and m["tab_on_auction_usd"] == pytest.approx(565.0)
    kinds = {(e.kind, e.asset): e.amount for e in cdp.exposures()}
    assert kinds[("holds", "ETH")] == pytest.approx(10.0)
    assert kinds[("issues", "DAI")] == pytest.approx(1300.565)  # 1000 drawn + 300.565 incentive


@settings(max_examples=60, deadline=None)
@given(
    ink=st.floats(5.0, 1000.0),
    ratio=st.floats(1.5, 5.0),
    drop=st.floats(0.05, 0.9),
    room=st.floats(200.0, 1e6),
    fee=st.floats(0.0, 0.5),
)
def test_bark_seizes_collateral_in_proportion_and_keeps_the_books_balanced(ink, ratio, drop, room, fee):
    cdp, oracle, env = make(hole=room, dust=100.0, stability_fee_per_year=fee, eth=ink)
    debt = ink * 200.0 / ratio  # collateralisation ratio ≥ mat 1.5 at open
    cdp.open_vaults([ink], [debt])
    cdp.accrue(86400.0 * 30)
    oracle.price = 200.0 * (1 - drop)
    art0, ink0 = cdp.art[0], cdp.ink[0]
    pv = cdp.preview_bark([0])
    if not pv["ok"][0]:
        with pytest.raises(Revert):
            cdp.bark(0, "k")
        return
    ev = cdp.bark(0, "k")
    dart, dink = art0 - cdp.art[0], ink0 - cdp.ink[0]
    assert dink / ink0 == pytest.approx(dart / art0, rel=1e-9)  # dss dog.sol: dink = ink·dart/art
    assert ev.tab == pytest.approx(dart * cdp.rate * 1.13, rel=1e-9)  # tab = due·chop
    assert cdp.art[0] == 0.0 or cdp.art[0] * cdp.rate >= 100.0 * (1 - 1e-9)  # never leaves dust
    env.ledger.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-6 * max(debt, 1.0))
