"""Scheduled governance and operations actions: keyed schema errors, application at block boundaries in a
deterministic order, their effect on running protocols (parameters, oracles, freezes, pauses, agents, buffers),
their record in events and the manifest, and the two examples (Maker's 03/12/2020 spell, Aave's CRV freeze).

Expected values are the published spell's numbers typed from the spell, or worked by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from defistress.protocols.base import Revert
from defistress.scenarios.loader import ScenarioError, load
from defistress.sim.engine.model import StressModel
from defistress.sim.experiments.runs import run_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "examples"
MAKER_SPELL = EXAMPLES / "maker-spell-2020-03-12.toml"
AAVE_FREEZE = EXAMPLES / "aave-v2-crv-freeze-2022-11.toml"
SMALL_CRASH = {"agents.borrowers.accounts": 400, "run.duration": "8h"}
SMALL_MAKER = {"agents.vaults.accounts": 300, "run.duration": "4h"}


def errors_of(ref, overrides) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load(ref, overrides)
    return info.value.errors


def act(**kw) -> dict:
    return {"source": "assumption", **kw}


def model_after(ref, overrides, blocks: int) -> StressModel:
    m = StressModel(load(ref, overrides))
    for _ in range(blocks):
        m.step()
    return m


# --- keyed schema errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "action, expected",
    [
        (
            act(at=60, action="set", protocol="nope", key="x", value=1.0),
            "governance.0.protocol: unknown protocol 'nope'",
        ),
        (
            act(at=60, action="set", protocol="lend", key="assets.ETH.supply_usd", value=1.0),
            "governance.0.key: 'assets.ETH.supply_usd' cannot be set during a run of a lending",
        ),
        (
            act(at=60, action="set", protocol="lend", key="assets.ETH.liquidation_threshold", value=0.5),
            "governance.0.value: ",  # below the ltv 0.825: the lending table's own check refuses it
        ),
        (
            act(at=60, action="set", protocol="lend", key="oracles.ETH", value="chainlink-btc"),
            "governance.0.value: 'chainlink-btc' is not an oracle of ETH",
        ),
        (act(at="30h", action="pause", protocol="lend"), "governance.0.at: 108000 s is after the end of the run"),
        (act(at=60, action="freeze", protocol="lend", asset="DOGE"), "governance.0.asset: lend has no asset 'DOGE'"),
        (act(at=60, action="add_agent", agent="ghost"), "governance.0.agent: unknown agent 'ghost'"),
        (
            act(at_time="2020-03-12T01:00:00Z", action="pause", protocol="lend"),
            "governance.0.at_time: an ISO time needs a replay",
        ),
        (act(action="pause", protocol="lend"), "give the time as `at`"),
        (
            act(at=60, action="mint", protocol="lend", amount=1.0),
            "governance.0.asset: a lending treasury holds one token",
        ),
        (act(at=60, action="explode", protocol="lend"), "invalid kind 'explode'"),
    ],
)
def test_malformed_actions_are_keyed_errors(action, expected):
    errs = errors_of("eth-crash", {"governance": [action]})
    assert any(expected in e for e in errs), errs


def test_a_bad_value_names_the_protocol_key_and_the_bound():
    (err,) = errors_of(
        "black-thursday-maker",
        {"governance": [act(at=60, action="set", protocol="maker", key="params.flip.ttl", value=-5.0)]},
    )
    assert err.startswith("governance.0.value: ") and "params.flip.ttl" in err and "allowed: > 0" in err


# --- order and time --------------------------------------------------------------------------------------------
def test_actions_apply_at_the_first_block_at_or_after_their_time_in_list_order():
    gov = [
        act(at=30, action="freeze", protocol="lend", asset="ETH"),  # 30 s: ceil(30 / 12) = block 3
        act(at=36, action="unfreeze", protocol="lend", asset="ETH"),  # 36 s: block 3 too, after the freeze
        act(at=0, action="pause", protocol="lend", asset="BTC"),  # block 0
    ]
    m = model_after("eth-crash", {**SMALL_CRASH, "governance": gov}, 4)
    ev = [e for e in m.env.events if getattr(e, "name", "") == "governance"]
    assert [(e.block, e.detail["index"], e.detail["action"]) for e in ev] == [
        (0, 2, "pause"),
        (3, 0, "freeze"),
        (3, 1, "unfreeze"),
    ]
    lend = m.protocols["lend"]
    assert not lend.gates.is_frozen("ETH") and lend.gates.is_paused("BTC")
    assert [x["block"] for x in m.governance.manifest()] == [0, 3, 3]


def test_the_same_seed_gives_the_same_governance_events():
    ov = {
        **SMALL_CRASH,
        "governance": [
            act(at="1h", action="set", protocol="lend", key="assets.ETH.liquidation_threshold", value=0.845)
        ],
    }
    a, b = run_scenario("eth-crash", overrides=ov), run_scenario("eth-crash", overrides=ov)
    pd.testing.assert_frame_equal(a.events, b.events)


# --- set: lending -------------------------------------------------------------------------------------------
def test_a_lower_liquidation_threshold_scales_every_eth_backed_health_factor():
    # ETH-only collateral: hf = coll_usd x lt / debt_usd, so lt 0.86 -> 0.84 multiplies hf by 0.84 / 0.86
    gov = [act(at=12, action="set", protocol="lend", key="assets.ETH.liquidation_threshold", value=0.84)]
    m = model_after("eth-crash", {**SMALL_CRASH, "governance": gov}, 1)  # block 0 done; block 1 is next
    lend = m.protocols["lend"]
    c = lend.collateral()
    eth_only = (c[:, lend.idx["BTC"]] == 0) & (c[:, lend.idx["ETH"]] > 0) & (lend.debt().sum(axis=1) > 0)
    assert eth_only.sum() > 50
    before = lend.health()[eth_only].copy()
    m.phase_governance()  # block 1's boundary: before any price of block 1 moves
    after = lend.health()[eth_only]
    np.testing.assert_allclose(after, before * 0.84 / 0.86, rtol=1e-12)
    assert lend.lt[lend.idx["ETH"]] == 0.84 and lend.params[lend.idx["ETH"]].liquidation_threshold == 0.84
    (ev,) = [e for e in m.env.events if getattr(e, "name", "") == "governance"]
    assert (ev.block, ev.detail["old"], ev.detail["new"]) == (1, 0.86, 0.84)


def test_changing_an_assets_oracle_switches_the_feed_the_market_reads():
    raw = load("eth-crash", SMALL_CRASH).raw
    raw["oracles"].append({"id": "frozen-eth", "kind": "fixed", "asset": "ETH", "price": 1234.0})
    raw["governance"] = [act(at="1h", action="set", protocol="lend", key="oracles.ETH", value="frozen-eth")]
    m = model_after(raw, None, 301)
    lend = m.protocols["lend"]
    assert lend.prices()[lend.idx["ETH"]] == 1234.0 and m.protocol_specs["lend"].oracles["ETH"] == "frozen-eth"


# --- freeze and pause ---------------------------------------------------------------------------------------
def test_a_frozen_reserve_refuses_new_borrows_but_takes_repayments():
    m = model_after(
        "eth-crash", {**SMALL_CRASH, "governance": [act(at=0, action="freeze", protocol="lend", asset="USDC")]}, 1
    )
    lend, led = m.protocols["lend"], m.env.ledger
    acct = int(np.flatnonzero(lend.debt()[:, lend.idx["USDC"]] > 0)[0])
    holder = "borrowers"
    with pytest.raises(Revert, match="RESERVE_FROZEN"):
        lend.borrow(holder, np.array([acct]), "USDC", np.array([1.0]))
    with pytest.raises(Revert, match="RESERVE_FROZEN"):
        lend.supply(holder, np.array([acct]), "USDC", np.array([1.0]))
    led.mint("USDC", holder, 5.0, "test")
    paid = lend.repay(holder, np.array([acct]), "USDC", np.array([5.0]))
    assert paid[0] == 5.0


def test_a_paused_market_liquidates_nothing_until_unpaused():
    # eth-crash falls from 2h: liquidations happen, but none while the market is paused (3h-5h)
    gov = [act(at="3h", action="pause", protocol="lend"), act(at="5h", action="unpause", protocol="lend")]
    r = run_scenario("eth-crash", overrides={**SMALL_CRASH, "governance": gov})
    liq = r.events[r.events["kind"] == "liquidation"]
    assert ((liq["block"] >= 900) & (liq["block"] < 1500)).sum() == 0
    assert (liq["block"] < 900).sum() > 0 and (liq["block"] >= 1500).sum() > 0
    assert r.metrics["conservation_ok"]


def test_a_paused_cdp_starts_no_auction():
    gov = [act(at=0, action="pause", protocol="maker")]
    m = model_after("black-thursday-maker", {**SMALL_MAKER, "governance": gov}, 1)
    cdp = m.protocols["maker"]
    pv = cdp.preview_bark(np.arange(cdp.n_accounts))
    assert set(pv["reason"]) == {"Flipper/not-authorized"}
    r = run_scenario("black-thursday-maker", overrides={**SMALL_MAKER, "governance": gov})
    assert (r.events["kind"] == "auction_kick").sum() == 0


# --- set: cdp -----------------------------------------------------------------------------------------------
def test_a_flip_ttl_change_applies_to_bids_after_it_and_not_before():
    gov = [act(at="2h", action="set", protocol="maker", key="params.flip.ttl", value=21_600.0)]
    ov = {**SMALL_MAKER, "governance": gov}
    m = StressModel(load("black-thursday-maker", ov))
    m.run()
    bids = [e for e in m.env.events if e.kind == "auction_bid"]
    last = {}
    for e in bids:
        last[e.auction] = e.block
    flip = m.protocols["maker"].flipper
    assert len(last) > 0
    for auction, block in last.items():
        ttl = 600.0 if block < 600 else 21_600.0  # the action applies at block 600 (2 h / 12 s)
        assert flip.tic[auction] == pytest.approx(block * 12.0 + ttl)
    assert flip.p.ttl == 21_600.0 and m.protocols["maker"].p.flip.ttl == 21_600.0


def test_a_debt_ceiling_change_refuses_draws_above_it():
    gov = [act(at=0, action="set", protocol="maker", key="params.line", value=1_000.0)]
    m = model_after("black-thursday-maker", {**SMALL_MAKER, "governance": gov}, 1)
    cdp = m.protocols["maker"]
    assert cdp.p.line == 1_000.0
    with pytest.raises(Revert, match="Vat/ceiling-exceeded"):
        cdp.open_vaults(np.array([10.0]), np.array([100.0]))


# --- agents and buffers -------------------------------------------------------------------------------------
def test_a_keeper_added_during_the_run_acts_only_after_it_joins():
    raw = load("black-thursday-maker", SMALL_MAKER).raw
    raw["agents"].append(
        {"kind": "keeper", "id": "late", "capital_usd": 1_000_000, "params": {"max_gas_price_gwei": 5000}}
    )
    raw["governance"] = [act(at="2h", action="add_agent", agent="late")]
    m = StressModel(load(raw))
    for _ in range(600):
        m.step()
    assert "late" not in {getattr(a, "holder", None) for a in m.actors} and m.env.ledger.balance("late", "DAI") == 0
    dai_usd = m.market.price("DAI")  # the reference price the keeper's capital is bought at (block 599's)
    m.step()
    assert "late" in {getattr(a, "holder", None) for a in m.actors}
    assert m.env.ledger.balance("late", "DAI") == pytest.approx(1_000_000.0 / dai_usd, rel=1e-12)
    assert "late" in m.recorder.liquidators


def test_minting_into_a_cdp_buffer_heals_system_debt_and_keeps_the_books_balanced():
    gov = [act(at="3h", action="mint", protocol="maker", amount=1_000_000.0)]
    m = model_after("black-thursday-maker", {**SMALL_MAKER, "governance": gov}, 901)
    cdp = m.protocols["maker"]
    (ev,) = [e for e in m.env.events if getattr(e, "name", "") == "governance"]
    d = ev.detail
    # heal nets min(surplus, woe): what was healed plus what is left as surplus is the old surplus + 1M
    assert d["system_debt_healed"] + d["new"] == pytest.approx(d["old"] + 1_000_000.0)
    assert abs(cdp.accounting_gap()) < 1e-6 * max(cdp.total_debt(), 1.0)


def test_minting_into_a_lending_treasury_goes_through_the_ledger():
    gov = [
        act(at=0, action="mint", protocol="lend", asset="USDC", amount=250.0),
        act(at=12, action="burn", protocol="lend", asset="USDC", amount=1e6),
    ]
    m = model_after("eth-crash", {**SMALL_CRASH, "governance": gov}, 2)
    assert m.env.ledger.balance("lend:treasury", "USDC") == pytest.approx(
        0.0, abs=1e-9
    )  # burn is capped at the balance
    ev = [e.detail for e in m.env.events if getattr(e, "name", "") == "governance"]
    assert ev[0]["new"] == pytest.approx(250.0) and ev[1]["amount_applied"] == pytest.approx(250.0)
    m.env.ledger.check_conservation()


# --- the examples -------------------------------------------------------------------------------------------
def test_the_maker_spell_example_carries_the_published_values():
    s = load(MAKER_SPELL).scenario
    got = {a.key: a.value for a in s.governance}
    # typed from makerdao/spells-mainnet archive/2020-03-12-DssSpell/DssSpell.sol
    assert got == {
        "params.line": 100e6,
        "params.Line": 113e6,
        "params.stability_fee_per_year": 0.04,
        "params.flip.ttl": 6 * 3600.0,
        "params.flip.tau": 6 * 3600.0,
        "params.lump": 500.0,
    }
    assert {a.at_time for a in s.governance} == {"2020-03-14T04:00:00Z"}
    assert all("DssSpell" in a.source for a in s.governance)


def test_the_maker_spell_applies_on_14_march_and_is_in_the_manifest():
    # the run starts 2020-03-12 00:00 UTC: 14 March 04:00 is 52 h in, block 52 x 300 = 15600
    m = StressModel(load(MAKER_SPELL, {"agents.vaults.accounts": 100}))
    assert {x["block"] for x in m.governance.manifest()} == {15_600}
    # the same spell on a short window around it (start 14 March 02:00, the spell 2 h in)
    ov = {"agents.vaults.accounts": 200, "market.replay.start": "2020-03-14T02:00:00Z", "run.duration": "3h"}
    r = run_scenario(MAKER_SPELL, overrides=ov)
    gov = r.manifest["governance"]
    assert {x["block"] for x in gov} == {600} and all(x["applied"] for x in gov)
    olds = {x["key"]: (x["old"], x["new"]) for x in gov}
    assert olds["params.flip.ttl"] == (600.0, 21_600.0) and olds["params.lump"] == (50.0, 500.0)
    assert olds["params.line"] == (150e6, 100e6) and olds["params.Line"] == (183e6, 113e6)
    assert olds["params.flip.tau"] == (3 * 86_400.0, 21_600.0) and olds["params.stability_fee_per_year"] == (0.08, 0.04)
    assert r.manifest["gas"]["path"] == "modelled"
    assert r.manifest["replay"]["series"][0]["fill"] == "bridge"


def test_the_aave_freeze_example_refuses_crv_borrows_while_frozen():
    m = StressModel(load(AAVE_FREEZE, {"agents.crv-shorts.accounts": 200}))
    # the run starts 2022-11-21 00:00 UTC: the freeze (22 Nov 14:00) is 38 h in, the unfreeze (24 Nov 12:00) 84 h
    assert [x["block"] for x in m.governance.manifest()] == [38 * 300, 84 * 300]
    assert [x["action"] for x in m.governance.manifest()] == ["freeze", "unfreeze"]
    # the same actions on a short window around the freeze (start 12:00, the freeze 2 h in)
    short = {
        "agents.crv-shorts.accounts": 200,
        "market.replay.start": "2022-11-22T12:00:00Z",
        "run.duration": "3h",
        "governance.1.at_time": "2022-11-22T14:30:00Z",
    }
    m = StressModel(load(AAVE_FREEZE, short))
    lend = m.protocols["aave-v2"]
    for _ in range(601):
        m.step()
    assert lend.gates.is_frozen("CRV") and not lend.gates.is_frozen("USDC")
    with pytest.raises(Revert, match="RESERVE_FROZEN"):
        lend.borrow("crv-shorts", np.array([0]), "CRV", np.array([1.0]))
    for _ in range(150):
        m.step()
    assert not lend.gates.is_frozen("CRV")


def test_an_iso_time_outside_the_run_is_a_keyed_error_before_any_block():
    ov = {"agents.vaults.accounts": 100, "governance.0.at_time": "2020-03-20T00:00:00Z"}
    with pytest.raises(
        ValueError, match=r"governance\.0\.at_time: 2020-03-20T00:00:00Z is 691200 s from the run's start"
    ):
        StressModel(load(MAKER_SPELL, ov))


def test_the_report_section_lists_the_replay_the_gas_path_and_the_actions():
    from defistress.sim.report.provenance import provenance_html

    gov = [
        act(at="30m", action="set", protocol="maker", key="params.flip.ttl", value=21_600.0),
        act(at="45m", action="pause", protocol="maker"),
    ]
    r = run_scenario(
        "black-thursday-maker", overrides={"agents.vaults.accounts": 100, "run.duration": "1h", "governance": gov}
    )
    page = provenance_html(r.manifest)
    assert "<h2>Data, oracles and governance</h2>" in page
    assert "01b_black_thursday_2020-03-12_ETH_10min.csv" in page and "<td>600 s</td>" in page  # declared
    assert "Gas: replayed from 01b_black_thursday_2020-03-12_gas_10min.csv (avgGasDay, 600 s buckets" in page
    assert "<td>150</td><td>0.50 h</td><td>set</td><td>maker</td><td>params.flip.ttl: 600.0 -&gt; 21600.0</td>" in page
    assert "<td>225</td><td>0.75 h</td><td>pause</td><td>maker</td><td>paused: False -&gt; True</td>" in page
    calm = run_scenario("calm", overrides={"agents.borrowers.accounts": 100, "run.duration": "1h"})
    assert "Gas: modelled" in provenance_html(calm.manifest) and "Replay from" not in provenance_html(calm.manifest)
