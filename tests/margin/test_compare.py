"""Model comparison, portfolio files (TOML/JSON) with key-path errors, historic price paths, plots."""

import json
from pathlib import Path

import numpy as np
import pytest

from defistress.protocols.margin.compare import (
    compare,
    load_portfolio_file,
    load_price_path,
    main_driver,
    parse_portfolio,
    price_series,
    returns_from_prices,
)
from defistress.sim.report.plots_margin import plot_backtest, plot_compare

ROOT = Path(__file__).resolve().parents[2]
BOOKS = ROOT / "scenarios" / "portfolios" / "example_books.toml"
HISTORIC = (
    Path(__file__).resolve().parents[2] / "scenarios" / "historic" / "data" / "01_black_thursday_2020-03_ETH_BTC_1h.csv"
)
MODELS = ["aave-v3", "hyperliquid", "lyra-standard", "deribit-standard", "greeks", "var-mc"]

DOC = {
    "market": {"spot": {"ETH": 2000.0}, "vol": {"ETH": 0.6}},
    "accounts": [
        {
            "name": "short-put",
            "cash": 1000.0,
            "positions": [{"kind": "put", "underlying": "ETH", "strike": 1800.0, "expiry_days": 30, "qty": -1.0}],
        }
    ],
}


def test_example_books_load_with_the_eight_designer_cases():
    pf, mkt = load_portfolio_file(BOOKS)
    assert pf.labels == (
        "naked-short-put",
        "covered-call",
        "spot-hedged-with-short-perp",
        "bull-put-spread",
        "short-strangle",
        "delta-hedged-short-straddle",
        "leveraged-long-perp",
        "spot-collateral-stablecoin-loan",
    )
    assert mkt.spot == {"ETH": 2000.0, "BTC": 60000.0}
    assert pf.cash[-1] == -30000.0


def test_compare_is_tidy_one_row_per_account_and_model():
    pf, mkt = load_portfolio_file(BOOKS)
    df = compare(pf, mkt, MODELS)
    assert list(df.columns) == ["account", "model", "im_usd", "mm_usd", "equity_usd", "excess_mm_usd", "main_driver"]
    assert len(df) == pf.n_accounts * len(MODELS)
    assert (df["mm_usd"] >= -1e-9).all() and (df["im_usd"] >= df["mm_usd"] - 1e-9).all()
    row = df[(df.account == "naked-short-put") & (df.model == "lyra-standard")].iloc[0]
    assert row.mm_usd == pytest.approx(180.0) and row.main_driver == "options"
    loan = df[(df.account == "spot-collateral-stablecoin-loan") & (df.model == "aave-v3")].iloc[0]
    # 25 ETH * 2000 = 50,000 collateral, LT 0.86 -> MM 7,000; equity 50,000 - 30,000 = 20,000
    assert (loan.mm_usd, loan.equity_usd) == pytest.approx((7000.0, 20000.0))


def test_compare_rejects_unknown_models_listing_the_allowed_names():
    pf, mkt = parse_portfolio(DOC)
    with pytest.raises(ValueError, match=r"unknown; allowed \[.*'aave-v3'"):
        compare(pf, mkt, ["aave-v3", "aave-v9"])


def test_history_overrides_reach_only_history_based_models():
    pf, mkt = parse_portfolio(DOC)
    rets, step = returns_from_prices(load_price_path(HISTORIC), pf.underlyings)
    assert step == pytest.approx(1 / 24) and rets["ETH"].size == 95
    df = compare(pf, mkt, ["var-hs", "lyra-standard"], {"returns": rets, "step_days": step})
    assert df.set_index("model").loc["lyra-standard", "mm_usd"] == pytest.approx(180.0)
    assert df.set_index("model").loc["var-hs", "mm_usd"] > 0


def test_json_and_toml_files_give_the_same_book(tmp_path):
    js = tmp_path / "book.json"
    js.write_text(json.dumps(DOC))
    toml = tmp_path / "book.toml"
    toml.write_text(
        '[market]\nspot = { ETH = 2000.0 }\nvol = { ETH = 0.6 }\n\n[[accounts]]\nname = "short-put"\n'
        'cash = 1000.0\n[[accounts.positions]]\nkind = "put"\nunderlying = "ETH"\nstrike = 1800.0\n'
        "expiry_days = 30\nqty = -1.0\n"
    )
    a, b = load_portfolio_file(js)[0], load_portfolio_file(toml)[0]
    assert a.to_records() == b.to_records()


@pytest.mark.parametrize(
    "patch, message",
    [
        (lambda d: d["market"].update(spott={"ETH": 1.0}), r"market\.spott: unknown key; allowed \['spot'"),
        (lambda d: d["market"].pop("vol"), r"market\.vol: required"),
        (lambda d: d["market"]["vol"].update(ETH=-0.1), r"market\.vol\.ETH=-0\.1: allowed"),
        (lambda d: d["accounts"][0]["positions"][0].pop("strike"), r"accounts\[0\]\.positions\[0\]\.strike: required"),
        (
            lambda d: d["accounts"][0]["positions"][0].update(kind="swap"),
            r"accounts\[0\]\.positions\[0\]\.kind='swap': allowed \['spot', 'perp', 'future', 'call', 'put', 'inv",
        ),
        (
            lambda d: d["accounts"][0]["positions"][0].update(underlying="SOL"),
            r"accounts\[0\]\.positions\[0\]\.underlying='SOL': allowed \['ETH'\]",
        ),
        (lambda d: d["accounts"][0]["positions"][0].update(qty="1"), r"accounts\[0\]\.positions\[0\]\.qty='1'"),
        (lambda d: d["accounts"][0].update(colour="red"), r"accounts\[0\]\.colour: unknown key"),
        (lambda d: d["accounts"][0]["positions"][0].update(expiry_days=0), r"expiry_days: required > 0"),
    ],
)
def test_portfolio_errors_name_the_key_path_and_allowed_values(patch, message):
    doc = json.loads(json.dumps(DOC))
    patch(doc)
    with pytest.raises(ValueError, match=message):
        parse_portfolio(doc)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[market\n")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        load_portfolio_file(bad)


def test_historic_csv_loads_as_a_tidy_long_frame():
    df = load_price_path(HISTORIC)
    assert list(df.columns[:7]) == ["timestamp_utc", "symbol", "venue", "open", "high", "low", "close"]
    assert set(df["symbol"]) == {"ETH-USDT", "BTC-USDT"} and len(df) == 192
    assert str(df["timestamp_utc"].dt.tz) == "UTC"
    eth = price_series(df, "ETH-USDT")
    assert eth.index.is_monotonic_increasing and len(eth) == 96
    with pytest.raises(ValueError, match=r"symbol='SOL-USDT': allowed \['BTC-USDT', 'ETH-USDT'\]"):
        price_series(df, "SOL-USDT")


CSV_HEAD = "# a comment\n# another\ntimestamp_utc,symbol,venue,open,high,low,close\n"


def test_nan_or_missing_values_name_file_line_and_column(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text(
        CSV_HEAD + "2024-01-01T00:00:00Z,ETH-USDT,binance,1,2,0.5,1.5\n"
        "2024-01-01T01:00:00Z,ETH-USDT,binance,1,2,0.5,NaN\n"
    )
    with pytest.raises(ValueError, match=r"p\.csv: line 5, column 'close'"):
        load_price_path(f)
    f.write_text(CSV_HEAD + "2024-01-01T00:00:00Z,ETH-USDT,binance,1,,0.5,1.5\n")
    with pytest.raises(ValueError, match=r"p\.csv: line 4, column 'high'"):
        load_price_path(f)
    f.write_text("# c\ntimestamp_utc,symbol,venue,open,high,low\n2024-01-01T00:00:00Z,ETH-USDT,binance,1,2,0.5\n")
    with pytest.raises(ValueError, match=r"p\.csv: line 2 \(header\): missing column 'close'"):
        load_price_path(f)
    f.write_text(CSV_HEAD + "yesterday,ETH-USDT,binance,1,2,0.5,1.5\n")
    with pytest.raises(ValueError, match=r"line 4, column 'timestamp_utc'"):
        load_price_path(f)


def test_main_driver_picks_the_largest_requirement_component():
    d = {
        "delta_usd": np.array([1.0, 0.0]),
        "vega_usd": np.array([2.0, 0.0]),
        "native_margin_mm": np.array([99.0, 99.0]),
        "unsupported_positions": np.array([5, 5]),
    }
    assert main_driver(d, 2) == ["vega", "none"]


def test_plots_draw_on_given_axes_without_pyplot_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from defistress.protocols.margin.backtest import backtest

    pf, mkt = parse_portfolio(DOC)
    ax = Figure().add_subplot()
    assert plot_compare(compare(pf, mkt, ["aave-v3", "lyra-standard"]), ax=ax) is ax
    assert len(ax.patches) == 2 * 2 * 1  # MM and IM bars for 2 models x 1 account
    res = backtest(np.array([1.0, 3.0, 0.5]), np.array([2.0, 2.0, 2.0]), 0.9)
    ax2 = plot_backtest(res)
    assert "1/3 exceedances" in ax2.get_title()
    assert plt.get_fignums() == []
