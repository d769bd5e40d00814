"""`defistress sweep`: many seeded runs over a parameter grid, resumable, with risk metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from defistress.scenarios.loader import ScenarioError


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML"),
        seeds: int = typer.Option(20, help="number of seeds per grid point"),
        seed_start: int = typer.Option(0, help="first seed"),
        grid: list[str] = typer.Option(
            [],
            "--grid",
            help="swept key and values, e.g. --grid protocols.lend.assets.ETH.liquidation_bonus=0.05,0.075,0.1",
        ),
        set_: list[str] = typer.Option([], "--set", help="fixed overrides for every run"),
        out: Path = typer.Option(Path("runs/sweep"), help="sweep folder (results.jsonl is appended to)"),
        workers: int = typer.Option(1, help="parallel worker processes"),
        backend: str = typer.Option("process", help="process | dask | inline"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no table"),
    ):
        """Run a grid of parameters x seeds; a killed sweep resumes where it stopped when run again."""
        from defistress.sim.experiments.sweep import parse_grid
        from defistress.sim.experiments.sweep import sweep as run_sweep

        console, err = Console(), Console(stderr=True, soft_wrap=True)
        try:
            g = parse_grid(grid)
            show = not quiet and sys.stderr.isatty()
            if show:
                from rich.progress import Progress

                with Progress(console=err, transient=True) as bar:
                    task = bar.add_task("runs", total=None)
                    df = run_sweep(
                        scenario,
                        list(range(seed_start, seed_start + seeds)),
                        g,
                        out,
                        set_,
                        workers,
                        backend,
                        on_done=lambda d, t: bar.update(task, completed=d, total=t),
                    )
            else:
                df = run_sweep(scenario, list(range(seed_start, seed_start + seeds)), g, out, set_, workers, backend)
        except (ScenarioError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        if quiet:
            return
        import pandas as pd

        risk = pd.read_csv(out / "risk.csv")
        t = Table(title=f"sweep: {len(df)} runs in {out}")
        for c in [c for c in risk.columns if c.startswith("param:")] + ["runs"]:
            t.add_column(c)
        for c in ("var95_bad_debt_usd", "es99_bad_debt_usd", "lar95_liquidation_usd"):
            t.add_column(c.replace("_usd", " (USD)"), justify="right")
        for _, r in risk.iterrows():
            vals = [str(r[c]) for c in risk.columns if c.startswith("param:")] + [str(int(r["runs"]))]
            for c in ("var95_bad_debt_usd", "es99_bad_debt_usd", "lar95_liquidation_usd"):
                vals.append(f"{r[c]:,.0f} [{r[c + '_ci_low']:,.0f}, {r[c + '_ci_high']:,.0f}]")
            t.add_row(*vals)
        console.print(t)
