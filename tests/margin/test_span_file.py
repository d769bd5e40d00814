"""SPAN from published risk arrays: the CME expanded-format reader on a hand-made file (tests/data/span) and the
scan risk computed from its arrays, by hand."""

from pathlib import Path

import numpy as np
import pytest

from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.span_arrays import PublishedRiskArrays, RiskArray
from defistress.protocols.margin.span_file import parse_span_text, read_span_file, risk_arrays

FILE = Path(__file__).parent.parent / "data" / "span" / "cme_btc_sample.pa2"
DAY = 86_400.0
FUT = [0, 0, -22500, -22500, 22500, 22500, -45000, -45000, 45000, 45000, -67500, -67500, 67500, 67500, -66825, 66825]
CALL = [120, -110, -7200, -6900, 5100, 5300, -16100, -15700, 8600, 8900, -27800, -27300, 9700, 9900, -52300, 7300]
PUT = [60, -50, 2900, 3000, -4100, -3900, 4900, 5000, -8900, -8700, 6300, 6400, -14000, -13800, 2300, -8200]


def arrays():
    return risk_arrays(read_span_file(FILE), "BTC", {"202503": 40 * DAY}, contract_size=5.0)


def test_reader_gets_the_sixteen_values_delta_and_settlement_of_each_contract():
    recs = read_span_file(FILE)
    assert [(r.kind, r.strike, r.month) for r in recs] == [
        ("future", 0, "202503"),
        ("call", 95000, "202503"),
        ("put", 85000, "202503"),
    ]
    assert [list(r.values) for r in recs] == [FUT, CALL, PUT]
    assert [r.composite_delta for r in recs] == [1.0, 0.38, -0.29]
    assert [r.settlement for r in recs] == [90000, 2100, 1500]
    assert recs[0].exchange == "CME" and recs[1].product_type == "OOF" and recs[0].line == 3


def test_scan_risk_from_published_arrays_by_hand():
    # account a: 10 BTC of futures (2 contracts of 5) and short 5 BTC of calls (1 contract):
    # per scenario 2 x FUT - CALL; largest loss is scenario 16 (extreme down): 2 x 66825 - 7300 = 126,350
    # (scenario 13, futures down 3/3 vol up: 135,000 - 9,700 = 125,300). IM = 1.1 x MM (cme-span).
    # account b: long 5 BTC of puts: largest loss scenario 12: 6,400 (bounded by the premium 5 x 1500 = 7,500).
    pf = Portfolio.from_records(
        [
            {
                "name": "a",
                "positions": [
                    {"kind": "future", "underlying": "BTC", "qty": 10.0, "expiry_days": 40},
                    {"kind": "call", "underlying": "BTC", "qty": -5.0, "strike": 95000.0, "expiry_days": 40},
                ],
            },
            {
                "name": "b",
                "positions": [{"kind": "put", "underlying": "BTC", "qty": 5.0, "strike": 85000.0, "expiry_days": 40}],
            },
        ]
    )
    mkt = MarketState(spot={"BTC": 90000.0}, vol={"BTC": 0.5}, span_arrays={"BTC": arrays()})
    r = get_model("cme-span").requirements(pf, mkt)
    loss_a = 2 * np.array(FUT) - np.array(CALL)
    assert loss_a.max() == 126_350 and loss_a.argmax() == 15
    np.testing.assert_allclose(r.mm, [126_350.0, 6_400.0])
    np.testing.assert_allclose(r.im, [1.1 * 126_350.0, 1.1 * 6_400.0])
    np.testing.assert_allclose(r.equity, [-5 * 2100.0, 5 * 1500.0])  # options at the published settlement
    # the model's own Black-76 arrays give another figure for the same book (the published ones are used)
    own = get_model("cme-span").requirements(pf, MarketState(spot={"BTC": 90000.0}, vol={"BTC": 0.5}))
    assert own.mm[0] != pytest.approx(126_350.0, rel=1e-3)


def test_published_arrays_must_cover_every_position():
    pf = Portfolio.from_records(
        [
            {
                "name": "a",
                "positions": [{"kind": "call", "underlying": "BTC", "qty": 5.0, "strike": 99000.0, "expiry_days": 40}],
            }
        ]
    )
    mkt = MarketState(spot={"BTC": 90000.0}, vol={"BTC": 0.5}, span_arrays={"BTC": arrays()})
    with pytest.raises(
        ValueError,
        match=r"span_arrays\['BTC'\]: no published array for position 0 \(call, expiry_s=3.456e\+06, strike=99000\)",
    ):
        get_model("cme-span").requirements(pf, mkt)
    perp = Portfolio.from_records([{"name": "a", "positions": [{"kind": "perp", "underlying": "BTC", "qty": 1.0}]}])
    with pytest.raises(ValueError, match=r"published arrays cover kinds \['future', 'call', 'put'\]; got \['perp'\]"):
        get_model("cme-span").requirements(perp, mkt)


def test_reader_errors_name_the_line_and_columns():
    lines = FILE.read_text().splitlines()
    bad = lines[2][:60] + "12a45" + lines[2][65:]  # array value 2 of the future
    with pytest.raises(ValueError, match=r"line 3, Array Value 2 \(columns 61-65\): '12a45' is not a number"):
        parse_span_text("\n".join([lines[0], lines[1], bad, lines[3]]))
    with pytest.raises(ValueError, match=r"line 1: record 82 without a preceding 81 record"):
        parse_span_text(lines[3])
    with pytest.raises(ValueError, match=r"line 3: record 81 without its 82 record"):
        parse_span_text("\n".join(lines[:3]))
    with pytest.raises(ValueError, match=r"expiry_s: no entry for contract month '202503'"):
        risk_arrays(read_span_file(FILE), "BTC", {"202506": 1.0})
    with pytest.raises(ValueError, match=r"product='ES': no risk-array record; allowed \['BTC'\]"):
        risk_arrays(read_span_file(FILE), "ES", {"202503": 1.0})


def test_risk_array_validation():
    with pytest.raises(ValueError, match=r"losses: allowed 16 finite numbers"):
        RiskArray("future", 1.0, (0.0,) * 15, 1.0)
    with pytest.raises(ValueError, match=r"kind='swap': allowed"):
        RiskArray("swap", 1.0, (0.0,) * 16, 1.0)
    with pytest.raises(ValueError, match=r"arrays: allowed at least one RiskArray"):
        PublishedRiskArrays(())
