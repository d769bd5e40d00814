"""The `defistress` command line: run, validate, list, schema, sweep, graph, margin, compare.

Exit codes are the same for every command (sim/cli/errors.py): 0 success, 1 a failed run, 2 bad input with
nothing written. Output paths are checked before any work starts (sim/experiments/outdir.py).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from defistress.protocols.bounds import MAX_SEED
from defistress.scenarios.loader import ScenarioError, load, schema_text
from defistress.scenarios.registry import describe_builtins
from defistress.sim.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_OK,
    bad_input,
    guarded,
    run_failure,
)
from defistress.sim.experiments.outdir import check_out, check_out_file, write_file_atomically

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=f"Agent-based stress tests of DeFi margin protocols.\n\n{EXIT_CODES_HELP}",
)
console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)

SEED_HELP = "random seed, 0..2^63-1 (default: the scenario's run.seed)"
SET_HELP = "override a key, e.g. --set protocols.lend.assets.ETH.ltv=0.8 (repeatable)"
FORCE_HELP = "replace an earlier run at --out (a folder holding anything else is never replaced)"


def _version(value: bool) -> None:
    if value:
        from defistress.sim.experiments.runs import package_version

        console.print(f"defistress {package_version()}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the package version and exit"
    ),
) -> None:
    """Agent-based stress tests of DeFi margin protocols."""


def _progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@app.command()
@guarded
def run(
    scenario: str = typer.Argument(..., help="built-in name or path to a scenario TOML"),
    seed: int | None = typer.Option(None, min=0, max=MAX_SEED, help=SEED_HELP),
    out: Path | None = typer.Option(
        None,
        help="run folder to write (default: runs/<name>-seed<N>); it must be new, empty, or an earlier run folder "
        "replaced with --force: a folder holding anything else is refused before the run starts",
    ),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html and figures"),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="no progress bar and no summary table; the run folder's path is still printed"
    ),
):
    """Run one scenario and write its run folder (summary.json, scenario.toml, overrides.txt, timeseries.parquet,
    events.parquet, health.parquet, report.html)."""
    from defistress.sim.engine.model import StressModel
    from defistress.sim.experiments.runs import finish_run, write_run

    with bad_input():
        loaded = load(scenario, set_)
        seed_v = loaded.scenario.run.seed if seed is None else seed
        out = check_out(out or Path("runs") / f"{loaded.scenario.run.name}-seed{seed_v}", "run", force=force)
    with run_failure():
        model = StressModel(loaded, seed_v)  # set-up problems are bad input (exit 2), named by their table
        if _progress_enabled(quiet):
            from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                "{task.completed}/{task.total} blocks",
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task(loaded.scenario.run.name, total=loaded.scenario.n_blocks)
                model.run(lambda done, total: bar.update(task, completed=done))
        else:
            model.run()
        result = finish_run(loaded, model)
        path = write_run(result, out, report=not no_report, force=force)
    if quiet:
        print(path)
    else:
        print_summary(result.metrics)
        console.print(f"run folder: [bold]{path}[/]")


def print_summary(m: dict) -> None:
    t = Table(title=f"{m['scenario']} (seed {m['seed']})", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("bad debt", f"${m['bad_debt_usd']:,.0f} ({m['bad_debt_pct']:.2f}% of debt)"),
    ]
    ref = m.get("mark_to_reference") or {}
    if ref:
        rows.append(
            (
                "bad debt at reference prices",
                f"${ref['bad_debt_usd']:,.0f} ({ref['accounts_unhealthy']:,} accounts below health 1)",
            )
        )
    rows += [
        ("liquidations", f"{m['liquidations']:,}"),
        ("liquidation volume", f"${m['liquidation_volume_usd']:,.0f} ({m['debt_liquidated_pct']:.1f}% of debt)"),
        ("peak liquidations per block", f"{m['peak_liquidations_per_block']}"),
        ("liquidator value leakage", f"${m['liquidator_value_leakage_usd']:,.0f}"),
        ("liquidation slippage", f"${m['liquidation_slippage_usd']:,.0f}"),
        ("liquidator PnL", f"${m['liquidator_pnl_usd']:,.0f}"),
        ("max oracle error", f"{100 * m['max_oracle_error']:.2f}%"),
    ]
    if m.get("shocked_asset"):
        amp = m["cascade_amplification"]
        rows.append(
            (
                f"{m['shocked_asset']} drawdown (exogenous / with impact)",
                f"{100 * m['exogenous_drawdown']:.1f}% / {100 * m['reference_drawdown']:.1f}%",
            )
        )
        rows.append(("cascade amplification", "n/a" if amp is None else f"{amp:.3f}"))
    rows.append(("peak base fee", f"{m['peak_base_fee_gwei']:.0f} gwei"))
    finite = all(math.isfinite(v) for v in _floats(m))
    conserved = "yes" if m["conservation_ok"] else f"NO: {m['conservation_errors']}"
    rows.append(("ledger conserved", conserved if finite else "not reported: the figures hold NaN or infinity"))
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def _floats(node):
    """Every float in a nested metrics dict."""
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _floats(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _floats(v)


@app.command()
@guarded
def validate(
    file: str = typer.Argument(..., help="scenario TOML (or built-in name)"),
    set_: list[str] = typer.Option([], "--set", help="overrides to check too"),
    seed: int | None = typer.Option(None, min=0, max=MAX_SEED, help="seed of the set-up check (default: run.seed)"),
):
    """Check a scenario file and list every error with its key path and the allowed values, then set the
    scenario up (data files, protocols, populations; no block is simulated) so that what `run` would refuse
    is found here too. Exit 2 on any error."""
    from defistress.sim.engine.model import StressModel

    try:
        loaded = load(file, set_)
        from defistress.sim.engine.replay import check_data  # pandas: loaded only when validating

        check_data(loaded)  # the replay's files: columns, gaps, window (as `run` reads them)
    except ScenarioError as exc:
        err.print(f"[bold red]{exc.source}: {len(exc.errors)} error(s)[/]")
        for e in exc.errors:
            err.print(f"  - {e}", highlight=False, markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    with run_failure():
        StressModel(loaded, seed)
    s = loaded.scenario
    console.print(
        f"[green]ok[/] {s.run.name}: {len(s.protocols)} protocol(s), {len(s.agents)} agent group(s), "
        f"{s.n_blocks:,} blocks of {s.run.block_seconds:g} s"
    )


@app.command("list")
@guarded
def list_() -> None:
    """List the built-in scenarios."""
    t = Table(show_header=True)
    t.add_column("name")
    t.add_column("description")
    for name, desc in describe_builtins():
        t.add_row(name, desc)
    console.print(t)


@app.command()
@guarded
def schema(
    out: Path | None = typer.Option(
        None,
        help="write to a .json file instead of stdout (missing folders are created; an existing file needs --force)",
    ),
    force: bool = typer.Option(False, "--force", help="replace an existing file at --out"),
):
    """Print the JSON Schema of scenario files (every key with its description, unit and bounds)."""
    text = schema_text()
    if out is None:
        print(text, end="")
        return
    with bad_input():
        check_out_file(out, (".json",), force=force)
    with run_failure():
        write_file_atomically(out, text)
    console.print(f"wrote {out}")


def _mount_subcommands() -> None:
    """Sub-commands that live in their own modules register themselves here."""
    from defistress.sim.cli import compare as compare_cli
    from defistress.sim.cli import dashboard as dashboard_cli
    from defistress.sim.cli import graph as graph_cli
    from defistress.sim.cli import imports as import_cli
    from defistress.sim.cli import replay as replay_cli
    from defistress.sim.cli import stress as stress_cli
    from defistress.sim.cli import sweep as sweep_cli
    from defistress.sim.cli import tune as tune_cli
    from defistress.sim.cli.margin import margin_app

    app.add_typer(margin_app, name="margin", help="Compare margin models and backtest them.")
    for mod in (sweep_cli, graph_cli, compare_cli, tune_cli, stress_cli, import_cli, dashboard_cli, replay_cli):
        mod.register(app)


_mount_subcommands()


if __name__ == "__main__":  # pragma: no cover
    app()
