"""Derive's published PM2 portfolio cases (tests/data/derive/pm2, BUSL-1.1, see PROVENANCE.md) as tests of the
`derive-pm2-golden` preset with each case's own parameters, checked like the upstream harness
(TestPMRM_2_PortfolioCasesNEW.t.sol `_compareResults`): every asserted figure within 1e-8 (relative, or 1e10
wei absolute for values below 1e8 wei)."""

import json
from pathlib import Path

import pytest

from defistress.protocols.margin.derive_vectors import (
    UPSTREAM_SKIPPED,
    check_pm2_case,
    load_pm2_case,
    pm2_grid,
)
from defistress.protocols.margin.presets_derive import DERIVE_PM2_GOLDEN_GRID

CASES = sorted((Path(__file__).parent.parent / "data" / "derive" / "pm2").glob("test_*.json"))
ACTIVE = [p for p in CASES if p.stem not in UPSTREAM_SKIPPED]


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_bundle_holds_all_139_published_cases():
    assert len(CASES) == 139 and len(ACTIVE) == 138


@pytest.mark.parametrize("path", ACTIVE, ids=[p.stem for p in ACTIVE])
def test_pm2_case(path):
    checks = check_pm2_case(load_pm2_case(_doc(path), path.stem))
    bad = [c for c in checks if not c.ok]
    assert not bad, "; ".join(f"{c.name}: got {c.actual / 1e18!r} want {c.expected / 1e18!r} ({c.mode})" for c in bad)
    assert len(checks) == 4 + len(_doc(path)["Parameters"]["Scenarios"])


@pytest.mark.parametrize("prefix", ["test_5_", "test_12_", "test_55_", "test_60_", "test_66_"])
def test_pm2_case_in_exact_mode(prefix):
    # exact mode: MM/IM aggregated in 1e18 fixed point with Solidity truncation; same harness checks
    path = next(p for p in CASES if p.stem.startswith(prefix))
    case = load_pm2_case(_doc(path), path.stem, exact=True)
    checks = check_pm2_case(case)
    assert all(c.ok for c in checks)
    res = case.model.requirements(case.portfolio, case.market)
    assert res.exact["native_margin_mm"][0] == res.exact["equity"][0] - res.exact["mm"][0]


def test_case_67_is_rejected_like_upstream_set_scenarios():
    # a LINEAR skew scenario with a spot move: PMRM_2.setScenarios reverts, so the harness skips the case
    (path,) = [p for p in CASES if p.stem in UPSTREAM_SKIPPED]
    with pytest.raises(ValueError, match=r"allowed 1.0 for a LINEAR/ABS skew scenario"):
        load_pm2_case(_doc(path), path.stem)


def test_golden_preset_grid_is_the_default_case_grid():
    # the preset's grid equals the scenario list of the cases that use the default parameter set
    doc = _doc(next(p for p in CASES if p.stem.startswith("test_10_")))
    g = pm2_grid(doc)
    assert g.vol == DERIVE_PM2_GOLDEN_GRID.vol
    assert g.spot == pytest.approx(DERIVE_PM2_GOLDEN_GRID.spot, rel=1e-15)
    assert g.dampening == pytest.approx(DERIVE_PM2_GOLDEN_GRID.dampening, rel=1e-12)


def test_a_changed_parameter_breaks_the_match():
    # the checks can fail: one contract parameter off (mmFactor 0.8 -> 0.81) fails MM but not IM
    doc = _doc(next(p for p in CASES if p.stem.startswith("test_12_")))
    doc["Parameters"]["Margin"]["MM_LOSS_FACTOR"] = 0.81
    checks = {c.name: c.ok for c in check_pm2_case(load_pm2_case(doc, "patched"))}
    assert checks["MM"] is False and checks["IM"] is True


def test_cli_vectors_counts_passes_and_failures(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from defistress.sim.cli.app import app

    for p in CASES[:3]:
        shutil.copy(p, tmp_path / p.name)
    ok = CliRunner().invoke(app, ["margin", "vectors", str(tmp_path), "-q"])
    assert ok.exit_code == 0 and "3/3 cases pass" in ok.output
    doc = _doc(CASES[0])
    doc["Parameters"]["Margin"]["IM_LOSS_FACTOR"] = 1.1
    (tmp_path / CASES[0].name).write_text(json.dumps(doc))
    bad = CliRunner().invoke(app, ["margin", "vectors", str(tmp_path)])
    assert bad.exit_code == 1 and "2/3 cases pass" in bad.output and "IM" in bad.output
    empty = CliRunner().invoke(app, ["margin", "vectors", str(tmp_path / "nope")])
    assert empty.exit_code == 2 and "no test_*.json case files" in empty.output
