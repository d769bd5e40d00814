"""`defistress margin compare|backtest` through typer's CliRunner."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from defistress.sim.cli.margin import margin_app

ROOT = Path(__file__).resolve().parents[2]
BOOKS = ROOT / "scenarios" / "portfolios" / "example_books.toml"
runner = CliRunner()


@pytest.fixture
def price_csv(tmp_path):
    """A seeded hourly GBM path in the historic file format (comment header, long format)."""
    rng = np.random.default_rng(2)
    n = 320
    px = 2000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = "".join(f"{t},ETH-USDT,binance,{p},{p * 1.01},{p * 0.99},{p},1.0,synthetic\n" for t, p in zip(ts, px))
    f = tmp_path / "eth_1h.csv"
    f.write_text(
        "# synthetic test path\ntimestamp_utc,symbol,venue,open,high,low,close,volume_base,source_repo\n" + rows
    )
    return f


def test_compare_prints_tables_and_writes_csv_and_png(tmp_path):
    out = tmp_path / "cmp"
    res = runner.invoke(
        margin_app, ["compare", str(BOOKS), "--models", "lyra-standard,aave-v3,var-mc", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "naked-short-put" in res.output and "lyra-standard" in res.output
    df = pd.read_csv(out / "compare.csv")
    assert len(df) == 8 * 3 and set(df["model"]) == {"lyra-standard", "aave-v3", "var-mc"}
    assert (out / "compare.png").stat().st_size > 1000


def test_unknown_model_exits_2_listing_allowed_names_without_traceback(tmp_path):
    res = runner.invoke(
        margin_app, ["compare", str(BOOKS), "--models", "lyra-standard,nope", "--out", str(tmp_path / "out")]
    )
    assert res.exit_code == 2
    assert "nope" in res.output and "allowed" in res.output and "hyperliquid" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(margin_app, ["backtest", "--path", str(BOOKS), "--symbol", "ETH-USDT", "--model", "nope"])
    assert res.exit_code == 2 and "allowed" in res.output


def test_invalid_portfolio_file_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[market]\nspot = { ETH = 2000.0 }\nvol = { ETH = 0.6 }\n[[accounts]]\nname = "x"\n'
        '[[accounts.positions]]\nkind = "swap"\nunderlying = "ETH"\nqty = 1.0\n'
    )
    res = runner.invoke(margin_app, ["compare", str(bad), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "accounts[0].positions[0].kind" in res.output


def test_backtest_prints_the_tests_and_writes_json_and_png(tmp_path, price_csv):
    out = tmp_path / "bt"
    res = runner.invoke(
        margin_app,
        [
            "backtest",
            "--path",
            str(price_csv),
            "--symbol",
            "ETH-USDT",
            "--model",
            "var-normal",
            "--confidence",
            "0.99",
            "--window",
            "250",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    for word in ("Kupiec", "Christoffersen", "traffic light"):
        assert word in res.output
    summary = json.loads((out / "backtest.json").read_text())
    assert summary["n"] == 320 - 250 - 1 and summary["symbol"] == "ETH-USDT"
    assert summary["traffic_light"]["zone"] in ("green", "yellow", "red")
    assert 0.0 <= summary["kupiec_p"] <= 1.0
    assert (out / "backtest.png").stat().st_size > 1000


def test_backtest_window_longer_than_the_path_exits_2(tmp_path, price_csv):
    res = runner.invoke(
        margin_app,
        [
            "backtest",
            "--path",
            str(price_csv),
            "--symbol",
            "ETH-USDT",
            "--window",
            "400",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2 and "window=400" in res.output
