"""`defistress compare SCENARIO --regimes silo,portfolio`: margin regimes on the same seeds, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from defistress.scenarios.loader import ScenarioError


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML with multi_venue accounts"),
        regimes: str = typer.Option("silo,portfolio", help="comma-separated: silo, portfolio"),
        seeds: int = typer.Option(1, help="number of seeds"),
        seed_start: int | None = typer.Option(None, help="first seed (default: the scenario's run.seed)"),
        set_: list[str] = typer.Option([], "--set", help="overrides for every run"),
        out: Path | None = typer.Option(None, help="folder (default: runs/compare-<name>)"),
        report: bool = typer.Option(False, "--report", help="also write each run's report.html"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ):
        """Run the scenario under each margin regime on the same seeds; write compare.csv/json/html."""
        from defistress.scenarios.loader import load
        from defistress.sim.experiments.compare import compare_regimes, parse_regimes, summary_rows

        console, err = Console(), Console(stderr=True, soft_wrap=True)
        try:
            regs = parse_regimes(regimes)
            loaded = load(scenario, set_)
            first = loaded.scenario.run.seed if seed_start is None else seed_start
            folder = out or Path("runs") / f"compare-{loaded.scenario.run.name}"
            seed_list = list(range(first, first + seeds))
            # `loaded` already carries the --set overrides: each run adds only its regime
            if not quiet and sys.stderr.isatty():
                from rich.progress import Progress

                with Progress(console=err, transient=True) as bar:
                    task = bar.add_task("runs", total=len(regs) * seeds)
                    df = compare_regimes(
                        loaded, regs, seed_list, folder, [], report, on_done=lambda d, t: bar.update(task, completed=d)
                    )
            else:
                df = compare_regimes(loaded, regs, seed_list, folder, [], report)
        except (ScenarioError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        if quiet:
            return
        t = Table(title=f"{loaded.scenario.run.name}: {len(seed_list)} seed(s), means; files in {folder}")
        t.add_column("figure")
        for r in dict.fromkeys(df["regime"]):
            t.add_column(r, justify="right")
        for name, vals in summary_rows(df):
            t.add_row(name, *vals)
        console.print(t)
        console.print(f"wrote {folder / 'compare.html'}")
