"""Malformed replay inputs through the command line: each is a keyed error (exit 2 from `run`, listed by
`validate`) naming the key, the file and the timestamp, and `run` leaves no run folder, partial or temporary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defistress.scenarios.loader import HISTORIC_DIR
from defistress.sim.cli.app import app

ETH_10MIN = "01b_black_thursday_2020-03-12_ETH_10min.csv"
GAS_10MIN = "01b_black_thursday_2020-03-12_gas_10min.csv"
ROUNDS = "09c_steth_eth_chainlink_rounds_2023-03.csv"


def toml(value) -> str:
    """A value as TOML (inline tables and arrays; enough for these scenarios)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


def scenario(tmp_path: Path, replay: dict | None = None, gas: dict | None = None, **extra) -> Path:
    """A small Black-Thursday-like lending scenario written as TOML next to its data."""
    raw = {
        "run": {"name": "bad-replay", "duration": "1h", "block_seconds": 12},
        "market": {
            "assets": [{"symbol": "ETH"}, {"symbol": "DAI", "peg": 1.0}],
            "replay": replay
            or {"series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min", "interval": "10m"}]},
        },
        "oracles": [
            {"id": "cl-eth", "asset": "ETH"},
            {"id": "dai", "kind": "fixed", "asset": "DAI", "price": 1.0},
        ],
        "protocols": [
            {
                "id": "lend",
                "kind": "lending",
                "oracles": {"ETH": "cl-eth", "DAI": "dai"},
                "assets": {"ETH": {}, "DAI": {}},
            }
        ],
        "agents": [
            {"kind": "borrowers", "protocol": "lend", "accounts": 50, "collateral": {"ETH": 1.0}, "debt": "DAI"},
            {"kind": "liquidator", "capital_usd": 100_000},
        ],
        **extra,
    }
    if gas is not None:
        raw["gas"] = {"replay": gas}
    f = tmp_path / "scenario" / "bad.toml"
    f.parent.mkdir(exist_ok=True)
    f.write_text("".join(f"{k} = {toml(v)}\n" for k, v in raw.items()))
    return f


def edited(tmp_path: Path, file: str, edit) -> str:
    """A copy of a bundled file, edited line-wise (`edit(lines, header_index)`), next to the scenario."""
    lines = (HISTORIC_DIR / file).read_text().splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    out = tmp_path / "scenario" / f"edited_{file}"
    out.parent.mkdir(exist_ok=True)
    out.write_text("".join(edit(lines, header)))
    return out.name


def drop_row(k: int):
    def edit(lines, header):
        del lines[header + 1 + k]
        return lines

    return edit


def rename_column(old: str, new: str):
    def edit(lines, header):
        lines[header] = lines[header].replace(old, new)
        return lines

    return edit


CASES = {
    "gap": (
        lambda tmp: {
            "replay": {
                "series": [
                    {
                        "asset": "ETH",
                        "file": edited(tmp, ETH_10MIN, drop_row(2)),
                        "format": "coinapi_10min",
                        "interval": "10m",
                    }
                ]
            }
        },
        ["market.replay.series.0", "edited_01b", "gap of 1200 s after the row at 2020-03-12T00:10:00Z"],
    ),
    "missing column": (
        lambda tmp: {
            "replay": {
                "series": [
                    {
                        "asset": "ETH",
                        "file": edited(tmp, ETH_10MIN, rename_column("price_low", "px_low")),
                        "format": "coinapi_10min",
                    }
                ]
            }
        },
        ["market.replay.series.0", "edited_01b", "missing column(s) ['price_low']"],
    ),
    "round file read as candles": (
        lambda tmp: {"replay": {"series": [{"asset": "ETH", "file": ROUNDS, "format": "coinapi_10min"}]}},
        ["market.replay.series.0", ROUNDS, "missing column(s)"],
    ),
    "window before the file": (
        lambda tmp: {
            "replay": {
                "start": "2020-03-11T23:00:00Z",
                "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}],
            }
        },
        ["market.replay.series.0", ETH_10MIN, "2020-03-11T23:00:00Z", "window outside the file"],
    ),
    "run longer than the data": (
        lambda tmp: {
            "replay": {
                "start": "2020-03-12T23:30:00Z",
                "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}],
            }
        },
        ["market.replay.series.0", "2020-03-13T00:00:00Z", "after_end = 'hold'"],
    ),
    "gas gap": (
        lambda tmp: {"gas": {"file": edited(tmp, GAS_10MIN, drop_row(1)), "interval": "10m"}},
        [
            "gas.replay",
            "edited_01b_black_thursday_2020-03-12_gas",
            "gap of 1200 s after the row at 2020-03-12T00:00:00Z",
        ],
    ),
    "unknown time zone": (
        lambda tmp: {
            "replay": {
                "timezone": "Moon/Base",
                "series": [{"asset": "ETH", "file": ETH_10MIN, "format": "coinapi_10min"}],
            }
        },
        ["market.replay.timezone", "unknown time zone 'Moon/Base'"],
    ),
    "governance outside the data's run": (
        lambda tmp: {
            "governance": [
                {"at_time": "2020-03-14T00:00:00Z", "action": "pause", "protocol": "lend", "source": "assumption"}
            ]
        },
        ["governance.0.at_time", "2020-03-14T00:00:00Z"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_gives_a_keyed_error_exit_2_and_no_run_folder(tmp_path, case):
    make, expected = CASES[case]
    f = scenario(tmp_path, **make(tmp_path))
    out = tmp_path / "runs" / "x"
    result = CliRunner().invoke(app, ["run", str(f), "--quiet", "--no-report", "--out", str(out)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    for part in expected:
        assert part in text, (part, text)
    assert not out.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no temporary folder


@pytest.mark.parametrize("case", ["gap", "missing column", "window before the file", "gas gap"])
def test_validate_lists_the_same_keyed_error(tmp_path, case):
    make, expected = CASES[case]
    f = scenario(tmp_path, **make(tmp_path))
    result = CliRunner().invoke(app, ["validate", str(f)])
    text = " ".join(result.output.split())
    assert result.exit_code != 0
    assert all(part in text for part in expected), text
