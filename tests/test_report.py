"""The run report: report.html with embedded figures, and plot functions that draw on any timeseries."""

import base64
import dataclasses
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from defistress.sim.experiments.runs import health_frame, run_scenario, write_run
from defistress.sim.report import plots
from defistress.sim.report.html import FIGURES, format_value, render_html, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OVERRIDES = ['run.duration="6h"', "agents.borrowers.accounts=1500"]


@pytest.fixture(scope="module")
def result():
    return run_scenario("eth-crash", seed=1, overrides=OVERRIDES)


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    page = write_report(result, tmp_path_factory.mktemp("report"))
    return page, page.read_text(encoding="utf-8")


def _texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _legend(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --- the page ------------------------------------------------------------------------------------
def test_report_html_names_the_scenario_its_description_and_manifest(result, report):
    page, text = report
    assert page.name == "report.html" and page.is_file()
    assert "<title>defistress run report: eth-crash</title>" in text
    assert "ETH -36% over 4h" in text  # run.description of eth-crash.toml
    assert result.manifest["scenario_sha256"] in text
    assert text.index("<h2>Headline</h2>") < text.index("<h2>Figures</h2>") < text.index("<h2>Manifest</h2>")


def test_headline_and_protocol_tables_show_the_run_metrics(result, report):
    _, text = report
    m = result.metrics
    assert m["liquidations"] > 0  # the crash does liquidate: the figures below mean something
    assert f"<td>Liquidations</td><td>{m['liquidations']:,}</td>" in text
    assert f"<td>${m['bad_debt_usd']:,.0f}</td>" in text
    assert f"<td>{m['peak_base_fee_gwei']:,.1f} gwei</td>" in text
    assert "<th>lend</th>" in text  # per-protocol table has one column per protocol


def test_every_png_named_in_the_html_exists_and_is_a_png(report):
    page, text = report
    names = re.findall(r'href="([^"]+\.png)"', text)
    assert sorted(names) == sorted(f"{s.name}.png" for s in FIGURES)  # graph and health present: all figures
    for n in names:
        assert (page.parent / n).read_bytes()[:8] == PNG_MAGIC


def test_data_uris_decode_to_the_png_files_beside_the_page(report):
    page, text = report
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    decoded = sorted(base64.b64decode(u, validate=True) for u in uris)
    files = sorted(p.read_bytes() for p in page.parent.glob("*.png"))
    assert len(uris) == len(FIGURES)
    assert decoded == files


def test_text_from_the_run_is_html_escaped(result):
    hostile = dataclasses.replace(result, metrics={**result.metrics, "scenario": "<script>alert(1)</script>"})
    text = render_html(hostile, {})
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_write_run_puts_the_report_in_the_run_folder(result, tmp_path):
    out = write_run(result, tmp_path / "run")
    assert (out / "report.html").is_file()
    assert (out / "network.png").read_bytes()[:8] == PNG_MAGIC


def test_format_value_uses_the_unit_of_each_metric():
    assert format_value(1234567.8, "usd") == "$1,234,568"
    assert format_value(0.0501, "frac") == "5.01%"  # fraction 0.0501 -> 5.01 %
    assert format_value(27.0029, "pct") == "27.00%"  # already in %
    assert format_value(7212.0, "s") == "7,212 s (2.00 h)"  # 7212 / 3600 = 2.003 h
    assert format_value(None, "usd") == "n/a"
    assert format_value(False, "ok") == "VIOLATED"
    assert plots.format_usd(1_234_567) == "$1.23M"
    assert plots.format_usd(-45_000) == "-$45k"
    assert plots.format_usd(12) == "$12"


def test_report_modules_do_not_import_pyplot():
    code = (
        "import sys, defistress.sim.report.html, defistress.sim.report.plots; "
        "sys.exit('matplotlib.pyplot' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- plot functions: each draws the run's own numbers -------------------------------------------------
def _hours(ts: pd.DataFrame) -> np.ndarray:
    return ts["time_s"].to_numpy(dtype=float) / 3600.0


def _line(ax: Axes, label: str):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


def test_price_paths_draw_the_exogenous_reference_oracle_and_pool_prices(result):
    ts, ax = result.timeseries, Figure().add_subplot()
    assert plots.plot_price_paths(result, ax=ax) is ax
    for label, col in (
        ("exogenous", "exog_ETH_usd"),
        ("reference", "ref_ETH_usd"),
        ("oracle chainlink-eth", "oracle_chainlink-eth_usd"),
        ("pool uni-eth-usdc", "pool_uni-eth-usdc_price"),
    ):
        line = _line(ax, label)
        np.testing.assert_array_equal(line.get_xdata(), _hours(ts))
        np.testing.assert_array_equal(line.get_ydata(), ts[col].to_numpy())


def test_liquidation_bars_are_the_liquidations_per_block_and_the_line_the_debt_repaid(result):
    ts, ax = result.timeseries, Figure().add_subplot()
    assert plots.plot_liquidations(result, ax=ax) is ax
    n = ts["lend_liquidations"].to_numpy(dtype=float)
    hit = n > 0
    assert hit.sum() > 10  # the crash liquidates in many blocks
    np.testing.assert_array_equal([p.get_height() for p in ax.patches], n[hit])
    np.testing.assert_allclose([p.get_x() for p in ax.patches], _hours(ts)[hit])
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    np.testing.assert_allclose(twin.lines[0].get_ydata(), np.cumsum(ts["lend_liquidation_volume_usd"]))


def test_bad_debt_plot_steps_through_the_bad_debt_and_labels_its_end_value(result):
    ts, ax = result.timeseries, Figure().add_subplot()
    assert plots.plot_bad_debt(result, ax=ax) is ax
    (line,) = ax.lines
    y = ts["lend_bad_debt_usd"].to_numpy(dtype=float)
    np.testing.assert_array_equal(line.get_ydata(), y)
    pct = 100 * y[-1] / ts["lend_debt_usd"].iloc[0]
    assert line.get_label() == f"lend: {plots.format_usd(y[-1])}, {pct:.2f}% of initial debt"


def test_gas_plot_draws_the_base_fee_and_the_gas_used_in_mgas(result):
    ts, ax = result.timeseries, Figure().add_subplot()
    assert plots.plot_gas(result, ax=ax) is ax
    np.testing.assert_array_equal(_line(ax, "base fee (left)").get_ydata(), ts["base_fee_gwei"].to_numpy())
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    used = {ln.get_label(): ln.get_ydata() for ln in twin.lines}
    np.testing.assert_allclose(used["gas used per block (right)"], ts["gas_used"] / 1e6)
    np.testing.assert_allclose(used["of which agents (right)"], ts["agent_gas"] / 1e6)


def test_liquidator_pnl_plot_draws_the_pnl_column(result):
    ts, ax = result.timeseries, Figure().add_subplot()
    assert plots.plot_liquidator_pnl(result, ax=ax) is ax
    np.testing.assert_array_equal(_line(ax, "liquidator PnL").get_ydata(), ts["liquidator_pnl_usd"].to_numpy())


def test_network_plot_draws_one_marker_per_node_and_one_arrow_per_edge(result):
    ax = Figure().add_subplot()
    assert plots.plot_network(result, ax=ax) is ax
    assert sum(len(c.get_offsets()) for c in ax.collections) == result.graph.number_of_nodes()
    assert len(ax.patches) == result.graph.number_of_edges()


def test_plot_without_axes_makes_its_own_figure(result):
    ax = plots.plot_gas(result)
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), result.timeseries["base_fee_gwei"].to_numpy())


def test_price_series_are_matched_to_their_asset_with_and_without_the_graph(result):
    for data in (result, result.timeseries):  # graph edges, or nearest price level alone
        eth = {label for _, label, _ in plots.price_columns(data, "ETH")}
        btc = {label for _, label, _ in plots.price_columns(data, "BTC")}
        assert eth == {"exogenous", "reference", "oracle chainlink-eth", "pool uni-eth-usdc"}
        assert btc == {"exogenous", "reference", "oracle chainlink-btc", "pool uni-btc-usdc"}


def test_price_grid_has_one_panel_per_risky_asset(result):
    axes = plots.plot_price_grid(result)
    assert [a.get_title() for a in axes] == ["ETH price", "BTC price"]  # USDC is a stablecoin: no panel
    assert all(len(a.lines) >= 4 for a in axes)


def test_network_legend_names_every_edge_type_and_node_type(result):
    ax = plots.plot_network(result)
    labels = " ".join(_legend(ax))
    for _, _, key in result.graph.edges(keys=True):
        assert key in labels
    for kind in ("asset", "oracle", "venue", "protocol", "agent"):
        assert kind in labels


def _calm(ts: pd.DataFrame) -> pd.DataFrame:
    """The run's timeseries with every liquidation and all bad debt taken out."""
    calm = ts.copy()
    for c in calm.columns:
        if c.endswith(("_liquidations", "_liquidation_volume_usd", "_bad_debt_usd")):
            calm[c] = 0.0
    return calm


def test_calm_timeseries_draws_no_bars_and_says_so(result):
    calm = _calm(result.timeseries)
    ax = plots.plot_liquidations(calm)
    assert len(ax.patches) == 0
    assert "no liquidations" in _texts(ax)
    bad = plots.plot_bad_debt(calm)
    assert "no bad debt" in _texts(bad)
    assert len(bad.lines) == 1 and np.all(bad.lines[0].get_ydata() == 0)


def _rename(ts: pd.DataFrame, new: str) -> pd.DataFrame:
    return ts.rename(columns={c: new + c[len("lend") :] for c in ts.columns if c.startswith("lend_")})


def test_plots_find_protocols_by_column_suffix_not_by_id(result):
    ts = _rename(result.timeseries, "maker-cdp")
    ax = plots.plot_liquidations(ts)
    assert _legend(ax)[0] == "maker-cdp liquidations"
    assert len(ax.patches) == int((ts["maker-cdp_liquidations"] > 0).sum())  # one bar per block that liquidated
    labels = _legend(plots.plot_bad_debt(ts))
    assert len(labels) == 1 and labels[0].startswith("maker-cdp: ")


def test_two_protocols_stack_their_liquidation_bars(result):
    ts = result.timeseries
    perps = _rename(ts, "perps")
    both = pd.concat([ts, perps[[c for c in perps.columns if c.startswith("perps_")]]], axis=1)
    ax = plots.plot_liquidations(both)
    peak = int(ts["lend_liquidations"].max())
    # the same liquidations twice: the tallest stack is 2 x the single-protocol peak
    assert max(p.get_y() + p.get_height() for p in ax.patches) == 2 * peak
    assert _legend(ax)[:2] == ["lend liquidations", "perps liquidations"]


def test_health_plot_reports_the_share_below_one_per_protocol_and_phase():
    # before: 1 of 4 below 1 -> 25.0 %; after: 0.5 and 0.8 of 4 below 1 -> 50.0 %
    dists = {"before": {"x": np.array([0.5, 2.0, 4.0, 8.0])}, "after": {"x": np.array([0.5, 0.8, 2.0, 4.0])}}
    labels = _legend(plots.plot_health(dists))
    assert "x before (n=4, 25.0% below 1)" in labels
    assert "x after (n=4, 50.0% below 1)" in labels


def test_health_plot_reads_the_health_table_of_the_run_folder(result):
    ax = plots.plot_health(health_frame(result))
    n_after = len(result.health_after["lend"])
    assert any(t.startswith(f"lend after (n={n_after:,},") for t in _legend(ax))
    assert ax.get_xscale() == "log"
    assert any(np.all(np.asarray(line.get_xdata()) == 1.0) for line in ax.lines)  # the HF = 1 marker
