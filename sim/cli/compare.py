"""`defistress compare SCENARIO --regimes silo,portfolio`: margin regimes on the same seeds, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from defistress.protocols.bounds import MAX_SEED
from defistress.sim.cli.errors import bad_input, guarded, run_failure


def register(app: typer.Typer) -> None:
    @app.command()
    @guarded
    def compare(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML with multi_venue accounts"),
        regimes: str = typer.Option("silo,portfolio", help="comma-separated: silo, portfolio"),
        seeds: int = typer.Option(1, min=1, max=100_000, help="number of seeds (at least 1)"),
        seed_start: int | None = typer.Option(
            None, min=0, max=MAX_SEED, help="first seed (default: the scenario's run.seed)"
        ),
        set_: list[str] = typer.Option([], "--set", help="overrides for every run (repeatable)"),
        out: Path | None = typer.Option(
            None,
            help="comparison folder (default: runs/compare-<name>): new, empty, or a comparison of the same "
            "scenario and overrides (finished runs are reused); anything else is refused before a run starts",
        ),
        force: bool = typer.Option(
            False, "--force", help="discard a comparison folder at --out made with another scenario or overrides"
        ),
        report: bool = typer.Option(False, "--report", help="also write each run's report.html"),
        quiet: bool = typer.Option(
            False, "--quiet", "-q", help="no progress bar and no table; the comparison folder's path is still printed"
        ),
    ):
        """Run the scenario under each margin regime on the same seeds; write compare.csv/json/html."""
        from defistress.scenarios.loader import load
        from defistress.sim.experiments.compare import compare_regimes, parse_regimes, summary_rows
        from defistress.sim.experiments.outdir import check_out

        console, err = Console(), Console(stderr=True, soft_wrap=True)
        with bad_input():
            regs = parse_regimes(regimes)
            loaded = load(scenario, set_)
            if not any(a.kind == "multi_venue" for a in loaded.scenario.agents):
                raise ValueError(
                    f"{loaded.source}: agents: no 'multi_venue' population, so every regime would be identical; "
                    "add one (see the built-in 'inter-protocol-pm')"
                )
            first = loaded.scenario.run.seed if seed_start is None else seed_start
            if first + seeds - 1 > MAX_SEED:
                raise ValueError(f"--seed-start {first} + --seeds {seeds}: seeds must stay <= {MAX_SEED}")
            folder = out or Path("runs") / f"compare-{loaded.scenario.run.name}"
            check_out(
                folder,
                "compare",
                force=force,
                config={"scenario": loaded.scenario.run.name, "scenario_sha256": loaded.hash},
            )
            seed_list = list(range(first, first + seeds))
        # `loaded` already carries the --set overrides: each run adds only its regime
        with run_failure():
            if not quiet and sys.stderr.isatty():
                from rich.progress import Progress

                with Progress(console=err, transient=True) as bar:
                    task = bar.add_task("runs", total=len(regs) * seeds)
                    df = compare_regimes(
                        loaded,
                        regs,
                        seed_list,
                        folder,
                        [],
                        report,
                        on_done=lambda d, t: bar.update(task, completed=d),
                        force=force,
                    )
            else:
                df = compare_regimes(loaded, regs, seed_list, folder, [], report, force=force)
        if quiet:
            print(folder)
            return
        t = Table(title=f"{loaded.scenario.run.name}: {len(seed_list)} seed(s), means; files in {folder}")
        t.add_column("figure")
        for r in dict.fromkeys(df["regime"]):
            t.add_column(r, justify="right")
        for name, vals in summary_rows(df):
            t.add_row(name, *vals)
        console.print(t)
        console.print(f"wrote {folder / 'compare.html'}")
