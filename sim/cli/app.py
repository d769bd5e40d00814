"""The `defistress` command line: run, validate, list, schema, sweep, graph, margin, compare."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from defistress.scenarios.loader import ScenarioError, load, schema_text
from defistress.scenarios.registry import describe_builtins
from defistress.sim.engine.replay import DataFileError, check_data

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Agent-based stress tests of DeFi margin protocols.")
console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@app.command()
def run(
    scenario: str = typer.Argument(..., help="built-in name or path to a scenario TOML"),
    seed: int | None = typer.Option(None, help="random seed (default: the scenario's run.seed)"),
    out: Path | None = typer.Option(None, help="run folder to write (default: runs/<name>-seed<N>)"),
    set_: list[str] = typer.Option([], "--set", help="override a key, e.g. --set protocols.lend.assets.ETH.ltv=0.8"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html and figures"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no summary table"),
):
    """Run one scenario and write its run folder (summary.json, timeseries.parquet, events.parquet, report.html)."""
    from defistress.sim.experiments.runs import run_scenario, write_run

    try:
        loaded = load(scenario, set_)
    except ScenarioError as exc:
        _fail(str(exc))
    seed_v = loaded.scenario.run.seed if seed is None else seed
    out = out or Path("runs") / f"{loaded.scenario.run.name}-seed{seed_v}"
    try:
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
                result = run_scenario(loaded, seed_v, progress=lambda done, total: bar.update(task, completed=done))
        else:
            result = run_scenario(loaded, seed_v)
        path = write_run(result, out, report=not no_report)
    except (ScenarioError, DataFileError, ValueError) as exc:
        _fail(str(exc))
    if not quiet:
        print_summary(result.metrics)
        console.print(f"run folder: [bold]{path}[/]")


def print_summary(m: dict) -> None:
    t = Table(title=f"{m['scenario']} (seed {m['seed']})", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("bad debt", f"${m['bad_debt_usd']:,.0f} ({m['bad_debt_pct']:.2f}% of debt)"),
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
    rows.append(("ledger conserved", "yes" if m["conservation_ok"] else f"NO: {m['conservation_errors']}"))
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


@app.command()
def validate(
    file: str = typer.Argument(..., help="scenario TOML (or built-in name)"),
    set_: list[str] = typer.Option([], "--set", help="overrides to check too"),
):
    """Check a scenario file and list every error with its key path and the allowed values."""
    try:
        loaded = load(file, set_)
        check_data(loaded)  # the replay's files: columns, gaps, window (as `run` reads them)
    except ScenarioError as exc:
        err.print(f"[bold red]{exc.source}: {len(exc.errors)} error(s)[/]")
        for e in exc.errors:
            err.print(f"  - {e}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    s = loaded.scenario
    console.print(
        f"[green]ok[/] {s.run.name}: {len(s.protocols)} protocol(s), {len(s.agents)} agent group(s), "
        f"{s.n_blocks:,} blocks of {s.run.block_seconds:g} s"
    )


@app.command("list")
def list_() -> None:
    """List the built-in scenarios."""
    t = Table(show_header=True)
    t.add_column("name")
    t.add_column("description")
    for name, desc in describe_builtins():
        t.add_row(name, desc)
    console.print(t)


@app.command()
def schema(out: Path | None = typer.Option(None, help="write to a file instead of stdout")):
    """Print the JSON Schema of scenario files."""
    text = schema_text()
    if out:
        out.write_text(text)
    else:
        print(text, end="")


def _mount_subcommands() -> None:
    """Sub-commands that live in their own modules register themselves here."""
    from defistress.sim.cli import compare as compare_cli
    from defistress.sim.cli import graph as graph_cli
    from defistress.sim.cli import replay as replay_cli
    from defistress.sim.cli import sweep as sweep_cli
    from defistress.sim.cli.margin import margin_app

    app.add_typer(margin_app, name="margin", help="Compare margin models and backtest them.")
    for mod in (sweep_cli, graph_cli, compare_cli, replay_cli):
        mod.register(app)


_mount_subcommands()


if __name__ == "__main__":  # pragma: no cover
    app()
