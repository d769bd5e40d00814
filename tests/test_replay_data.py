"""Replayed data: several files with declared time zones and intervals, keyed errors for every malformed
input (gap, window outside the file, missing column, bad timestamp, duplicate, impossible candle), quoted
series, and the intrabar bridge through each candle's open, low, high and close.

Expected values are read from the bundled CSVs with pandas (an independent reading of the same rows) or
worked by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from defistress.scenarios.loader import HISTORIC_DIR, ScenarioError, load
from defistress.sim.engine.bridge import candle_path, intrabar_path
from defistress.sim.engine.market import Market
from defistress.sim.engine.replay import DataFileError, check_data, load_replay, read_series, step_hold

H1 = "01_black_thursday_2020-03_ETH_BTC_1h.csv"
ETH_10MIN = "01b_black_thursday_2020-03-12_ETH_10min.csv"
GAS_10MIN = "01b_black_thursday_2020-03-12_gas_10min.csv"
ROUNDS_2022 = "05c_steth_eth_chainlink_rounds_2022-05_to_2022-07.csv"
BS = 12.0  # seconds per block


def scenario(replay: dict, duration: str = "2h", assets: list[dict] | None = None, gas: dict | None = None) -> dict:
    raw = {
        "run": {"name": "replay-test", "duration": duration, "block_seconds": BS},
        "market": {"assets": assets or [{"symbol": "ETH"}, {"symbol": "USDC", "peg": 1.0}], "replay": replay},
    }
    if gas is not None:
        raw["gas"] = {"replay": gas}
    return raw


def data_of(raw: dict):
    loaded = load(raw)
    return load_replay(loaded.scenario, loaded.resolve_data)


def error_of(raw: dict) -> DataFileError:
    with pytest.raises(DataFileError) as info:
        data_of(raw)
    return info.value


def rows(file: str, symbol: str | None = None) -> pd.DataFrame:
    df = pd.read_csv(HISTORIC_DIR / file, comment="#")
    return df[df["symbol"] == symbol].reset_index(drop=True) if symbol else df


def copy_without(tmp_path: Path, file: str, drop_row: int | None = None, edit=None) -> Path:
    """A copy of a bundled file with one data row dropped or edited (header comments kept)."""
    lines = (HISTORIC_DIR / file).read_text().splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    if drop_row is not None:
        del lines[header + 1 + drop_row]
    if edit is not None:
        lines = edit(lines, header)
    out = tmp_path / f"edited_{file}"
    out.write_text("".join(lines))
    return out


# --- several files, one per asset ----------------------------------------------------------------------------
def test_two_assets_from_two_files_each_with_its_own_interval():
    raw = scenario(
        {
            "start": "2020-03-12T00:00:00Z",
            "series": [
                {"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min", "interval": "10m"},
                {"asset": "BTC", "file": H1, "symbol": "BTC-USDT", "interval": "1h"},
            ],
        },
        assets=[{"symbol": "ETH"}, {"symbol": "BTC"}, {"symbol": "USDC", "peg": 1.0}],
    )
    data = data_of(raw)
    eth, btc = data.asset_path("ETH"), data.asset_path("BTC")
    e, b = rows(ETH_10MIN), rows(H1, "BTC-USDT")
    b = b[b["timestamp_utc"] >= "2020-03-12"].reset_index(drop=True)
    per10, per_h = 50, 300  # blocks per 10 minutes and per hour
    # hold: the open until the first candle ends, then each finished candle's close
    assert (
        eth[0] == e["price_open"][0] and eth[per10] == e["price_close"][0] and eth[3 * per10 + 1] == e["price_close"][2]
    )
    assert btc[0] == b["open"][0] and btc[per_h] == b["close"][0] and btc[per_h - 1] == b["open"][0]
    assert data.epoch == pd.Timestamp("2020-03-12", tz="UTC").timestamp()
    man = data.manifest()
    assert [s["interval_s"] for s in man["series"]] == [600.0, 3600.0]
    assert all(s["interval_declared"] for s in man["series"])
    assert set(data.data_sha256()) == {ETH_10MIN, H1}


def test_default_start_is_the_latest_first_row_so_no_series_is_filled_before_its_data():
    # ETH 10-minute data start 2020-03-12 00:00, BTC hourly 2020-03-11 00:00: the run starts on the 12th
    raw = scenario(
        {
            "series": [
                {"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"},
                {"asset": "BTC", "file": H1, "symbol": "BTC-USDT"},
            ]
        },
        assets=[{"symbol": "ETH"}, {"symbol": "BTC"}],
    )
    data = data_of(raw)
    assert data.epoch == pd.Timestamp("2020-03-12", tz="UTC").timestamp()
    assert data.manifest()["start_declared"] is False


# --- keyed errors, nothing filled ---------------------------------------------------------------------------
def test_a_gap_larger_than_the_interval_names_the_key_file_and_timestamp(tmp_path):
    f = copy_without(tmp_path, ETH_10MIN, drop_row=3)  # the 00:30 candle is missing
    err = error_of(
        scenario({"series": [{"asset": "ETH", "file": str(f), "format": "coinapi_10min", "interval": "10m"}]})
    )
    assert err.key == "market.replay.series.0" and err.file == str(f)
    assert err.timestamp == "2020-03-12T00:20:00Z"
    assert "gap of 1200 s after the row at 2020-03-12T00:20:00Z" in str(err) and "interval 600 s" in str(err)


def test_a_gap_outside_the_run_window_is_not_an_error(tmp_path):
    f = copy_without(tmp_path, ETH_10MIN, drop_row=100)  # 16:40, far after a 2-hour run
    data = data_of(
        scenario({"series": [{"asset": "ETH", "file": str(f), "format": "coinapi_10min", "interval": "10m"}]})
    )
    assert len(data.asset_path("ETH")) == 600


def test_a_run_that_starts_before_the_file_is_a_window_error():
    err = error_of(
        scenario(
            {
                "start": "2020-03-11T23:00:00Z",
                "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}],
            }
        )
    )
    assert err.key == "market.replay.series.0" and "window outside the file" in str(err)
    assert err.timestamp == "2020-03-11T23:00:00Z" and "2020-03-12T00:00:00Z" in str(err)


def test_a_run_longer_than_its_data_is_refused_unless_hold_is_declared():
    base = {"start": "2020-03-12T22:00:00Z", "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}]}
    err = error_of(scenario(base, duration="3h"))
    # the last candle opens 23:50 and ends 2020-03-13 00:00; the run's last block is 00:59:48 on the 13th
    assert "2020-03-13T00:59:48Z" in str(err) and "2020-03-13T00:00:00Z" in str(err) and "after_end" in str(err)
    data = data_of(scenario({**base, "after_end": "hold"}, duration="3h"))
    p = data.asset_path("ETH")
    assert np.all(p[600:] == rows(ETH_10MIN)["price_close"].iloc[-1])  # held flat from midnight (block 600)
    assert data.manifest()["held_from"] == {"market.replay.series.0": "2020-03-13T00:00:00Z"}


def test_a_missing_column_names_the_file_and_the_columns_found(tmp_path):
    err = error_of(scenario({"series": [{"asset": "ETH", "file": ROUNDS_2022, "format": "coinapi_10min"}]}))
    assert err.key == "market.replay.series.0" and err.file.endswith(ROUNDS_2022)
    assert "missing column(s) ['timestamp_utc', 'price_open'" in str(err) and "updated_at_utc" in str(err)


def test_an_unparseable_or_duplicate_timestamp_is_named(tmp_path):
    def garble(lines, header):
        lines[header + 2] = lines[header + 2].replace("2020-03-12T00:10:00Z", "12/03/2020 25:10", 1)
        return lines

    err = error_of(
        scenario(
            {
                "series": [
                    {
                        "asset": "ETH",
                        "file": str(copy_without(tmp_path, ETH_10MIN, edit=garble)),
                        "format": "coinapi_10min",
                    }
                ]
            }
        )
    )
    assert "'12/03/2020 25:10'" in str(err) and err.key == "market.replay.series.0"

    def duplicate(lines, header):
        lines.insert(header + 2, lines[header + 1])
        return lines

    err = error_of(
        scenario(
            {
                "series": [
                    {
                        "asset": "ETH",
                        "file": str(copy_without(tmp_path, ETH_10MIN, edit=duplicate)),
                        "format": "coinapi_10min",
                    }
                ]
            }
        )
    )
    assert "two rows share the timestamp 2020-03-12T00:00:00Z" in str(err)


def test_a_candle_whose_low_is_above_its_close_is_refused(tmp_path):
    def bad_low(lines, header):
        cols = lines[header].strip().split(",")
        row = lines[header + 1].split(",")
        row[cols.index("price_low")] = "999"
        lines[header + 1] = ",".join(row)
        return lines

    f = copy_without(tmp_path, ETH_10MIN, edit=bad_low)
    err = error_of(scenario({"series": [{"asset": "ETH", "file": str(f), "format": "coinapi_10min"}]}))
    assert err.timestamp == "2020-03-12T00:00:00Z" and "low 999 and high" in str(err)


def test_the_one_file_form_errors_name_its_symbols_key(tmp_path):
    f = copy_without(tmp_path, H1, drop_row=30)  # ETH-USDT 2020-03-12 06:00 (ETH rows come after 96 BTC rows: no)
    df = pd.read_csv(f, comment="#")
    missing = set(rows(H1)["timestamp_utc"][rows(H1)["symbol"] == "BTC-USDT"]) - set(
        df["timestamp_utc"][df["symbol"] == "BTC-USDT"]
    )
    assert missing == {"2020-03-12T06:00:00Z"}
    raw = scenario(
        {"file": str(f), "symbols": {"BTC": "BTC-USDT"}, "interval": "1h", "start": "2020-03-12T00:00:00Z"},
        duration="10h",
        assets=[{"symbol": "BTC"}],
    )
    err = error_of(raw)
    assert err.key == "market.replay.symbols.BTC" and err.timestamp == "2020-03-12T05:00:00Z"


# --- time zones ---------------------------------------------------------------------------------------------
def test_timestamps_without_offset_are_read_in_the_declared_zone(tmp_path):
    e = rows(ETH_10MIN)
    # the same candles written as New York wall-clock times (UTC-4 in March 2020 after the 8 March DST change)
    local = (
        pd.to_datetime(e["timestamp_utc"], utc=True).dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    f = tmp_path / "eth_new_york.csv"
    e.assign(timestamp_utc=local).to_csv(f, index=False)
    utc = read_series(HISTORIC_DIR / ETH_10MIN, "k", "coinapi_10min")
    ny = read_series(f, "k", "coinapi_10min", timezone="America/New_York")
    assert np.array_equal(utc.times, ny.times)
    assert local.iloc[0] == "2020-03-11 20:00:00"  # 00:00 UTC is 20:00 the evening before in New York
    with pytest.raises(ScenarioError) as info:
        load(
            scenario(
                {"timezone": "Mars/Olympus", "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}]}
            )
        )
    assert "unknown time zone 'Mars/Olympus'" in info.value.errors[0]


# --- quoted series (stETH/ETH rounds x ETH/USD) -----------------------------------------------------------
def test_a_series_quoted_in_another_asset_is_multiplied_by_its_usd_path():
    raw = scenario(
        {
            "start": "2022-06-12T00:00:00Z",
            "series": [
                {
                    "asset": "ETH",
                    "file": "05_steth_celsius_3ac_2022-06_ETH_BTC_1h.csv",
                    "symbol": "ETH-USDT",
                    "interval": "1h",
                },
                {
                    "asset": "stETH",
                    "file": ROUNDS_2022,
                    "format": "chainlink_rounds",
                    "interval": "25h",
                    "quote": "ETH",
                },
            ],
        },
        duration="6h",
        assets=[{"symbol": "ETH"}, {"symbol": "stETH"}],
    )
    loaded = load(raw)
    data = load_replay(loaded.scenario, loaded.resolve_data)
    m = Market(loaded.scenario, np.random.default_rng(1), data, np.random.default_rng(2))
    r = pd.read_csv(HISTORIC_DIR / ROUNDS_2022, comment="#", dtype={"answer_raw": str})
    before = r[r["updated_at_utc"] <= "2022-06-12T00:00:00Z"].iloc[-1]
    ratio = int(before["answer_raw"]) / 10 ** int(before["decimals"])
    eth = m.exogenous[:, m.index["ETH"]]
    assert m.exogenous[0, m.index["stETH"]] == pytest.approx(ratio * eth[0], rel=1e-12)
    assert data.manifest()["series"][1]["quote"] == "ETH"


def test_a_quote_that_is_not_a_market_asset_is_a_keyed_schema_error():
    with pytest.raises(ScenarioError) as info:
        load(scenario({"series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min", "quote": "BTC"}]}))
    assert info.value.errors == [
        "market.replay.series.0.quote: 'BTC' must be another market asset; allowed: ['ETH', 'USDC']"
    ]


# --- the intrabar bridge --------------------------------------------------------------------------------------
def test_the_bridge_visits_open_low_high_and_close_of_every_candle_and_stays_inside():
    raw = scenario(
        {
            "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min", "interval": "10m"}],
            "fill": "bridge",
        },
        duration="24h",
    )
    loaded = load(raw)
    data = load_replay(loaded.scenario, loaded.resolve_data)
    p = data.asset_path("ETH", np.random.default_rng(5))
    e = rows(ETH_10MIN)
    k = 50
    for i in range(len(e)):
        c = p[i * k : (i + 1) * k]
        o, h, lo, cl = (float(e[col][i]) for col in ("price_open", "price_high", "price_low", "price_close"))
        assert c[0] == pytest.approx(o, rel=1e-12) and c[-1] == pytest.approx(cl, rel=1e-12)
        assert c.min() == lo and c.max() == h  # visited exactly, never left
        first_low, first_high = int(np.argmin(c)), int(np.argmax(c))
        if lo < min(o, cl) and h > max(o, cl):  # both extremes strictly inside: the order follows the direction
            assert (first_low < first_high) == (cl >= o)
    # the day's low reaches a block; holding closes never shows it
    assert p.min() == pytest.approx(e["price_low"].min())
    assert step_hold(data.series["ETH"], data.block_times).min() > e["price_low"].min()
    man = data.manifest()["series"][0]
    assert man["fill"] == "bridge" and man["bridge"]["method"] == "brownian-bridge-through-extremes"


def test_the_bridge_is_reproducible_from_the_seed_and_varies_across_seeds():
    raw = scenario({"series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}], "fill": "bridge"})
    loaded = load(raw)
    data = load_replay(loaded.scenario, loaded.resolve_data)
    a = data.asset_path("ETH", np.random.default_rng(3))
    b = data.asset_path("ETH", np.random.default_rng(3))
    c = data.asset_path("ETH", np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_single_candle_path_is_a_pinned_brownian_bridge():
    rng = np.random.default_rng(0)
    path = candle_path(100.0, 110.0, 95.0, 104.0, 20, "direction", rng)  # rising candle: low first
    assert path[0] == 100.0 and path[-1] == pytest.approx(104.0)
    assert (
        np.argmin(path) < np.argmax(path) and path.min() == pytest.approx(95.0) and path.max() == pytest.approx(110.0)
    )
    falling = candle_path(100.0, 110.0, 95.0, 96.0, 20, "direction", np.random.default_rng(0))
    assert np.argmax(falling) < np.argmin(falling)


def test_the_bridge_refuses_close_only_series_and_too_few_blocks_per_candle():
    err = error_of(
        scenario(
            {
                "series": [{"asset": "ETH", "file": GAS_10MIN, "format": "close", "column": "avgGasDay"}],
                "fill": "bridge",
            }
        )
    )
    assert err.key == "market.replay.series.0.fill" and "needs OHLC candles" in str(err)
    raw = scenario({"series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}], "fill": "bridge"})
    raw["run"]["block_seconds"] = 200.0  # 3 blocks per 10-minute candle
    err = error_of(raw)
    assert "at least 4 blocks per candle" in str(err) and "hold 3 block(s)" in str(err)


def test_intrabar_path_holds_the_last_close_after_the_data():
    s = read_series(HISTORIC_DIR / ETH_10MIN, "k", "coinapi_10min")
    t = s.times[-1] + 600 + np.arange(3) * BS
    assert np.all(intrabar_path(s, t, BS, "direction", np.random.default_rng(0)) == s.close[-1])


# --- gas ------------------------------------------------------------------------------------------------------
def test_gas_replay_starts_with_the_market_replay_and_says_so():
    raw = scenario(
        {"start": "2020-03-12T01:00:00Z", "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}]},
        gas={"file": GAS_10MIN, "interval": "10m"},
    )
    data = data_of(raw)
    g = rows(GAS_10MIN)
    # 01:00 is the 7th bucket (row 6); the base fee is its mean gas price in gwei
    assert data.gas.gwei[0] == pytest.approx(g["avgGasDay"][6] * 1e-9)
    assert data.gas.gwei[50] == pytest.approx(g["avgGasDay"][7] * 1e-9)
    assert data.gas.info["path"] == "replayed" and data.gas.info["start_from"] == "market.replay.start"
    assert data.gas.info["start"] == "2020-03-12T01:00:00Z"


def test_the_19_may_2021_gas_series_is_replayed_bucket_by_bucket():
    """The other bundled gas series (03b): every block's base fee is its 10-minute bucket's mean gas price."""
    eth, gas = "03b_may19_crash_2021-05-19_ETH_10min.csv", "03b_may19_crash_2021-05-19_gas_10min.csv"
    raw = scenario(
        {"start": "2021-05-19T12:00:00Z", "series": [{"asset": "ETH", "file": eth, "format": "coinapi_10min"}]},
        duration="3h",
        gas={"file": gas, "interval": "10m"},
    )
    data = data_of(raw)
    g = rows(gas)["avgGasDay"].to_numpy()
    # block b is at 12:00 + 12 b s, in bucket 72 + floor(12 b / 600) (12:00 is the 73rd bucket of the day)
    blocks = np.arange(len(data.gas.gwei))
    np.testing.assert_allclose(data.gas.gwei, g[72 + (blocks * 12) // 600] * 1e-9, rtol=1e-12)
    assert data.gas.info["path"] == "replayed" and data.gas.info["start"] == "2021-05-19T12:00:00Z"


def test_gas_replay_window_errors_are_keyed():
    raw = scenario(
        {
            "start": "2020-03-12T23:00:00Z",
            "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}],
            "after_end": "hold",
        },
        gas={"file": GAS_10MIN},
    )
    err = error_of(raw)
    assert err.key == "gas.replay" and "after_end" in str(err)


# --- validate reads the data as run does ---------------------------------------------------------------------
def test_validate_reports_a_data_error_with_its_key():
    loaded = load(scenario({"series": [{"asset": "ETH", "file": ROUNDS_2022, "format": "coinapi_10min"}]}))
    with pytest.raises(ScenarioError) as info:
        check_data(loaded)
    (line,) = info.value.errors
    assert line.startswith("market.replay.series.0: ") and "missing column(s)" in line


def test_the_readme_figures_of_the_bridge_are_what_the_data_give():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    text = " ".join(readme.split())
    for file, fmt, symbol, duration, hold_min, low in (
        (ETH_10MIN, "coinapi_10min", None, "24h", "$106.59", "$101.01"),
        (H1, "ohlc_long", "ETH-USDT", "48h", "$96.62", "$86.00"),
    ):
        series = {"asset": "ETH", "file": file, "format": fmt, **({"symbol": symbol} if symbol else {})}
        raw = scenario({"start": "2020-03-12T00:00:00Z", "fill": "bridge", "series": [series]}, duration=duration)
        data = data_of(raw)
        hold = step_hold(data.series["ETH"], data.block_times)
        bridged = data.asset_path("ETH", np.random.default_rng(1))
        assert f"${hold.min():.2f}" == hold_min and f"${bridged.min():.2f}" == low
        assert hold_min in text and low in text
