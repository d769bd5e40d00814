"""Sweep figures (issue 12): every risk metric against every swept parameter with its bootstrap band, a heat map
for two parameters, and a warning where a quantile rests on too few seeds; plus the helpers tune and
stress-search share (Pareto front, Wilson interval, bracketing, trial-metric names)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from defistress.sim.analysis.crossing import bracket, crossed, wilson
from defistress.sim.analysis.metric_expr import MetricError, parse_metric, run_metric_names
from defistress.sim.analysis.pareto import nearest_to_ideal, non_dominated
from defistress.sim.analysis.risk import risk_table
from defistress.sim.analysis.seed_adequacy import min_seeds_for_quantile, seed_warning
from defistress.sim.experiments.sweep_figures import quantile_warnings, write_figures
from defistress.sim.report.plots_sweep import cell_text, plot_heatmap, plot_metric_vs_param

A, B = "param:a", "param:b"


@pytest.fixture(scope="module")
def risk() -> pd.DataFrame:
    """A 3 x 2 grid, 5 seeds per point; bad debt grows with a and b so every cell differs."""
    rows = []
    for a in (0.1, 0.2, 0.3):
        for b in (1, 2):
            for s in range(5):
                rows.append({A: a, B: b, "bad_debt_usd": 1e5 * a * b + 1e3 * s, "liquidation_volume_usd": 1e6 * a + s})
    return risk_table(pd.DataFrame(rows), [A, B])


# --- seed adequacy: n >= ln(0.025) / ln(q) ---------------------------------------------------------------


def test_min_seeds_by_hand():
    # ln(0.025) = -3.68888; ln(0.95) = -0.051293 -> 71.92 -> 72; ln(0.99) = -0.0100503 -> 367.04 -> 368
    assert min_seeds_for_quantile(0.95) == 72
    assert min_seeds_for_quantile(0.99) == 368
    # ln(0.5) = -0.693147 -> 5.32 -> 6 (the median needs 6 runs for a bounded 95% interval)
    assert min_seeds_for_quantile(0.5) == 6
    with pytest.raises(ValueError, match="between 0 and 1"):
        min_seeds_for_quantile(1.0)


def test_warning_only_below_the_needed_seeds():
    assert seed_warning("VaR99", 0.99, 368) is None
    w = seed_warning("VaR99", 0.99, 20)
    assert w is not None and "20 seed" in w and "368" in w


def test_quantile_warnings_name_each_tail_metric_of_the_table(risk):
    notes = quantile_warnings(risk)  # 5 seeds per point: every quantile here needs more
    assert set(notes) == {"var95_bad_debt_usd", "evar99_bad_debt_usd", "es99_bad_debt_usd", "lar95_liquidation_usd"}
    assert "mean_bad_debt_usd" not in notes


# --- figures carry the table's numbers -------------------------------------------------------------------


def test_metric_vs_param_lines_and_bands_are_the_table(risk):
    ax = Figure().add_subplot()
    plot_metric_vs_param(risk, A, "var95_bad_debt_usd", ax)
    assert len(ax.lines) == 2  # one line per value of b
    for line, b in zip(ax.lines, (1, 2)):
        df = risk[risk[B] == b].sort_values(A)
        np.testing.assert_array_equal(line.get_xdata(), df[A].to_numpy())
        np.testing.assert_array_equal(line.get_ydata(), df["var95_bad_debt_usd"].to_numpy())
    for band, b in zip(ax.collections, (1, 2)):
        df = risk[risk[B] == b].sort_values(A)
        ys = band.get_paths()[0].vertices[:, 1]
        assert np.isclose(ys.min(), df["var95_bad_debt_usd_ci_low"].min())
        assert np.isclose(ys.max(), df["var95_bad_debt_usd_ci_high"].max())


def test_heatmap_cells_print_the_table(risk):
    ax = Figure().add_subplot()
    plot_heatmap(risk, A, B, "mean_bad_debt_usd", ax)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(cell_text(v, "mean_bad_debt_usd") for v in risk["mean_bad_debt_usd"])
    # the mean of 1e5*a*b + 1e3*s over s = 0..4 is 1e5*a*b + 2000: a=0.3, b=2 -> 62,000
    assert cell_text(62_000.0, "mean_bad_debt_usd") in texts


def test_write_figures_from_a_folder(tmp_path, risk):
    risk.to_csv(tmp_path / "risk.csv", index=False)
    paths, warnings = write_figures(tmp_path)
    names = {p.name for p in paths}
    assert {"sweep_a.png", "sweep_b.png"} <= names
    assert sum(n.startswith("heatmap_") for n in names) == 5  # one per metric with two swept parameters
    assert all(p.stat().st_size > 0 for p in paths)
    assert any("VaR95" in w for w in warnings)


# --- helpers for tune and stress-search -----------------------------------------------------------------


def test_wilson_by_hand():
    # k=5, n=10, z=1.959964: centre 0.5, half-width z*sqrt(0.025 + z^2/400)/(1 + z^2/10) = 0.26340
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.23659, abs=1e-4) and hi == pytest.approx(0.76341, abs=1e-4)
    # k=0, n=20: lower end 0, upper end z^2/(n + z^2) = 3.8415/23.8415 = 0.16113
    lo, hi = wilson(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.16113, abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_crossed_and_its_keyed_error():
    assert crossed(np.array([1.0, 2.0, 3.0]), 2.0, ">").tolist() == [False, False, True]
    assert crossed(np.array([1.0, 2.0, 3.0]), 2.0, "<=").tolist() == [True, True, False]
    with pytest.raises(ValueError, match="allowed"):
        crossed(np.array([1.0]), 0.0, "=>")


def test_bracket_on_a_monotone_curve():
    sizes = [0.4, 0.1, 0.2, 0.3]  # unsorted on purpose
    prob = [1.0, 0.0, 0.3, 0.7]
    low = [0.8, 0.0, 0.1, 0.5]
    high = [1.0, 0.2, 0.6, 0.9]
    b = bracket(sizes, prob, low, high, target=0.5)
    assert (b.below, b.size, b.interval_low, b.interval_high) == (0.2, 0.3, 0.2, 0.3)
    none = bracket(sizes, prob, low, high, target=1.1)
    assert none.size is None and none.below is None


def test_pareto_front_and_compromise_by_hand():
    costs = np.array([[1.0, 5.0], [2.0, 2.0], [5.0, 1.0], [3.0, 3.0], [2.0, 6.0]])
    # [3,3] is dominated by [2,2]; [2,6] by [1,5]
    assert non_dominated(costs).tolist() == [True, True, True, False, False]
    # scaled over the front: [0,1], [0.25,0.25], [1,0] -> [2,2] is nearest the ideal
    assert nearest_to_ideal(costs[non_dominated(costs)]) == 1


def test_trial_metric_names_and_keyed_errors():
    m = parse_metric("es99_bad_debt_usd", run_metric_names(["lend"]))
    assert (m.statistic, m.column, m.quantile) == ("es99", "bad_debt_usd", 0.99)
    # ES99 of 1..100: the mean of the runs at or above the 99th percentile (99.01): only 100
    assert m.value(np.arange(1, 101)) == pytest.approx(100.0)
    assert parse_metric("mean_lend_bad_debt_usd", run_metric_names(["lend"])).column == "lend_bad_debt_usd"
    with pytest.raises(MetricError, match="allowed: .*bad_debt_usd"):
        parse_metric("var99_bad_dept_usd", run_metric_names(), "--constraint")
    with pytest.raises(MetricError, match="--objective 'p99_bad_debt_usd'.*statistics"):
        parse_metric("p99_bad_debt_usd", None)
