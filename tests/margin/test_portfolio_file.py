"""Portfolio files with forward curves, per-feed confidences, collateral, coin-margined accounts and published
SPAN arrays: what they load into, what `compare` makes of them, and the keyed errors for bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from defistress.protocols.margin.compare import compare, load_portfolio, read_portfolio
from defistress.sim.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
FEEDS = ROOT / "scenarios" / "portfolios" / "feeds_and_inverse.toml"
SPAN_FILE = ROOT / "tests" / "data" / "span" / "cme_btc_sample.pa2"
DAY = 86_400.0

DOC = {
    "market": {
        "spot": {"ETH": 2000.0, "BTC": 60000.0},
        "vol": {"ETH": 0.6, "BTC": 0.5},
        "confidence": {"ETH": 0.9},
        "perp_confidence": {"ETH": 0.5},
        "forwards": {
            "ETH": [
                {"expiry_days": 30, "forward": 2012.0, "rate": 0.05, "vol_confidence": 0.8},
                {"expiry_days": 7, "forward": 2003.0, "rate": 0.04, "vol_confidence": 0.9},
            ]
        },
        "collateral": {"wstETH": {"price": 2350.0, "confidence": 0.98, "risk_cancelling": True, "mm_haircut": 0.05}},
        "span_arrays": {
            "BTC": [
                {"kind": "future", "expiry_days": 40, "losses": [0.0] * 14 + [-100.0, 100.0], "composite_delta": 1.0}
            ]
        },
    },
    "accounts": [
        {
            "name": "eth",
            "cash": 1000.0,
            "positions": [
                {"kind": "put", "underlying": "ETH", "strike": 1900.0, "expiry_days": 30, "qty": -1.0},
                {"kind": "collateral", "underlying": "ETH", "asset": "wstETH", "qty": 2.0},
                {"kind": "perp", "underlying": "ETH", "qty": -1.0, "funding": 5.0},
            ],
        },
        {
            "name": "btc",
            "margin_currency": "BTC",
            "positions": [{"kind": "inverse_perp", "underlying": "BTC", "qty": 6000.0}],
        },
        {"name": "cme", "positions": [{"kind": "future", "underlying": "BTC", "qty": 2.0, "expiry_days": 40}]},
    ],
}


def _doc():
    return json.loads(json.dumps(DOC))


def test_file_builds_curves_collateral_coin_accounts_and_span_arrays():
    f = read_portfolio(_doc())
    mkt, pf = f.market, f.portfolio
    curve = mkt.forwards["ETH"]
    assert curve.expiry_s == (7 * DAY, 30 * DAY) and curve.forward == (2003.0, 2012.0)  # sorted by expiry
    assert curve.rate == (0.04, 0.05) and curve.vol_confidence == (0.9, 0.8)
    assert mkt.perp_confidence == {"ETH": 0.5} and mkt.collateral_price == {"wstETH": 2350.0}
    assert f.overrides["collaterals"]["wstETH"].risk_cancelling is True
    assert mkt.span_arrays["BTC"].arrays[0].losses[15] == 100.0
    assert pf.margin_currency(1) == "BTC" and pf.assets == ("wstETH",) and pf.funding.sum() == 5.0


def test_compare_uses_every_feed_and_marks_unsupported_accounts():
    f = read_portfolio(_doc())
    df = compare(f.portfolio, f.market, ["derive-pm2", "cme-span", "aave-v3"], f.overrides).set_index(
        ["account", "model"]
    )
    # collateral 2 wstETH at 2350 enters derive-pm2's equity with the file's 5% MM haircut (235)
    eth = df.loc[("eth", "derive-pm2")]
    assert eth.equity_usd > 1000.0 + 2 * 2350.0 - 200.0
    # cme-span on the BTC future uses the published array: 2 contracts x 100 (extreme down) = 200; IM 1.1 x
    assert df.loc[("cme", "cme-span")].mm_usd == pytest.approx(200.0)
    # the coin-margined and collateral accounts are unsupported by aave-v3 and cme-span; the rest is valued
    assert df.loc[("btc", "aave-v3")].main_driver == "unsupported" and np.isnan(df.loc[("btc", "aave-v3")].mm_usd)
    assert df.loc[("eth", "cme-span")].main_driver == "unsupported"
    assert df.loc[("btc", "derive-pm2")].mm_usd > 0 and not np.isnan(df.loc[("cme", "aave-v3")].mm_usd)


def test_span_files_are_read_relative_to_the_portfolio_file(tmp_path):
    shutil.copy(SPAN_FILE, tmp_path / "cme.pa2")
    doc = {
        "market": {
            "spot": {"BTC": 90000.0},
            "vol": {"BTC": 0.5},
            "span_files": [
                {
                    "path": "cme.pa2",
                    "product": "BTC",
                    "underlying": "BTC",
                    "months": {"202503": 40},
                    "contract_size": 5.0,
                }
            ],
        },
        "accounts": [
            {
                "name": "a",
                "positions": [
                    {"kind": "future", "underlying": "BTC", "qty": 10.0, "expiry_days": 40},
                    {"kind": "call", "underlying": "BTC", "qty": -5.0, "strike": 95000.0, "expiry_days": 40},
                ],
            }
        ],
    }
    (tmp_path / "book.json").write_text(json.dumps(doc))
    f = load_portfolio(tmp_path / "book.json")
    df = compare(f.portfolio, f.market, ["cme-span"])
    assert df.mm_usd[0] == pytest.approx(126_350.0)  # tests/margin/test_span_file.py, by hand


def _set(path, value):
    def patch(d):
        *head, last = path
        node = d
        for k in head:
            node = node[k]
        if value is _DROP:
            node.pop(last)
        else:
            node[last] = value

    return patch


_DROP = object()


@pytest.mark.parametrize(
    "patch, message",
    [
        (_set(["market", "forwards", "ETH", 0, "forward"], _DROP), r"market\.forwards\.ETH\[0\]\.forward: required"),
        (_set(["market", "forwards", "ETH", 1, "expiry_days"], 30), r"market\.forwards\.ETH\[1\]: duplicate expiry"),
        (
            _set(["market", "forwards", "ETH", 1, "rate"], _DROP),
            r"market\.forwards\.ETH\[1\]\.rate: required \(given for other",
        ),
        (
            _set(["market", "forwards", "SOL"], [{"expiry_days": 1, "forward": 1.0}]),
            r"market\.forwards\.SOL: allowed underlyings \['ETH', 'BTC'\]",
        ),
        (
            _set(["market", "forwards", "ETH", 0, "fixed"], 3000.0),
            r"market\.forwards\.ETH\[0\]\.fixed=3000\.0: allowed 0\.\.forward",
        ),
        (
            _set(["market", "forwards", "ETH", 0, "vol_confidence"], 1.5),
            r"market\.forwards\.ETH\[0\]\.vol_confidence=1\.5: allowed a number in \[0\.0, 1\.0\]",
        ),
        (_set(["market", "perp_confidence", "SOL"], 0.5), r"market\.perp_confidence\.SOL: allowed underlyings"),
        (_set(["market", "collateral", "wstETH", "price"], _DROP), r"market\.collateral\.wstETH\.price: required"),
        (
            _set(["market", "collateral", "wstETH", "im_haircut"], 0.99),
            r"market\.collateral\.wstETH: mm_haircut \+ im_haircut",
        ),
        (
            _set(["market", "collateral", "wstETH", "risk_cancelling"], "yes"),
            r"risk_cancelling='yes': allowed true or false",
        ),
        (
            _set(["accounts", 0, "positions", 1, "asset"], "LBTC"),
            r"accounts\[0\]\.positions\[1\]\.asset='LBTC': allowed \['wstETH'\]",
        ),
        (
            _set(["accounts", 0, "positions", 1, "asset"], _DROP),
            r"accounts\[0\]\.positions\[1\]\.asset: required for kind 'collateral'",
        ),
        (
            _set(["accounts", 0, "positions", 0, "asset"], "wstETH"),
            r"accounts\[0\]\.positions\[0\]\.asset: allowed only for kind 'collateral'",
        ),
        (
            _set(["accounts", 1, "margin_currency"], "SOL"),
            r"accounts\[1\]\.margin_currency='SOL': allowed \['USD', 'ETH', 'BTC'\]",
        ),
        (
            _set(["accounts", 1, "margin_currency"], "ETH"),
            r"accounts\[1\]\.positions\[0\]\.underlying='BTC': a ETH-margined account",
        ),
        (
            _set(["accounts", 1, "positions", 0, "kind"], "inverse_future"),
            r"accounts\[1\]\.positions\[0\]\.expiry_days: required > 0 for kind 'inverse_future'",
        ),
        (
            _set(["market", "span_arrays", "BTC", 0, "losses"], [1.0] * 15),
            r"market\.span_arrays\.BTC\[0\]\.losses: allowed an array of 16 numbers",
        ),
        (
            _set(["market", "span_arrays", "BTC", 0, "kind"], "perp"),
            r"market\.span_arrays\.BTC\[0\]\.kind='perp': allowed \['future', 'call', 'put'\]",
        ),
        (
            _set(["market", "span_arrays", "BTC", 0, "expiry_days"], _DROP),
            r"market\.span_arrays\.BTC\[0\]\.expiry_days: required",
        ),
        (
            _set(
                ["market", "span_files"],
                [{"path": "nope.pa2", "product": "BTC", "underlying": "BTC", "months": {"202503": 1}}],
            ),
            r"market\.span_files\[0\]\.path='nope\.pa2': no such file",
        ),
        (
            _set(
                ["market", "span_files"],
                [{"path": str(SPAN_FILE), "product": "BTC", "underlying": "BTC", "months": {"202506": 1}}],
            ),
            r"market\.span_files\[0\]: expiry_s: no entry for contract month '202503'",
        ),
        (
            _set(["market", "span_files"], [{"path": str(SPAN_FILE), "product": "BTC", "underlying": "BTC"}]),
            r"market\.span_files\[0\]\.months: required",
        ),
    ],
)
def test_bad_input_errors_name_the_key_path(patch, message):
    doc = _doc()
    patch(doc)
    with pytest.raises(ValueError, match=message):
        read_portfolio(doc)


def test_cli_compare_on_the_feeds_example(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "margin",
            "compare",
            str(FEEDS),
            "--models",
            "derive-pm2,deribit-pm,lyra-standard",
            "--out",
            str(tmp_path),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(tmp_path / "compare.csv")
    coin = df[(df.account == "btc-coin-margined") & (df.model == "lyra-standard")].iloc[0]
    assert coin.main_driver == "unsupported" and np.isnan(coin.mm_usd)
    assert (df[df.model == "derive-pm2"].mm_usd > 0).all()


def test_cli_compare_reports_a_bad_file_with_its_key_path(tmp_path):
    bad = tmp_path / "bad.json"
    doc = _doc()
    doc["market"]["forwards"]["ETH"][0].pop("forward")
    bad.write_text(json.dumps(doc))
    res = CliRunner().invoke(
        app, ["margin", "compare", str(bad), "--models", "derive-pm2", "--out", str(tmp_path / "out")]
    )
    assert res.exit_code == 2
    assert "market.forwards.ETH[0].forward: required" in res.output
