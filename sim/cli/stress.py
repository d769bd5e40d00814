"""`defistress stress-search`: the smallest shock that crosses a loss threshold with a given probability."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from defistress.scenarios.loader import ScenarioError
from defistress.sim.cli.errors import guarded
from defistress.sim.cli.sweep import Backend, sigterm_as_exit


def register(app: typer.Typer) -> None:
    @app.command("stress-search")
    @guarded
    def stress_search(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML"),
        shock: list[str] = typer.Option(
            [],
            "--shock",
            help="a shocked key and its range KEY=FROM..TO, e.g. shocks.0.jump=-0.05..-0.6; several move together "
            "(a direction) by one size from 0 (FROM) to 1 (TO)",
        ),
        threshold: str = typer.Option(
            ..., help="loss threshold on a run metric: METRIC>VALUE (or >=, <, <=), e.g. bad_debt_usd>1M"
        ),
        probability: float = typer.Option(0.5, help="the target probability of crossing the threshold"),
        seeds: int = typer.Option(20, min=1, help="seeded runs per tested size (the same seeds at every size)"),
        seed_start: int = typer.Option(0, min=0, help="first seed"),
        curve_points: int = typer.Option(5, min=2, help="evenly spaced sizes of the liquidation curve (both ends)"),
        iterations: int = typer.Option(4, min=0, help="bisection steps after the curve"),
        set_: list[str] = typer.Option([], "--set", help="fixed overrides for every run"),
        out: Path = typer.Option(
            Path("runs/stress"), help="folder: missing, empty, or a stress search of the same configuration (resumed)"
        ),
        workers: int | None = typer.Option(None, min=1, help="parallel worker processes (default 1)"),
        backend: Backend | None = typer.Option(None, help="process | dask | inline (default: process)"),
        scheduler: str | None = typer.Option(None, help="address of a running dask scheduler to use"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the folder"),
    ) -> None:
        """Reverse stress test: bisect the shock size at which THRESHOLD is crossed with PROBABILITY (Wilson
        intervals), and write the liquidation curve (curve.csv, break.json, figures)."""
        from defistress.sim.experiments.stress_search import stress_search as run_search
        from defistress.sim.experiments.sweep_backends import WorkerDied

        console, err = Console(), Console(stderr=True, soft_wrap=True)

        def fail(message: str, code: int = 2) -> None:
            err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            raise typer.Exit(code)

        chosen = backend.value if backend else ("dask" if scheduler else "process")
        try:
            with sigterm_as_exit():
                r = run_search(
                    scenario,
                    shock,
                    threshold,
                    probability=probability,
                    seeds=range(seed_start, seed_start + seeds),
                    curve_points=curve_points,
                    iterations=iterations,
                    out=out,
                    overrides=set_,
                    workers=workers or 1,
                    backend=chosen,
                    scheduler=scheduler,
                )
        except (ScenarioError, ValueError) as exc:
            fail(str(exc))
        except WorkerDied as exc:
            fail(str(exc), code=1)
        if quiet:
            console.print(str(r.out), highlight=False, soft_wrap=True)
            return
        t = Table(title=f"stress-search: {threshold} in {r.out}")
        for c in ("size", *[k for k in r.curve.columns if "." in k], "P(crossed)", "95% Wilson", "mean bad debt"):
            t.add_column(escape(c), justify="right")
        for _, row in r.curve.iterrows():
            keys = [f"{row[k]:.4g}" for k in r.curve.columns if "." in k]
            t.add_row(
                f"{row['size']:.4g}",
                *keys,
                f"{int(row['crossed'])}/{int(row['runs'])}",
                f"[{row['p_low']:.2f}, {row['p_high']:.2f}]",
                f"{row['mean_bad_debt_usd']:,.0f}",
            )
        console.print(t)
        console.print(escape(r.found["verdict"]), highlight=False)
        if r.figures:
            console.print(f"figures: {escape(str(r.figures[0].parent))} ({len(r.figures)} PNG)")
