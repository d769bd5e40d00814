"""`defistress tune`: search protocol parameters with an Optuna study over seeded runs (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from defistress.scenarios.loader import ScenarioError
from defistress.sim.cli.errors import guarded
from defistress.sim.cli.sweep import Backend, sigterm_as_exit


def register(app: typer.Typer) -> None:
    @app.command()
    @guarded
    def tune(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML"),
        param: list[str] = typer.Option(
            [],
            "--param",
            help="tuned key: KEY=LOW..HIGH (float; integers at both ends: integer), KEY=LOW..HIGH:log, "
            "KEY=LOW..HIGH:STEP, or KEY=a,b,c (choices); e.g. protocols.lend.assets.ETH.liquidation_bonus=0.02..0.15",
        ),
        objective: list[str] = typer.Option(
            [],
            "--objective",
            help="min:METRIC or max:METRIC, METRIC = <statistic>_<run metric> (e.g. min:mean_liquidator_value_"
            "leakage_usd) or param:KEY; several make a multi-objective study",
        ),
        constraint: list[str] = typer.Option(
            [], "--constraint", help="METRIC<=VALUE (or <, >=, >), e.g. var99_bad_debt_usd<=250k"
        ),
        trials: int = typer.Option(20, min=1, help="trials in the study (a resumed study is extended to this)"),
        seeds: int = typer.Option(10, min=1, help="seeded runs per trial (the same seeds for every trial)"),
        seed_start: int = typer.Option(0, min=0, help="first seed"),
        parallel_trials: int = typer.Option(4, min=1, help="trials asked together and run in parallel"),
        sampler_seed: int = typer.Option(0, help="seed of Optuna's TPE sampler"),
        set_: list[str] = typer.Option([], "--set", help="fixed overrides for every run"),
        out: Path = typer.Option(
            Path("runs/tune"), help="study folder: missing, empty, or a study of the same configuration (resumed)"
        ),
        workers: int | None = typer.Option(None, min=1, help="parallel worker processes (default 1)"),
        backend: Backend | None = typer.Option(None, help="process | dask | inline (default: process)"),
        scheduler: str | None = typer.Option(None, help="address of a running dask scheduler to use"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the study folder"),
    ) -> None:
        """Tune protocol parameters: an Optuna study (SQLite, resumable) whose trials are sets of seeded runs,
        scored on risk metrics under constraints; writes trials.csv, pareto.csv, recommended.json and figures."""
        from defistress.sim.experiments.sweep_backends import WorkerDied
        from defistress.sim.experiments.tune import tune as run_tune

        console, err = Console(), Console(stderr=True, soft_wrap=True)

        def fail(message: str, code: int = 2) -> None:
            err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            raise typer.Exit(code)

        chosen = backend.value if backend else ("dask" if scheduler else "process")
        try:
            with sigterm_as_exit():
                result = run_tune(
                    scenario,
                    param,
                    objective,
                    constraint,
                    seeds=range(seed_start, seed_start + seeds),
                    trials=trials,
                    out=out,
                    overrides=set_,
                    parallel_trials=parallel_trials,
                    sampler_seed=sampler_seed,
                    workers=workers or 1,
                    backend=chosen,
                    scheduler=scheduler,
                )
        except (ScenarioError, ValueError) as exc:
            fail(str(exc))
        except WorkerDied as exc:
            fail(str(exc), code=1)
        for w in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
        if quiet:
            console.print(str(result.out), highlight=False, soft_wrap=True)
            return
        print_recommended(console, result.recommended, len(result.trials), result.out)
        if result.figures:
            console.print(f"figures: {escape(str(result.figures[0].parent))} ({len(result.figures)} PNG)")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def print_recommended(console: Console, rec: dict[str, Any] | None, n_trials: int, out: Path) -> None:
    if rec is None:
        console.print(f"tune: {n_trials} trial(s) in {out}; none completed (see trials.csv)")
        return
    t = Table(title=f"tune: recommended trial {rec['trial']} of {n_trials} ({rec['rule']}) in {out}")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_column("95% interval over seeds", justify="right")
    for k, v in rec["params"].items():
        t.add_row(escape(k), _fmt(v), "")
    for o in rec["objectives"]:
        ci = f"[{_fmt(o['ci_low'])}, {_fmt(o['ci_high'])}]" if "ci_low" in o else ""
        t.add_row(escape(o["objective"]), _fmt(o["value"]), ci)
    for c in rec["constraints"]:
        status = "holds" if c["holds"] else "VIOLATED"
        if c["holds"] and not c["holds_at_interval_end"]:
            status = "holds (not at the interval's end)"
        t.add_row(
            escape(f"{c['constraint']} ({status})"), _fmt(c["value"]), f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
        )
    console.print(t)
