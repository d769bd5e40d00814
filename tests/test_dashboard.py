"""The live dashboard's model and page (sim/experiments/dashboard.py) without a browser: the sliders become the
scenario overrides a user could type, a run stepped from the page equals `defistress run` with those overrides,
a bad setting shows the scenario's keyed error, and the page renders and steps through solara.render."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from defistress.scenarios.loader import load
from defistress.sim.experiments.dashboard import Dashboard, Knobs, coerce_seed, dashboard_overrides
from defistress.sim.experiments.runs import run_scenario

SMALL = {"accounts": 300, "hours": 3.0}  # eth-crash's shocks start at 2 h


@pytest.mark.parametrize(("text", "value"), [("7", 7), (" 12 ", 12), (3, 3), ("4.0", 4), ("", 0)])
def test_the_seed_box_string_becomes_a_whole_number(text, value):
    assert coerce_seed(text) == value


@pytest.mark.parametrize("text", ["x", "-1", "1.5"])
def test_a_bad_seed_is_refused_with_its_name_and_the_allowed_values(text):
    with pytest.raises(ValueError, match=r"seed .*allowed a whole number >= 0"):
        coerce_seed(text)


def test_sliders_become_overrides_of_the_parts_the_scenario_has():
    scen = load("eth-crash").scenario  # jump -0.15, drift_to -0.25; lending ETH ltv/threshold/bonus from the file
    eth = scen.protocols[0].assets["ETH"]
    k = Knobs(shock_scale=2.0, bonus_scale=0.5, collateral_scale=0.9, accounts=400, hours=3.0)
    out = dashboard_overrides(scen, k)
    assert "run.duration=10800" in out  # 3 h x 3600 s
    assert "agents.borrowers.accounts=400" in out
    assert "shocks.0.jump=-0.3" in out and "shocks.1.drift_to=-0.5" in out  # x 2
    assert f"protocols.lend.assets.ETH.liquidation_bonus={eth.liquidation_bonus * 0.5:.6g}" in out
    assert f"protocols.lend.assets.ETH.ltv={eth.ltv * 0.9:.6g}" in out
    assert not any("liquidation_ratio" in o for o in out)  # eth-crash has no CDP
    # a shock scaled past -95% stays at -95% (the schema requires a fall above -100%)
    assert "shocks.0.jump=-0.95" in dashboard_overrides(scen, Knobs(shock_scale=10.0))


def test_a_cdp_slider_reaches_every_cdp():
    scen = load("black-thursday-maker").scenario
    out = dashboard_overrides(scen, Knobs(cdp_liquidation_ratio=1.6))
    cdps = [p.id for p in scen.protocols if p.kind == "cdp"]
    assert cdps and all(f"protocols.{c}.params.liquidation_ratio=1.6" in out for c in cdps)


def test_a_depeg_scales_its_distance_from_the_peg():
    # no built-in schedules a depeg: a stand-in with the three attributes the function reads
    shock = SimpleNamespace(jump=None, drift_to=None, depeg_to=0.9, asset="DAI")
    scen = SimpleNamespace(
        agents=[], protocols=[], shocks=[shock], market=SimpleNamespace(asset=lambda sym: SimpleNamespace(peg=1.0))
    )
    assert dashboard_overrides(scen, Knobs(shock_scale=2.0, hours=0)) == ["shocks.0.depeg_to=0.8"]  # 1 - 2 x 0.1


def test_a_run_stepped_from_the_page_equals_defistress_run_with_the_same_overrides():
    page = Dashboard(scenario="eth-crash", seed="3", blocks_per_step=97, **SMALL)  # 97: the last step is partial
    assert page.error == "" and page.n_blocks == 900  # 3 h of 12-s blocks
    steps = 0
    while page.running:
        page.step()
        steps += 1
    assert steps == 10 and page.block == 900  # ceil(900 / 97)
    ref = run_scenario("eth-crash", 3, page.overrides)
    pd.testing.assert_frame_equal(page.live().timeseries, ref.timeseries)
    bad = page.live().metrics["protocols"]["lend"]["bad_debt_usd"]
    assert bad == pytest.approx(ref.timeseries["lend_bad_debt_usd"].iloc[-1])
    assert "run complete" in page.status() and "block 900 of 900" in page.status()


def test_a_bad_setting_shows_the_scenarios_keyed_error_instead_of_a_run():
    page = Dashboard(scenario="eth-crash", seed="1", accounts=300, hours=1.0)  # the 2-h shock is after the end
    assert page.sim is None and not page.running
    assert "shocks.0.at" in page.error and page.status().startswith("error: ")
    page.step()  # nothing to step
    assert page.block == 0
    assert Dashboard(seed="-2").error == "seed '-2': allowed a whole number >= 0"


def test_the_page_renders_and_its_step_button_advances_the_run():
    solara = pytest.importorskip("solara", reason="the dashboard extra (solara) is part of the dev install")
    import ipyvuetify as v

    from defistress.sim.experiments.dashboard import page

    @solara.component
    def Served():  # noqa: N802 - as `solara run` lays it out: SolaraViz's controls live in the app's sidebar
        with solara.AppLayout():
            page("eth-crash", accounts=300, hours=3.0)

    box, rc = solara.render(Served(), handle_error=False)
    try:
        rc.find(v.Alert, children=["eth-crash, seed 1: ready, 900 blocks; press Step or play"]).assert_single()
        rc.find(v.Html, children=["Prices: 0 blocks shown"]).assert_single()
        rc.find(v.Btn, children=["Step"]).widget.click()  # one Mesa step = 25 blocks (5 minutes)
        rc.find(v.Html, children=["Prices: 25 blocks shown"]).wait_for(timeout=60)
        status = rc.find(v.Alert).widget.children[0]
        assert status.startswith("eth-crash, seed 1: block 25 of 900 (0.08 h), ") and status.endswith("; running")
    finally:
        rc.close()


def test_the_dashboard_command_refuses_an_unknown_scenario_and_names_the_allowed_ones():
    from typer.testing import CliRunner

    from defistress.sim.cli.app import app

    result = CliRunner().invoke(app, ["dashboard", "no-such-scenario"])
    assert result.exit_code == 2
    assert "scenario 'no-such-scenario': allowed built-in names" in result.output and "eth-crash" in result.output
