"""`defistress replay` (scorecards with uncertainty bands) and `defistress calibrate` (fit the uncertain inputs
to an event's published figures, test the fit on other events)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from defistress.scenarios.loader import ScenarioError
from defistress.sim.report.formatting import format_figure as _num


def _quantiles(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--band {text!r}: expected two quantiles like 0.05,0.95") from None
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"--band {text!r}: need 0 <= low < high <= 1")
    return lo, hi


def _verdict(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return "[green]inside[/]" if bool(v) else "[red]outside[/]"


def register(app: typer.Typer) -> None:
    @app.command()
    def replay(
        scenario: str = typer.Argument(None, help="built-in name or scenario TOML (omit with --all)"),
        all_: bool = typer.Option(False, "--all", help="every built-in replay with published figures"),
        seeds: int = typer.Option(3, help="seeds per design sample"),
        seed_start: int = typer.Option(1, help="first seed"),
        samples: int = typer.Option(10, help="Latin-hypercube samples of the uncertain inputs"),
        design_seed: int = typer.Option(0, help="seed of the Latin-hypercube design"),
        band_: str = typer.Option("0.05,0.95", "--band", help="quantiles of the band"),
        set_: list[str] = typer.Option([], "--set", help="fixed overrides for every run"),
        smoke: bool = typer.Option(False, "--smoke", help="reduced size: apply the scenario's run.smoke overrides"),
        out: Path = typer.Option(None, help="replay folder (default runs/replay/<name>, or runs/replay with --all)"),
        workers: int = typer.Option(1, help="parallel worker processes"),
        backend: str = typer.Option("process", help="process | dask | inline"),
        no_report: bool = typer.Option(False, "--no-report", help="skip index.html and its figures"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress and no table; prints only the folder"),
    ):
        """Score a replay against its published figures with bands over seeds x uncertain inputs (LHS design)
        and rank the inputs by the variance they explain; resumable (runs already done are skipped)."""
        from defistress.sim.experiments.replay import replay as run_replay
        from defistress.sim.experiments.replay import replay_all

        console, err = Console(), Console(stderr=True, soft_wrap=True)
        try:
            q = _quantiles(band_)
            seed_list = list(range(seed_start, seed_start + seeds))
            if seeds < 1:
                raise ValueError("--seeds: must be at least 1")
            if all_ == (scenario is not None):
                raise ValueError("give a scenario or --all, not both and not neither")
            show = not quiet and sys.stderr.isatty()
            if all_:
                table = replay_all(
                    out or Path("runs/replay"), seed_list, samples, None, workers, backend, smoke, design_seed, q,
                    not no_report, on_scenario=(lambda n: err.print(f"replaying {n}")) if show else None,
                )  # fmt: skip
                rows = [
                    (r["event"], r["figure"], r["published"], r["published_low"], r["published_high"],
                     r["band_low"], r["band_median"], r["band_high"], r["inside"])
                    for _, r in table.iterrows()
                ]  # fmt: skip
                title = f"replays: {table['event'].nunique() if len(table) else 0} events"
                folder = out or Path("runs/replay")
            else:
                res = run_replay(
                    scenario, out or Path("runs/replay") / Path(scenario).stem, seed_list, samples, set_, workers,
                    backend, design_seed, q, smoke, not no_report,
                )  # fmt: skip
                pub = res.published_rows()
                rows = [
                    (res.scenario, r["key"], r["published"], r["published_low"], r["published_high"],
                     r["band_low"], r["band_median"], r["band_high"], r["inside"])
                    for _, r in pub.iterrows()
                ]  # fmt: skip
                title = f"{res.scenario}: {len(res.runs)} runs, folder {res.out}"
                folder = Path(res.out)
        except (ScenarioError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        if quiet:
            console.print(str(folder))  # the CLI convention: --quiet still says where the results are
            return
        t = Table(title=title)
        for c in ("event", "figure", "published (range)", f"band {q[0]:g}-{q[1]:g} (median)", "inside"):
            t.add_column(c)
        for ev, fig, pv, plo, phi, lo, med, hi, ins in rows:
            pr = _num(pv) if plo == phi else f"{_num(pv)} ({_num(plo)}-{_num(phi)})"
            t.add_row(ev, fig, pr, f"{_num(lo)} to {_num(hi)} ({_num(med)})", _verdict(ins))
        console.print(t)

    @app.command()
    def calibrate(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML with published figures"),
        trials: int = typer.Option(30, help="Optuna trials (input sets tried)"),
        seeds: int = typer.Option(2, help="seeds per trial (the loss is on seed-averaged figures)"),
        seed_start: int = typer.Option(1, help="first seed"),
        sampler_seed: int = typer.Option(0, help="seed of the TPE sampler"),
        inputs: str = typer.Option("", help="comma-separated input names to fit (default: all declared)"),
        test: list[str] = typer.Option([], "--test", help="another event to run with the fitted inputs"),
        set_: list[str] = typer.Option([], "--set", help="fixed overrides for every run"),
        smoke: bool = typer.Option(False, "--smoke", help="reduced size (run.smoke overrides)"),
        out: Path = typer.Option(None, help="calibration folder (default runs/calibrate/<name>)"),
        workers: int = typer.Option(1, help="parallel worker processes"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no table; prints only the calibration folder"),
    ):
        """Fit the scenario's uncertain inputs to its published figures (Optuna TPE over seeded runs); write
        fit.json and trials.csv, and with --test score other events with the fitted inputs (out of sample)."""
        from defistress.sim.experiments.calibrate import calibrate as run_calibrate
        from defistress.sim.experiments.calibrate import transfer
        from defistress.sim.experiments.outdir import write_file_atomically

        console, err = Console(), Console(stderr=True, soft_wrap=True)
        try:
            if trials < 1 or seeds < 1:
                raise ValueError("--trials and --seeds: must be at least 1")
            seed_list = list(range(seed_start, seed_start + seeds))
            names = [n.strip() for n in inputs.split(",") if n.strip()] or None
            folder = out or Path("runs/calibrate") / Path(scenario).stem
            fit = run_calibrate(scenario, folder, trials, seed_list, workers, sampler_seed, set_, smoke, names)
            tests = [transfer(fit.inputs, other, seed_list, workers, smoke) for other in test]
            if tests:
                write_file_atomically(folder / "out_of_sample.json", json.dumps(tests, indent=2, default=str))
        except (ScenarioError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        if quiet:
            console.print(str(folder))
            return
        console.print(f"fitted inputs of {fit.scenario} (loss {fit.loss:.4g}): {fit.inputs}")
        t = Table(title="in sample and out of sample")
        for c in ("event", "figure", "published (range)", "simulated (mean)", "inside"):
            t.add_column(c)
        for r in fit.figures:
            t.add_row(fit.scenario + " (fit)", r["key"], _num(r["published"]), _num(r["simulated_mean"]),
                      _verdict(r["inside"]))  # fmt: skip
        for o in tests:
            for r in o["figures"]:
                t.add_row(o["scenario"] + f" (shares {', '.join(o['shared_inputs']) or 'nothing'})", r["key"],
                          _num(r["published"]), _num(r["simulated_mean"]), _verdict(r["inside"]))  # fmt: skip
        console.print(t)
        console.print(f"folder: [bold]{folder}[/]")
