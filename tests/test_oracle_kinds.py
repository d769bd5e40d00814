"""Oracle kinds of replays: published rounds replayed exactly, composite feeds, a venue's own series, the
anchored view reading it, Liquity's primary/fallback rules, staleness, and the OSM's hour boundaries.

Expected values come from the bundled round files read with pandas, Liquity's PriceFeedTest.js cases
(liquity/dev packages/contracts/test/PriceFeedTest.js; statuses by their index in PriceFeed.Status), or
hand computation in the comments."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd
import pytest

from defistress.agents.oracle_fallback import STATUSES, FallbackOracle
from defistress.agents.oracles import DelayedOracle
from defistress.scenarios.loader import HISTORIC_DIR, ScenarioError, load
from defistress.sim.engine.model import StressModel
from defistress.sim.engine.replay import check_data

ROUNDS_2022 = "05c_steth_eth_chainlink_rounds_2022-05_to_2022-07.csv"
ROUNDS_2023 = "09c_steth_eth_chainlink_rounds_2023-03.csv"
ETH_2022 = "05_steth_celsius_3ac_2022-06_ETH_BTC_1h.csv"


def steth_scenario(duration: str = "24h", max_age: str | None = None) -> dict:
    """stETH in June 2022: ETH hourly candles, stETH/ETH Chainlink rounds, Aave-style composite stETH/USD."""
    rounds_oracle = {"id": "cl-steth-eth", "kind": "rounds", "asset": "stETH", "feed": "steth-rounds"}
    if max_age:
        rounds_oracle["max_age"] = max_age
    return {
        "run": {"name": "steth", "duration": duration, "block_seconds": 12},
        "market": {
            "assets": [{"symbol": "ETH"}, {"symbol": "stETH"}, {"symbol": "USDC", "peg": 1.0}],
            "replay": {
                "start": "2022-06-12T00:00:00Z",
                "series": [
                    {"asset": "ETH", "file": ETH_2022, "symbol": "ETH-USDT", "interval": "1h"},
                    {
                        "asset": "stETH",
                        "file": ROUNDS_2022,
                        "format": "chainlink_rounds",
                        "interval": "25h",
                        "quote": "ETH",
                    },
                ],
                "feeds": [
                    {
                        "id": "steth-rounds",
                        "file": ROUNDS_2022,
                        "format": "chainlink_rounds",
                        "interval": "25h",
                        "quote": "ETH",
                    }
                ],
            },
        },
        "oracles": [
            rounds_oracle,
            {"id": "cl-eth-usd", "asset": "ETH", "deviation": 0.005, "heartbeat": "1h"},
            {"id": "aave-steth", "kind": "composite", "asset": "stETH", "feeds": ["cl-steth-eth", "cl-eth-usd"]},
            {"id": "usdc", "kind": "fixed", "asset": "USDC", "price": 1.0},
        ],
        "protocols": [
            {
                "id": "lend",
                "kind": "lending",
                "oracles": {"stETH": "aave-steth", "USDC": "usdc"},
                "assets": {
                    "stETH": {"ltv": 0.69, "liquidation_threshold": 0.81, "liquidation_bonus": 0.075},
                    "USDC": {},
                },
            }
        ],
    }


def published_rounds(file: str) -> pd.DataFrame:
    r = pd.read_csv(HISTORIC_DIR / file, comment="#", dtype={"answer_raw": str, "round_id": str})
    r["t"] = (pd.to_datetime(r["updated_at_utc"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    r["answer"] = [int(a) / 10 ** int(d) for a, d in zip(r["answer_raw"], r["decimals"])]
    return r


# --- rounds as published --------------------------------------------------------------------------------------
def test_rounds_are_replayed_at_their_updated_at_with_their_answers_and_ids():
    m = StressModel(load(steth_scenario("48h")))
    epoch = m.epoch
    r = published_rounds(ROUNDS_2022)
    o = m.oracles["cl-steth-eth"]
    before = r[r["t"] <= epoch].iloc[-1]  # 2022-06-11 13:20:26
    assert (o.price, o.updated_at, str(o.round_id)) == (before["answer"], before["t"] - epoch, before["round_id"])
    m.run()
    inside = r[(r["t"] > epoch) & (r["t"] < epoch + 48 * 3600)]
    events = [e for e in m.env.events if e.kind == "oracle_update" and e.source == "cl-steth-eth"]
    assert [e.price for e in events] == list(inside["answer"])
    # each round at the first block at or after its updatedAt: 2022-06-12T13:20:05Z is 48005 s in, block 4001
    assert [e.block for e in events] == [int(np.ceil((t - epoch) / 12)) for t in inside["t"]]
    assert events[0].block == 4001 and [e.reason for e in events] == [f"round {x}" for x in inside["round_id"]]
    assert o.updated_at == inside["t"].iloc[-1] - epoch  # the published time, not the block's


def test_the_2023_round_file_runs_too_and_publishes_each_round_once_at_its_time():
    """09c (stETH/ETH, March 2023): validate and run agree, and the run publishes exactly the file's rounds."""
    raw = steth_scenario("48h")
    replay = raw["market"]["replay"]
    replay["start"] = "2023-03-10T00:00:00Z"
    replay["series"][0]["file"] = "09_usdc_depeg_svb_2023-03_ETH_BTC_1h.csv"
    replay["series"][1]["file"] = replay["feeds"][0]["file"] = ROUNDS_2023
    loaded = load(raw)
    check_data(loaded)  # what `defistress validate` runs
    m = StressModel(loaded)
    m.run()
    r = published_rounds(ROUNDS_2023)
    inside = r[(r["t"] > m.epoch) & (r["t"] < m.epoch + 48 * 3600)]  # 10 and 11 March, 14:56 UTC
    events = [e for e in m.env.events if e.kind == "oracle_update" and e.source == "cl-steth-eth"]
    assert len(inside) == 2
    assert [(e.block, e.price) for e in events] == [
        (int(np.ceil((t - m.epoch) / 12)), a) for t, a in zip(inside["t"], inside["answer"])
    ]


def test_rounds_written_as_parquet_replay_as_their_csv(tmp_path):
    """`defistress import chainlink --out x.parquet` writes the bundled columns with round_id and answer_raw as
    text (exact integers); a feed read from that file publishes the same rounds as the CSV."""
    src = pd.read_csv(HISTORIC_DIR / ROUNDS_2022, comment="#", dtype={"answer_raw": str, "round_id": str})
    src.to_parquet(tmp_path / "rounds.parquet", index=False)
    events = []
    for file in (ROUNDS_2022, str(tmp_path / "rounds.parquet")):
        raw = steth_scenario("24h")
        raw["market"]["replay"]["feeds"][0]["file"] = file
        m = StressModel(load(raw))
        m.run()
        events.append([(e.block, e.price, e.reason) for e in m.env.events if e.source == "cl-steth-eth"])
    assert events[0] == events[1] and len(events[0]) > 0
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    raw = steth_scenario("24h")
    raw["market"]["replay"]["feeds"][0]["file"] = str(tmp_path / "bad.parquet")
    with pytest.raises(ScenarioError, match=r"market\.replay\.feeds\.0.*bad\.parquet.*cannot read as Parquet"):
        check_data(load(raw))


def test_a_composite_is_the_product_of_its_feeds_and_protocols_read_it():
    m = StressModel(load(steth_scenario("6h")))
    m.run()
    ts = m.recorder.frame()
    np.testing.assert_allclose(
        ts["oracle_aave-steth_usd"], ts["oracle_cl-steth-eth_eth"] * ts["oracle_cl-eth-usd_usd"], rtol=1e-12
    )
    lend = m.protocols["lend"]
    assert lend.prices()[lend.idx["stETH"]] == m.oracles["aave-steth"].price
    # the ratio feed is named by its unit and left out of the USD oracle error
    assert "oracle_cl-steth-eth_usd" not in ts


def test_a_protocol_cannot_read_a_ratio_feed_directly():
    raw = steth_scenario()
    raw["protocols"][0]["oracles"]["stETH"] = "cl-steth-eth"
    with pytest.raises(ScenarioError) as info:
        load(raw)
    assert info.value.errors == [
        "protocols.lend.oracles.stETH: 'cl-steth-eth' answers in ETH, not USD; price it through a composite oracle"
    ]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r["oracles"][0].update(feed="nope"), "oracles.cl-steth-eth.feed: unknown feed 'nope'"),
        (
            lambda r: r["oracles"][2].update(feeds=["cl-eth-usd", "cl-steth-eth"]),
            "oracles.aave-steth.feeds: 'cl-eth-usd' is in USD but 'cl-steth-eth' prices stETH",
        ),
        (
            lambda r: r["oracles"].insert(0, r["oracles"].pop(2)),
            "oracles.aave-steth.feeds: 'cl-steth-eth' is not an oracle listed before 'aave-steth'",
        ),
    ],
)
def test_oracle_links_are_keyed_errors(edit, expected):
    raw = steth_scenario()
    edit(raw)
    with pytest.raises(ScenarioError) as info:
        load(raw)
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_staleness_is_logged_when_an_answer_outlives_max_age():
    # rounds of 11 June 13:20:26 and 12 June 13:20:05: with max_age 12 h the first is stale from
    # 12 June 01:20:26 (4826 s into the run, block 403) until the 13:20:05 round (block 4001)
    m = StressModel(load(steth_scenario("14h", max_age="12h")))
    m.run()
    ev = [(e.block, e.name) for e in m.env.events if getattr(e, "name", "") in ("oracle_stale", "oracle_fresh")]
    assert ev == [(403, "oracle_stale"), (4001, "oracle_fresh")]


def test_round_files_used_as_candles_fail_in_validate_not_only_in_run():
    raw = steth_scenario()
    raw["market"]["replay"]["series"][1] = {"asset": "stETH", "file": ROUNDS_2023, "symbol": "stETH/ETH"}
    loaded = load(raw)  # the schema alone cannot see a file's columns
    with pytest.raises(ScenarioError) as info:
        check_data(loaded)  # what `defistress validate` runs, as `run` would
    assert info.value.errors[0].startswith("market.replay.series.1: ") and "missing column(s)" in info.value.errors[0]


# --- a venue's own series, and the anchored view reading it --------------------------------------------------
@pytest.fixture
def coinbase_dai(tmp_path):
    """A made-up 1-minute DAI/USD series of one venue with a 30% spike from minute 60 to 62 (a test input)."""
    t = pd.date_range("2020-11-26T00:00:00Z", periods=180, freq="1min")
    price = np.ones(180)
    price[60:63] = 1.30
    f = tmp_path / "coinbase_dai.csv"
    pd.DataFrame({"timestamp_utc": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "price": price}).to_csv(f, index=False)
    return f


def venue_scenario(feed_file) -> dict:
    return {
        "run": {"name": "venue", "duration": "2h", "block_seconds": 12},
        "market": {
            "assets": [{"symbol": "DAI", "peg": 1.0, "peg_volatility": 0.0}],
            "replay": {
                "start": "2020-11-26T00:00:00Z",
                "feeds": [
                    {
                        "id": "coinbase-dai",
                        "file": str(feed_file),
                        "format": "close",
                        "column": "price",
                        "interval": "1m",
                    }
                ],
            },
        },
        "oracles": [
            {"id": "coinbase", "asset": "DAI", "source": "feed:coinbase-dai", "deviation": 0.01, "heartbeat": "1h"},
            {
                "id": "uav",
                "kind": "anchored",
                "asset": "DAI",
                "source": "feed:coinbase-dai",
                "anchor": "reference",
                "anchor_tolerance": 0.2,
            },
        ],
    }


def test_an_oracle_reads_one_venues_series_and_the_anchor_guards_its_spike(coinbase_dai):
    m = StressModel(load(venue_scenario(coinbase_dai)))
    m.run()
    ts = m.recorder.frame()
    # minute 60 is block 300: the venue oracle follows the venue to 1.30 there and back at minute 63
    assert ts["oracle_coinbase_usd"][299] == 1.0 and ts["oracle_coinbase_usd"][300] == 1.30
    assert ts["oracle_coinbase_usd"][315] == 1.0
    # the anchored view refuses 1.30 against a reference anchor of 1.00 (ratio 0.77 < 0.8) and keeps 1.00
    assert ts["oracle_uav_usd"].max() == 1.0
    guarded = [e for e in m.env.events if getattr(e, "name", "") == "price_guarded"]
    assert guarded and {e.detail["reporter_price"] for e in guarded} == {1.30}
    assert guarded[0].block == 300 and guarded[-1].block == 314


# --- Liquity's primary / fallback rules ------------------------------------------------------------------------
class Feed:
    """A stand-in feed with the fields the fallback reads (answer, previous answer, times, round, validity)."""

    def __init__(self, price, prev=None, t=0.0, prev_t=0.0, round_id=2, ok=True):
        self.price, self.prev_price, self.updated_at, self.prev_updated_at = (
            price,
            price if prev is None else prev,
            t,
            prev_t,
        )
        self.round_id, self.ok, self.updates = round_id, ok, 0


def fetch(primary: Feed, fallback: Feed, last_good: float, now: float, status: int = 0) -> tuple[int, float]:
    o = FallbackOracle(mesa.Model(rng=0), "pf", "ETH", primary, fallback, lambda: 1.0)  # type: ignore[arg-type]
    o.price, o.status = last_good, STATUSES[status]
    o.update(1, now)
    return STATUSES.index(o.status), o.price


@pytest.mark.parametrize(
    "case, primary, fallback, now, status_before, last_good, expected",
    [
        ("C1 price drop of >50%: switch to Tellor", Feed(0.99999999, prev=2.0), Feed(2.03), 0.0, 0, 2.0, (1, 2.03)),
        ("C1 price drop of 50%: remain chainlinkWorking", Feed(1.0, prev=2.0), Feed(2.03), 0.0, 0, 2.0, (0, 1.0)),
        ("C1 price drop of <50%: remain", Feed(1.00000001, prev=2.0), Feed(2.03), 0.0, 0, 2.0, (0, 1.00000001)),
        (
            "C1 price increase of >100%: switch to Tellor",
            Feed(4.00000001, prev=2.0),
            Feed(2.03),
            0.0,
            0,
            2.0,
            (1, 2.03),
        ),
        ("C1 price increase of 100%: remain", Feed(4.0, prev=2.0), Feed(2.03), 0.0, 0, 2.0, (0, 4.0)),
        (
            "C1 drop >50%, Tellor matches: remain",
            Feed(0.99999999, prev=2.0),
            Feed(0.99999999),
            0.0,
            0,
            2.0,
            (0, 0.99999999),
        ),
        (
            "C1 drop >50%, Tellor within 5%: remain",
            Feed(0.99999999, prev=2.0),
            Feed(1.04),
            0.0,
            0,
            2.0,
            (0, 0.99999999),
        ),
        ("C1 drop >50%, Tellor not within 5%: Tellor", Feed(0.99999999, prev=2.0), Feed(1.06), 0.0, 0, 2.0, (1, 1.06)),
        (
            "C1 drop >50%, Tellor frozen: last good",
            Feed(0.99999999, prev=2.0, t=14401),
            Feed(2.03),
            14401.0,
            0,
            2.0,
            (1, 2.0),
        ),
        (
            "C1 drop >50%, Tellor broken by 0 price: both untrusted",
            Feed(0.99999999, prev=2.0),
            Feed(0.0),
            0.0,
            0,
            2.0,
            (2, 2.0),
        ),
        (
            "C1 Chainlink frozen, Tellor working: Tellor",
            Feed(999.0),
            Feed(123.0, t=14401),
            14401.0,
            0,
            999.0,
            (3, 123.0),
        ),
        ("C1 Chainlink frozen, Tellor frozen: last good", Feed(999.0), Feed(123.0), 14401.0, 0, 999.0, (3, 999.0)),
        ("C1 Chainlink times out, Tellor broken: last good", Feed(999.0), Feed(0.0), 14401.0, 0, 999.0, (4, 999.0)),
        ("C1 Chainlink out of date by <4 h: remain", Feed(999.0), Feed(123.0), 14000.0, 0, 999.0, (0, 999.0)),
        (
            "C1 Chainlink broken by zero round, Tellor working",
            Feed(999.0, round_id=0),
            Feed(123.0),
            0.0,
            0,
            999.0,
            (1, 123.0),
        ),
        ("C1 Chainlink broken by future timestamp", Feed(999.0, t=10.0), Feed(123.0), 5.0, 0, 999.0, (1, 123.0)),
        ("C1 Chainlink broken (reverted call)", Feed(999.0, ok=False), Feed(123.0), 0.0, 0, 999.0, (1, 123.0)),
        ("C1 working, Tellor broken: remember it", Feed(999.0), Feed(0.0), 0.0, 0, 999.0, (4, 999.0)),
        ("C2 both live and similar: back to Chainlink", Feed(100.0), Feed(101.0), 0.0, 1, 7.0, (0, 100.0)),
        ("C3 both untrusted, now similar: back to Chainlink", Feed(100.0), Feed(103.0), 0.0, 2, 7.0, (0, 100.0)),
        ("C3 both untrusted, not similar: last good", Feed(100.0), Feed(110.0), 0.0, 2, 7.0, (2, 7.0)),
    ],
)
def test_liquity_pricefeed_cases(case, primary, fallback, now, status_before, last_good, expected):
    status, price = fetch(primary, fallback, last_good, now, status_before)
    assert (status, price) == pytest.approx(expected), case


def test_a_broken_primary_in_a_run_hands_over_to_the_fallback():
    raw = {
        "run": {"name": "fb", "duration": "2h", "block_seconds": 12},
        "market": {"assets": [{"symbol": "ETH", "price": 2000.0}]},
        "oracles": [
            {
                "id": "chainlink",
                "asset": "ETH",
                "deviation": 0.0,
                "heartbeat": "1h",
                "failure": {"mode": "broken", "at": "1h"},
            },
            {"id": "tellor", "asset": "ETH", "deviation": 0.0, "heartbeat": "1h"},
            {"id": "liquity", "kind": "fallback", "asset": "ETH", "primary": "chainlink", "fallback": "tellor"},
        ],
    }
    m = StressModel(load(raw))
    m.run()
    status = [(e.block, e.detail["new"]) for e in m.env.events if getattr(e, "name", "") == "oracle_status"]
    assert status == [(300, "usingTellorChainlinkUntrusted")]  # broken from 1 h = block 300
    assert m.oracles["liquity"].price == m.oracles["tellor"].price


# --- Maker's OSM ------------------------------------------------------------------------------------------------
def test_the_osm_pokes_on_the_hour_of_unix_time_and_serves_the_price_of_one_hop_before():
    # a run that starts at 00:30 UTC: zzz = prev(00:30) = 00:00, so the first poke is allowed at 01:00 (1800 s in)
    src = {"p": 100.0}
    osm = DelayedOracle(mesa.Model(rng=0), "osm", "ETH", lambda: src["p"], lambda: src["p"], 3600.0, epoch_s=1_800.0)
    assert osm.update(0, 0.0) is None and osm.price == 100.0
    src["p"] = 90.0
    assert osm.update(149, 1788.0) is None  # 00:59:48: not yet
    ev = osm.update(150, 1800.0)  # 01:00: cur = nxt (100, read at deployment), nxt = 90
    assert ev is not None and osm.price == 100.0 and osm.next_price == 90.0
    src["p"] = 80.0
    assert osm.update(151, 1812.0) is None
    osm.update(450, 5400.0)  # 02:00: the 01:00 price becomes current
    assert osm.price == 90.0 and osm.next_price == 80.0
