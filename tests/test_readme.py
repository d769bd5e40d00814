"""The README says what the code does: its figures for `eth-crash` at seed 1 come from a real run, its table of
built-in scenarios is what `defistress list` prints, the shocks those descriptions state are the shocks the
scenario files schedule, and its performance figures are the ones in `benchmarks/results/` and
`benchmarks/README.md`. When a figure changes, update the README (and the benchmark files) rather than a test.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defistress.scenarios.loader import load
from defistress.scenarios.registry import builtin_names, describe_builtins
from defistress.sim.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCH = ROOT / "benchmarks"


def usd(v: float) -> str:
    """The README's short USD format: $1.01M, $79.1M, $451k (three significant figures)."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"${v / div:.3g}{unit}"
    return f"${v:.3g}"


def section(title: str) -> str:
    """The README's text from the heading `## title` to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.M | re.S)
    assert m, f"README has no section '## {title}'"
    return m.group(1)


def test_usd_format_matches_the_readme_convention():
    assert (usd(1_006_628.6), usd(79_123_000), usd(451_200), usd(3_960_000)) == ("$1.01M", "$79.1M", "$451k", "$3.96M")


@pytest.fixture(scope="module")
def eth_crash_seed1():
    from defistress.sim.experiments.runs import run_scenario

    return run_scenario("eth-crash", seed=1).metrics


def test_readme_eth_crash_table_is_what_seed_1_produces(eth_crash_seed1):
    m = eth_crash_seed1
    p = m["protocols"]["lend"]
    rows = {
        "bad debt": f"{usd(m['bad_debt_usd'])} ({m['bad_debt_pct']:.2f}% of debt)",
        "liquidations / volume": (
            f"{m['liquidations']:,} / {usd(m['liquidation_volume_usd'])} ({m['debt_liquidated_pct']:.1f}% of debt)"
        ),
        "peak liquidations per block": f"{m['peak_liquidations_per_block']}",
        "liquidator value leakage (bonus paid by borrowers)": usd(m["liquidator_value_leakage_usd"]),
        "slippage paid by liquidators selling collateral": usd(m["liquidation_slippage_usd"]),
        "ETH drawdown, exogenous / with liquidation impact": (
            f"{100 * m['exogenous_drawdown']:.1f}% / {100 * m['reference_drawdown']:.1f}%"
        ),
        "peak base fee": f"{m['peak_base_fee_gwei']:.0f} gwei",
    }
    assert p["liquidations"] == m["liquidations"]  # the one market carries every liquidation quoted
    text = section("What a run produces")
    for metric, value in rows.items():
        assert f"| {metric} | {value} |" in text, (metric, value)
    # the scheduled shock the paragraph above the table states
    assert f"then drifting to −{-100 * scheduled_move('eth-crash', 'ETH'):.0f}% by 6 h" in text


def _readme_builtin_table() -> dict[str, str]:
    text = section("Built-in scenarios")
    return dict(re.findall(r"^\| `([a-z0-9-]+)` \| (.+?) \|$", text, flags=re.M))


def test_readme_lists_every_builtin_scenario_with_the_description_defistress_list_prints():
    assert _readme_builtin_table() == dict(describe_builtins())
    out = CliRunner().invoke(app, ["list"])
    assert out.exit_code == 0, out.output
    assert listed(out.output) == {name: "".join(desc.split()) for name, desc in describe_builtins()}


def listed(output: str) -> dict[str, str]:
    """name -> description (whitespace removed) from the table `defistress list` prints, whose cells may wrap
    over several lines at whatever width the terminal has."""
    rows: dict[str, str] = {}
    name = None
    for line in output.splitlines():
        cells = [c.strip() for c in re.split("[│┃]", line)[1:-1]]
        if len(cells) != 2 or cells == ["name", "description"]:
            continue
        if cells[0]:
            name = cells[0]
            rows[name] = ""
        if name is not None:
            rows[name] += "".join(cells[1].split())
    return rows


def scheduled_move(name: str, asset: str) -> float:
    """The asset's fall the scenario schedules: every jump and drift compounded (sim.engine.market applies
    log1p(jump) at `at` and log1p(drift_to) spread over the window), as a fraction."""
    s = load(name).scenario
    factor = 1.0
    for shock in s.shocks:
        if shock.asset == asset:
            factor *= (1 + (shock.jump or 0.0)) * (1 + (shock.drift_to or 0.0))
    return factor - 1.0


@pytest.mark.parametrize("name", builtin_names())
def test_a_builtin_description_states_the_shock_its_file_schedules(name):
    desc = dict(describe_builtins())[name]
    stated = re.findall(r"\b([A-Z]{2,5}) -(\d+)%", desc)
    s = load(name).scenario
    if s.market.replay is not None:
        assert not stated, f"{name} replays real prices: its description should not state a scheduled fall"
        return
    for asset, pct in stated:
        move = scheduled_move(name, asset)
        assert abs(100 * -move - int(pct)) <= 0.5, f"{name}: says {asset} -{pct}%, schedules {100 * move:.1f}%"
    if not stated:
        assert all(shock.jump is None and shock.drift_to is None for shock in s.shocks), name


def test_readme_performance_figures_are_the_committed_benchmark_results():
    model = json.loads((BENCH / "results" / "model.json").read_text())
    margin = json.loads((BENCH / "results" / "margin.json").read_text())
    case = {(c["model"], c["accounts"]): c for c in model["cases"]}
    ratio = {(r["baseline"], r["accounts"]): r for r in model["comparison"]}
    kinds = ("vectorised", "mesa-per-account", "plain-per-account")
    rows = []
    for n in sorted({c["accounts"] for c in model["cases"]}):
        v, m, p = (case[(k, n)] for k in kinds)
        for label, key, rkey, extra in (
            ("24 h", "cpu_s", "ratio_day", "extrapolated"),
            ("crash window (2 h to 6 h)", "crash_cpu_s", "ratio_crash_window", "crash_extrapolated"),
        ):
            ge = lambda c: "≥ " if c[extra] else ""  # noqa: E731,B023
            r = lambda x: f"{x:.1f}" if x < 10 else f"{x:,.0f}"  # noqa: E731
            rm, rp = ratio[(kinds[1], n)][rkey], ratio[(kinds[2], n)][rkey]
            rows.append(
                f"| {n:,} accounts, {label} | {v[key]:,.1f} s | {ge(m)}{m[key]:,.1f} s | {ge(p)}{p[key]:,.1f} s | "
                f"{ge(m)}{r(rm)}× / {ge(p)}{r(rp)}× |"
            )
    rows.append(
        f"| scenario-grid portfolio margin, {margin['accounts']:,} accounts × "
        f"{margin['positions'] // margin['accounts']} options × {margin['scenarios']} scenarios | "
        f"{margin['seconds']:.2f} s | | | |"
    )
    text = section("Performance")
    for row in rows:
        assert row in text, row
    # no baseline that ran the whole horizon disagreed with the engine's liquidations (tests/test_naive_models.py
    # checks the agreement itself)
    assert not any(r["agree"] is False for r in model["comparison"])
    # benchmarks/README.md's table of latest figures holds the same CPU times
    bench = (BENCH / "README.md").read_text()
    for c in model["cases"]:
        assert f"| {c['model']} | {c['accounts']:,} | {c['cpu_s']:,.1f} |" in bench, (c["model"], c["accounts"])


# --- figures of the slower scenarios, from tests/data/readme_figures.json (benchmarks/readme_figures.py) -----------
FIGURES = json.loads((ROOT / "tests" / "data" / "readme_figures.json").read_text())


def figures(key: str) -> dict:
    return FIGURES["runs"][key]["metrics"]


@pytest.mark.parametrize("key", sorted(FIGURES["runs"]))
def test_the_committed_figures_come_from_the_current_scenario_files(key):
    """A changed scenario file needs `make readme-figures` (and a README update), which this test asks for."""
    name, _, regime = key.partition("/")
    loaded = load(name, [f"margin.regime={regime}"] if regime else [])
    assert FIGURES["runs"][key]["scenario_sha256"] == loaded.hash, f"{key}: re-run benchmarks/readme_figures.py"
    assert FIGURES["seed"] == 1 and figures(key)["seed"] == 1 and figures(key)["conservation_ok"]


def test_readme_defi_contagion_sentence_is_what_seed_1_produces():
    m = figures("defi-contagion")
    lend, maker, perps = (m["protocols"][p] for p in ("lend", "maker", "perps"))
    c = m["contagion"]
    text = " ".join(section("Built-in scenarios").split())
    assert c["n_protocols_breached"] == 2 and set(c["loss_attribution_usd"]) == {"collateral_of"}
    assert c["cascade_depth_by_protocol"]["lend"] == 1 and c["cascade_depth_by_protocol"]["perps"] == 2
    assert maker["bad_debt_usd"] == 0.0 and c["insurance_drawdown_usd"]["perps"] > 0.99 * c["capital_usd"]["perps"]
    for phrase in (
        f"ETH's exogenous path falls {100 * m['exogenous_drawdown']:.0f}% at its lowest",
        f"the lending market writes off {usd(lend['bad_debt_usd'])} after {lend['liquidations']:,} liquidations",
        f"drains its ${c['capital_usd']['perps'] / 1e6:.1f}M insurance fund",
        f"auto-deleverages {c['adl_count']['perps']:,} times ({usd(perps['bad_debt_usd'])} of bad debt)",
        f"the CDP kicks {maker['liquidations']:,} auctions and loses nothing",
        f"DAI strays up to {100 * c['peg_deviation_max']['DAI']:.1f}% from its peg",
        "Losses reach two protocols at cascade depths 1 (lending) and 2 (perps), all attributed to the collateral edge",
    ):
        assert phrase in text, phrase


def test_readme_black_thursday_maker_sentence_is_what_seed_1_produces():
    card = {row["key"]: row for row in figures("black-thursday-maker")["scorecard"]}
    zero, debt = card["zero_bid_share@maker"], card["bad_debt_usd@maker"]
    text = " ".join(section("Built-in scenarios").split())
    phrase = (
        f"zero-bid share at {100 * zero['simulated']:.0f}% of auctioned collateral against the published "
        f"{100 * zero['published']:.0f}%, and system debt at {usd(debt['simulated'])} against the "
        f"{debt['published'] / 1e6:.2f}M DAI debt auction"
    )
    assert phrase in text, phrase


def signed_usd(v: float) -> str:
    return ("+" if v >= 0 else "−") + usd(abs(v))


def test_readme_regime_table_is_what_seed_1_produces_under_both_regimes():
    silo, pm = (figures(f"inter-protocol-pm/{r}")["margin"] for r in ("silo", "portfolio"))
    assert silo["principals"] == pm["principals"]
    on = {r: [v for v, x in m["by_venue"].items() if x["liquidations"]] for r, m in (("silo", silo), ("pm", pm))}
    assert on["silo"] == ["lend"]  # "(all on lending)"
    rows = [
        ("capital required (Σ IM at the start)", usd(silo["capital_required_usd"]),
         f"{usd(pm['capital_required_usd'])} (efficiency {pm['capital_efficiency']:.2f}×)"),
        ("largest margin shortfall", usd(silo["margin_shortfall_max_usd"]), usd(pm["margin_shortfall_max_usd"])),
        ("liquidations of their rows / volume",
         f"{silo['liquidations']:,} / {usd(silo['liquidation_volume_usd'])} (all on lending)",
         f"{pm['liquidations']:,} / {usd(pm['liquidation_volume_usd'])}"),
        ("written off", usd(silo["written_off_usd"]), usd(pm["written_off_usd"])),
        ("lending debt left unbacked at the end (backed only by their cash on other venues)",
         usd(silo["by_venue"]["lend"]["unbacked_end_usd"]), usd(pm["by_venue"]["lend"]["unbacked_end_usd"])),
        ("the accounts' PnL over the run", signed_usd(silo["principal_pnl_usd"]), signed_usd(pm["principal_pnl_usd"])),
    ]  # fmt: skip
    text = section("Inter-protocol portfolio margin")
    for label, a, b in rows:
        assert f"| {label} | {a} | {b} |" in text, (label, a, b)
    flat = " ".join(text.split())
    m = figures("inter-protocol-pm/silo")
    spared = 1 - pm["liquidations"] / silo["liquidations"]
    saved = 1 - pm["capital_required_usd"] / silo["capital_required_usd"]
    assert f"At seed 1 ({silo['principals']} hedged accounts, ETH −{100 * m['exogenous_drawdown']:.0f}%" in flat
    assert f"spares the hedged books {100 * spared:.0f}% of their liquidations and {100 * saved:.0f}% of their" in flat
    assert f"ends with {usd(pm['by_venue']['lend']['unbacked_end_usd'])} of debt above its collateral" in flat


def test_readme_compound_tables_are_what_seed_1_produces():
    text = section("Compound v2 and v3, and flash-loan liquidators")
    flat = " ".join(text.split())
    m = figures("compound-dai-oracle-2020")
    p = m["protocols"]["compound"]
    card = {row["key"]: row for row in m["scorecard"]}
    assert {r["published"] for r in card.values()} == {89e6, 85.2e6, 6.8e6}
    for label, value in (
        ("debt liquidated on Compound", usd(p["liquidation_volume_usd"])),
        ("DAI liquidated", f"{p['end_liquidated_DAI'] / 1e6:.1f}M DAI"),
        ("incentive paid by borrowers", usd(m["liquidator_value_leakage_usd"])),
        ("largest oracle error (DAI stored above its market price)", f"{100 * m['max_oracle_error']:.1f}%"),
    ):
        assert f"| {label} | {value} |" in text, (label, value)
    assert f"That is {p['liquidations']:,} liquidations of {p['end_accounts_liquidated']:,.0f} accounts" in flat
    assert p["bad_debt_usd"] == 0.0 and f"the simulated liquidators keep {usd(m['liquidator_pnl_usd'])}" in flat
    c = figures("comet-eth-crash")
    q = c["protocols"]["comet"]
    rows = {
        "accounts absorbed / debt absorbed": f"{q['liquidations']:,} / {usd(q['liquidation_volume_usd'])}",
        "base reserves: start / lowest / end": (
            f"{usd(load('comet-eth-crash').scenario.protocols[0].reserves_usd)} / "
            f"{signed_usd(q['end_reserves_low_usd'])} / {usd(q['end_reserves_usd'])}"
        ),
        "absorbed collateral on the books at its peak": usd(q["end_collateral_reserves_peak_usd"]),
        "collateral sold / discount given to buyers": (
            f"{usd(q['end_collateral_sold_base'])} / {usd(q['end_collateral_discount_usd'])}"
        ),
        "bad debt": f"{usd(q['bad_debt_usd'])} ({q['bad_debt_pct']:.2f}% of debt)",
    }
    for label, value in rows.items():
        assert f"| {label} | {value} |" in text, (label, value)
    assert f"ETH −{100 * c['exogenous_drawdown']:.0f}% at its lowest" in flat


def sci(x: float) -> str:
    """The README's short scientific format: 4.7e-10, 1.5e-6, 3.5e+2 (two significant figures)."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:.1e}")


def test_readme_chain_figures_are_the_committed_bench_evm_results():
    """'Real books and the chain': the evm backend's cost per block and the differential checks' cases and largest
    deviations are those of benchmarks/results/evm.json (`python benchmarks/bench_evm.py`, needs `make chain`)."""
    evm = json.loads((BENCH / "results" / "evm.json").read_text())
    b, d = evm["backends"], evm["differential"]
    lend, amm, oracle = d["lending"], d["amm"], d["oracle"]
    cases, big = lend["cases"], lend["largest"]
    assert b["same_liquidations"] and b["model"]["liquidations"] == b["evm"]["liquidations"]
    assert oracle["mismatches"] == 0
    stated = [
        f"a block of that run costs {b['evm']['ms_per_block']:.1f} ms on the chain against "
        f"{b['model']['ms_per_block']:.1f} ms in the model ({b['slowdown_per_block']:.1f}×)",
        f"plus {b['evm']['setup_s']:.0f} s to start the node",
        f"({b['evm']['transactions']:,} transactions in all)",
        f"{sci(b['largest_relative_difference_debt_repaid'])} in a liquidation's amounts",
        f"{sci(b['largest_relative_difference_final_hf'])} in a final health factor",
        f"{amm['cases']['swaps']} swaps on a Uniswap v2",
        f"a push oracle over {oracle['blocks']:,} blocks",
        f"| {cases['accounts']} account reads |",
        f"| {big['aave_v3_model_base_units_opened']:.3f} units; HF {sci(big['aave_v3_model_hf_rel_opened'])} relative;",
        f"| {cases['accounts']} |",
        f"| {sci(big['float_model_usd_opened'])} USD; HF {sci(big['float_model_hf_rel_opened'])} relative |",
        f"| {cases['liquidations']} liquidations |",
        f"| {sci(big['aave-v3_model_liquidation_relative'])} relative; "
        f"{sci(big['aave-v3_model_liquidation_base_units'])} base units absolute",
        f"| {cases['reverts']} ({cases['reverts:HEALTH_FACTOR_NOT_BELOW_THRESHOLD']} HF ≥ 1, "
        f"{cases['reverts:COLLATERAL_CANNOT_BE_LIQUIDATED']} collateral switched off, "
        f"{cases['reverts:SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER']} debt not owed)",
        f"| {amm['cases']['swaps']} | to the base unit | 0 |",
        f"| {amm['cases']['swaps']} | 1 base unit + float64 precision, carried through the reserves | "
        f"{sci(amm['largest']['pool_output_relative'])} relative |",
        f"| {oracle['blocks']:,} blocks, {oracle['rounds']} rounds | equal | {oracle['mismatches']} mismatches |",
    ]
    stated.append(f"--cases {d['random_cases']}`: {d['random_cases']} random books of one to three accounts")
    text = " ".join(section("Real books and the chain").split())  # the README wraps its lines anywhere
    for s in stated:
        assert s in text, s


# --- the replay figures (benchmarks/results/replay-*/: defistress replay's scorecard.csv and replay.json) ----------
def replay_table_rows(folder: Path) -> list[str]:
    """The README's rows for one replay: figure, published (range), band and verdict, as the README writes them."""
    import pandas as pd

    table = pd.read_csv(folder / "scorecard.csv")

    def fmt(v: float, unit: str) -> str:
        if unit == "fraction":
            return f"{100 * v:.1f}%"
        if unit == "USD":
            return f"${v / 1e6:.2f}M"
        return f"{v:,.0f}"

    rows = []
    for _, r in table[table["published"].notna()].iterrows():
        pub = fmt(r["published"], r["unit"])
        if r["published_low"] != r["published_high"]:
            pub += f" ({fmt(r['published_low'], r['unit'])} - {fmt(r['published_high'], r['unit'])})"
        band = (
            f"{fmt(r['band_low'], r['unit'])} - {fmt(r['band_high'], r['unit'])} ({fmt(r['band_median'], r['unit'])})"
        )
        rows.append(f"| `{r['key']}` | {pub} | {band} | {'yes' if r['inside'] else 'no'} |")
    return rows


def test_readme_black_thursday_bands_are_the_committed_replay_of_the_current_scenario():
    folder = BENCH / "results" / "replay-black-thursday-maker"
    manifest = json.loads((folder / "replay.json").read_text())
    assert manifest["scenario_sha256"] == load("black-thursday-maker").hash, "re-run the replay (README command)"
    assert manifest["samples"] == 26 and manifest["seeds"] == [1] and manifest["runs"] == 26
    text = section("Scorecards, uncertainty bands and calibration")
    assert "`defistress replay black-thursday-maker --samples 26 --seeds 1`" in text
    rows = replay_table_rows(folder)
    assert len(rows) == 5 and all(r.endswith("| yes |") for r in rows)  # every published figure inside its band
    for row in rows:
        assert row in text, row


def test_readme_engine_against_floor_rows_are_the_committed_speed_results():
    """The "engine against the numpy floor" table is `bench_speed.py --readme` of benchmarks/results/speed.json."""
    spec = importlib.util.spec_from_file_location("bench_speed", BENCH / "bench_speed.py")
    bench_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_speed)
    data = json.loads((BENCH / "results" / "speed.json").read_text())
    lines = [line for line in bench_speed.readme_lines(data) if line]
    text = section("Performance")
    for line in lines:
        assert line in text, line


def test_readme_mutation_scores_are_the_committed_report():
    """Every module of tests/mutation/report.json has its row in the README's mutation table with the report's
    killed, equivalent and survived counts and score."""
    report = json.loads((ROOT / "tests" / "mutation" / "report.json").read_text())["modules"]
    text = section("How hard the tests bite: mutation testing")
    for module, entry in report.items():
        s = entry["summary"]
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{module}`")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        score = "100%" if s["score"] == 1.0 else f"{100 * s['score']:.1f}%"
        assert cells[2:5] == [f"{s['killed']:,}", f"{s['equivalent']:,}", f"{s['survived']:,}"], (module, cells)
        assert cells[5].rstrip("¹²³⁴⁵⁶") == score, (module, cells[5], score)
