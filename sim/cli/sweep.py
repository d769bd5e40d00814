"""`defistress sweep`: many seeded runs over a parameter grid, resumable, with risk metrics."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from defistress.scenarios.loader import ScenarioError

if TYPE_CHECKING:
    from defistress.sim.experiments.sweep import SweepSummary


class Backend(StrEnum):
    process = "process"
    dask = "dask"
    inline = "inline"


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (exit 143), so the lock, pools and temporary files are cleaned up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML"),
        seeds: int = typer.Option(20, min=1, help="number of seeds per grid point"),
        seed_start: int = typer.Option(0, min=0, help="first seed"),
        grid: list[str] = typer.Option(
            [],
            "--grid",
            help="swept key and values, e.g. --grid protocols.lend.assets.ETH.liquidation_bonus=0.05,0.075,0.1",
        ),
        set_: list[str] = typer.Option([], "--set", help="fixed overrides for every run"),
        out: Path = typer.Option(
            Path("runs/sweep"),
            help="sweep folder: missing, empty, or a sweep folder of the same scenario, --set values and grid keys "
            "(more seeds or grid values are added to it; finished runs are skipped)",
        ),
        workers: int | None = typer.Option(None, min=1, help="parallel worker processes (default 1)"),
        backend: Backend | None = typer.Option(
            None, help="process | dask | inline (default: process; dask with --scheduler)"
        ),
        scheduler: str | None = typer.Option(
            None, help="address of a running dask scheduler (tcp://host:8786) to use instead of a local cluster"
        ),
        batch: int = typer.Option(1, min=1, help="runs per task (several seeds per task cut scheduler overhead)"),
        max_in_flight: int | None = typer.Option(
            None, min=1, help="tasks submitted at once (default: two per worker thread plus two)"
        ),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="run again the runs recorded as failed"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no table; prints only the folder"),
    ):
        """Run a grid of parameters x seeds; a killed sweep resumes where it stopped when run again."""
        from defistress.sim.experiments.sweep import parse_grid
        from defistress.sim.experiments.sweep import sweep as run_sweep
        from defistress.sim.experiments.sweep_backends import WorkerDied

        console, err = Console(), Console(stderr=True, soft_wrap=True)

        def fail(message: str, code: int = 2) -> None:
            err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            raise typer.Exit(code)

        if scheduler and workers is not None:
            fail("--workers: a cluster given by --scheduler brings its own workers; drop --workers")
        chosen = backend.value if backend else ("dask" if scheduler else "process")
        try:
            g = parse_grid(grid)

            def run(on_done: Callable[[int, int], None] | None = None) -> SweepSummary:
                return run_sweep(
                    scenario,
                    list(range(seed_start, seed_start + seeds)),
                    g,
                    out,
                    set_,
                    workers=workers or 1,
                    backend=chosen,
                    on_done=on_done,
                    scheduler=scheduler,
                    batch_size=batch,
                    max_in_flight=max_in_flight,
                    retry_failed=retry_failed,
                )

            with sigterm_as_exit():
                if not quiet and sys.stderr.isatty():
                    from rich.progress import Progress

                    with Progress(console=err, transient=True) as bar:
                        task = bar.add_task("runs", total=None)
                        summary = run(lambda d, t: bar.update(task, completed=d, total=t))
                else:
                    summary = run()
        except (ScenarioError, ValueError) as exc:
            fail(str(exc))
        except WorkerDied as exc:
            fail(str(exc), code=1)
        if quiet:
            console.print(str(summary.out), highlight=False, soft_wrap=True)
            return
        print_risk(console, summary.out, summary.rows, summary.failed)


def print_risk(console: Console, out: Path, rows: int, failed: int) -> None:
    import pandas as pd

    risk = pd.read_csv(out / "risk.csv")
    params = [c for c in risk.columns if c.startswith("param:")]
    t = Table(title=f"sweep: {rows} runs in {out}" + (f", {failed} failed (see results.parquet)" if failed else ""))
    for c in [*params, "runs"] + (["failed"] if failed else []):
        t.add_column(c)
    measures = ("var95_bad_debt_usd", "es99_bad_debt_usd", "lar95_liquidation_usd")
    for c in measures:
        t.add_column(c.replace("_usd", " (USD)"), justify="right")
    for _, r in risk.iterrows():
        vals = [str(r[c]) for c in params] + [str(int(r["runs"]))] + ([str(int(r["failed"]))] if failed else [])
        for c in measures:
            v = r.get(c, math.nan)
            ok = isinstance(v, float) and not math.isnan(v)
            vals.append(f"{v:,.0f} [{r[c + '_ci_low']:,.0f}, {r[c + '_ci_high']:,.0f}]" if ok else "n/a")
        t.add_row(*vals)
    console.print(t)
