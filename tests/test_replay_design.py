"""The Latin-hypercube design (against scipy.stats.qmc directly), the mapping of coordinates to input values
(by hand), the band logic (against numpy.quantile) and the sensitivity indices on a function with known
indices (Ishigami: Saltelli et al. 2008, Global Sensitivity Analysis, section 4.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import qmc

from defistress.scenarios.schema_uncertainty import UncertainInput
from defistress.sim.analysis.bands import MIN_SAMPLES_FOR_SENSITIVITY, band, inside, seed_share, sensitivity
from defistress.sim.experiments.replay import lhs_design


def _inputs() -> list[UncertainInput]:
    return [
        UncertainInput(name="a", key="x.a", range=(1.0, 3.0), description="linear"),
        UncertainInput(name="b", key=["x.b", "y.b"], range=(10.0, 1000.0), scale="log", description="log"),
        UncertainInput(name="c", key="x.c", values=["30m", "1h", "2h"], description="a set"),
        UncertainInput(name="d", key="x.d", range=(0.5, 3.7), integer=True, description="counts 1, 2, 3"),
    ]


def test_design_is_scipys_latin_hypercube_for_the_same_seed():
    d = lhs_design(_inputs(), 12, seed=7)
    direct = qmc.LatinHypercube(d=4, rng=np.random.default_rng(7)).random(12)
    np.testing.assert_array_equal(d.u, direct)
    assert lhs_design(_inputs(), 12, seed=7).u.tolist() == d.u.tolist()  # reproducible
    assert not np.array_equal(lhs_design(_inputs(), 12, seed=8).u, d.u)


def test_each_input_has_exactly_one_sample_in_each_of_n_equal_strata():
    n = 20
    d = lhs_design(_inputs(), n, seed=3)
    for j in range(d.u.shape[1]):
        assert sorted(np.floor(d.u[:, j] * n).astype(int).tolist()) == list(range(n))


def test_coordinates_map_to_values_by_hand():
    a, b, c, d = _inputs()
    assert a.value_at(0.25) == pytest.approx(1.5)  # 1 + 0.25 x 2
    assert b.value_at(0.5) == pytest.approx(100.0)  # exp(ln 10 + 0.5 (ln 1000 - ln 10)) = 10^2
    assert [c.value_at(u) for u in (0.0, 0.33, 0.34, 0.99)] == ["30m", "30m", "1h", "2h"]  # thirds
    assert [d.value_at(u) for u in (0.0, 0.4, 0.7, 1.0)] == [1, 2, 3, 3]  # whole numbers 1..3 in thirds
    assert d.ends() == [1, 3] and c.ends() == ["30m", "1h", "2h"]
    assert b.coordinate(100.0) == pytest.approx(math.log(100.0)) and c.coordinate("2h") == 2.0


def test_a_design_point_sets_every_key_of_an_input():
    d = lhs_design(_inputs(), 4, seed=1)
    p = d.point(0)
    assert set(p) == {"x.a", "x.b", "y.b", "x.c", "x.d"}
    assert p["x.b"] == p["y.b"] == d.values(0)["b"]


def test_no_inputs_is_one_empty_point():
    d = lhs_design([], 10)
    assert d.samples == 1 and d.point(0) == {}


def test_band_is_numpys_quantiles_of_the_finite_values():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=101)
    b = band(list(x) + [None, float("nan")], 0.05, 0.95)
    lo, med, hi = np.quantile(x, [0.05, 0.5, 0.95])
    assert (b.low, b.median, b.high) == (pytest.approx(lo), pytest.approx(med), pytest.approx(hi))
    assert b.n == 101 and b.missing == 2
    assert band([None, None]).low is None


def test_inside_means_the_published_range_meets_the_band():
    b = band([1.0, 2.0, 3.0, 4.0, 5.0], 0.0, 1.0)  # the band is [1, 5]
    assert inside(b, (3.0, 3.0)) is True
    assert inside(b, (5.0, 7.0)) is True  # touches the top
    assert inside(b, (5.5, 7.0)) is False
    assert inside(b, (0.0, 0.9)) is False
    assert inside(band([None]), (1.0, 1.0)) is None


def test_seed_share_is_the_within_sample_part_of_the_variance():
    # samples 0 and 1 with means 0 and 10; within-sample deviations +-1: var within = 1, total = 1 + 25 = 26
    samples = np.array([0, 0, 1, 1])
    y = np.array([-1.0, 1.0, 9.0, 11.0])
    assert seed_share(samples, y) == pytest.approx(1.0 / 26.0)
    assert seed_share(samples, np.ones(4)) is None  # no variance
    assert seed_share(np.array([0, 1, 2]), np.array([1.0, 2.0, 4.0])) is None  # one run per sample


def test_sensitivity_recovers_the_ishigami_first_order_indices():
    # Y = sin x1 + 7 sin^2 x2 + 0.1 x3^4 sin x1 on [-pi, pi]^3: S1 = 0.3139, 0.4424, 0 (analytic)
    u = qmc.LatinHypercube(d=3, rng=np.random.default_rng(1)).random(2000)
    x = -np.pi + 2 * np.pi * u
    y = np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
    s1 = sensitivity(x, y, ["x1", "x2", "x3"])
    assert s1["x1"] == pytest.approx(0.3139, abs=0.04)
    assert s1["x2"] == pytest.approx(0.4424, abs=0.04)
    assert s1["x3"] == pytest.approx(0.0, abs=0.04)
    assert sorted(s1, key=lambda k: -(s1[k] or 0)) == ["x2", "x1", "x3"]  # the ranking


def test_sensitivity_is_undefined_on_too_few_samples():
    x = np.arange(MIN_SAMPLES_FOR_SENSITIVITY - 1, dtype=float)[:, None]
    assert sensitivity(x, x[:, 0] * 2, ["a"]) == {"a": None}


def test_design_runs_keeps_the_finished_runs_of_this_design_and_these_seeds(tmp_path):
    """A replay folder run again with another --samples or seed, or holding a failed run: only the finished
    runs of the current design at the asked seeds are scored."""
    import pandas as pd

    from defistress.sim.experiments.replay import design_runs

    mine, other = lhs_design(_inputs(), 3, seed=0), lhs_design(_inputs(), 5, seed=0)
    rows = []
    for d, i, seed, status in [(mine, 0, 1, "ok"), (mine, 1, 1, "ok"), (mine, 2, 1, "failed"), (mine, 0, 2, "ok"),
                               (other, 0, 1, "ok"), (other, 4, 1, "ok")]:  # fmt: skip
        rows.append({**{f"param:{k}": v for k, v in d.point(i).items()}, "seed": seed, "status": status})
    pd.DataFrame(rows).to_parquet(tmp_path / "results.parquet")
    kept = design_runs(mine, tmp_path / "results.parquet", [1])
    assert len(kept) == 2 and kept["param:x.a"].tolist() == [mine.point(0)["x.a"], mine.point(1)["x.a"]]
    assert len(design_runs(mine, tmp_path / "results.parquet", [1, 2])) == 3
    assert design_runs(mine, tmp_path / "missing.parquet", [1]).empty
