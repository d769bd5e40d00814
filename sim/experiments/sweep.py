"""Parameter sweeps over many seeded runs, append-only and resumable.

Every finished run appends one JSON line to `results.jsonl` (flat metrics, the swept parameters, the seed,
a run key and its status). A killed sweep loses only the runs in flight: on restart, keys already in the
file are skipped and a line cut by the kill is rewritten out. A run that fails (or a grid point the
scenario refuses) is recorded as failed with its error and the sweep goes on. At the end the lines are
gathered into `results.parquet` and `risk.csv` (see `sweep_results`).

The folder records its configuration (`sweep.json`: the base scenario after --set, the swept keys) and
refuses a sweep of another one, so rows of different settings are never pooled; adding seeds or grid
values to a sweep is allowed. A lock (`.sweep.lock`, see `sweep_folder`) refuses a second sweep on the
same folder. Backends: in-process, a local process pool, or dask.distributed (local or `scheduler=`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defistress.scenarios.loader import LoadedScenario, ScenarioError, load
from defistress.sim.experiments.sweep_folder import (
    CONFIG,
    FIGURES,
    FINAL_FILES,
    LOCK,
    RESULTS,
    ResultsWriter,
    SweepConfig,
    SweepLock,
    check_config,
    check_out_target,
    read_rows,
    repair_results,
    write_config,
)
from defistress.sim.experiments.sweep_tasks import Item, SweepContext, encode_rows, failed_row, point_overrides

BACKENDS = ("process", "dask", "inline")


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did (this invocation) and what its folder now holds."""

    out: Path
    planned: int  #: runs in the grid x seeds
    skipped: int  #: of those, already in the folder
    ran: int  #: runs done now (finished or failed)
    rows: int  #: rows in results.parquet (the whole folder)
    failed: int  #: failed rows in results.parquet
    points: int  #: grid points in results.parquet
    torn_lines: int  #: cut lines rewritten out of results.jsonl at the start
    wall_s: float  #: seconds from the first task to the last result
    compute_s: float  #: worker CPU seconds spent inside runs
    client_s: float  #: client seconds spent handling results (append, bookkeeping)
    gather_s: float  #: seconds to write results.parquet, risk.csv and the figures
    figures: tuple[Path, ...] = ()  #: figures/*.png drawn from risk.csv
    warnings: tuple[str, ...] = ()  #: quantiles computed from too few seeds (also printed on the figures)


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Cartesian product of the swept values: [{key: value, ...}, ...]."""
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """`key=v1,v2,v3` strings into {key: [v1, v2, v3]} with TOML-typed values."""
    from defistress.scenarios.loader import _parse_value

    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--grid {item!r}: expected key.path=v1,v2,...")
        k, vals = item.split("=", 1)
        values = [_parse_value(v.strip()) for v in vals.split(",") if v.strip()]
        if not k.strip():
            raise ValueError(f"--grid {item!r}: empty key path")
        if not values:
            raise ValueError(f"--grid {item!r}: no values")
        grid[k.strip()] = list(dict.fromkeys(values))
    return grid


def run_key(scenario_hash: str, params: dict, seed: int) -> str:
    blob = json.dumps({"s": scenario_hash, "p": params, "seed": seed}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_arguments(seeds: list[int], workers: int, backend: str, scheduler: str | None, batch_size: int) -> None:
    """Refuse bad arguments with the option named, before anything is loaded or written."""
    if not seeds:
        raise ValueError("--seeds: must be at least 1 (got 0 seeds)")
    if any(int(s) < 0 for s in seeds):
        raise ValueError(f"--seed-start: seeds must be >= 0 (got {min(seeds)})")
    if backend not in BACKENDS:
        raise ValueError(f"--backend: must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if workers < 1:
        raise ValueError(f"--workers: must be at least 1 (got {workers})")
    if batch_size < 1:
        raise ValueError(f"--batch: must be at least 1 (got {batch_size})")
    if scheduler and backend != "dask":
        raise ValueError(f"--scheduler: needs --backend dask (got --backend {backend})")


def check_points(loaded: LoadedScenario, points: list[dict]) -> dict[int, ScenarioError]:
    """Validate every grid point now; returns the refused ones. All refused means a bad grid: raise."""
    bad: dict[int, ScenarioError] = {}
    for i, point in enumerate(points):
        try:
            load(loaded, point_overrides(point))
        except ScenarioError as exc:
            bad[i] = exc
    if bad and len(bad) == len(points):
        lines = [f"grid point {points[i]}: {e}" for i, e in list(bad.items())[:3]]
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ScenarioError(loaded.source, [f"--grid: every grid point is refused{more}", *lines])
    return bad


def sweep(
    scenario_ref: Any,
    seeds: list[int],
    grid: dict[str, list],
    out: Path,
    overrides: list[str] | None = None,
    workers: int = 1,
    backend: str = "process",
    on_done: Callable[[int, int], None] | None = None,
    *,
    scheduler: str | None = None,
    batch_size: int = 1,
    max_in_flight: int | None = None,
    retry_failed: bool = False,
    points: list[dict] | None = None,
) -> SweepSummary:
    """Run every (grid point, seed) not yet in `out`, appending rows, then gather the folder's results.

    `points` replaces the grid's cartesian product by a list of points with the same keys (a design, e.g. a
    Latin hypercube; `grid` is then ignored). Every check (arguments, scenario, grid, the folder) happens
    before the folder is created or a run starts.
    """
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    overrides = list(overrides or [])
    check_arguments(seeds, workers, backend, scheduler, batch_size)
    loaded = load(scenario_ref, overrides)
    points = grid_points(grid) if points is None else [dict(p) for p in points]
    if not points or any(sorted(p) != sorted(points[0]) for p in points):
        raise ValueError("points: need at least one point, every point with the same keys")
    refused = check_points(loaded, points)
    out = Path(out)
    existed = check_out_target(out, CONFIG)
    config = SweepConfig(loaded.source, loaded.hash, tuple(overrides), tuple(sorted(points[0])))
    if existed:
        check_config(out, config)
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = SweepLock(out).acquire()
    except BaseException:
        if not existed and not any(out.iterdir()):
            out.rmdir()
        raise
    try:
        if not check_config(out, config):  # again under the lock: another sweep may have made it meanwhile
            write_config(out, config)
        return _run(loaded, points, refused, seeds, out, workers, backend, on_done, scheduler, batch_size,
                    max_in_flight, retry_failed)  # fmt: skip
    finally:
        lock.release()
        _tidy(out, existed)


def _tidy(out: Path, existed: bool) -> None:
    """A sweep that ends with no result in its folder leaves the folder as it found it (missing or empty)."""
    results = out / RESULTS
    if results.exists() and results.stat().st_size > 0:
        return
    if any(p.name not in (CONFIG, LOCK, RESULTS) for p in out.iterdir()):
        return
    if existed:
        for name in (CONFIG, RESULTS):
            (out / name).unlink(missing_ok=True)
    else:
        shutil.rmtree(out, ignore_errors=True)


def _run(
    loaded: LoadedScenario,
    points: list[dict],
    refused: dict[int, ScenarioError],
    seeds: list[int],
    out: Path,
    workers: int,
    backend: str,
    on_done: Callable[[int, int], None] | None,
    scheduler: str | None,
    batch_size: int,
    max_in_flight: int | None,
    retry_failed: bool,
) -> SweepSummary:
    results = out / RESULTS
    torn = repair_results(results)
    have = {r["run_key"] for r in read_rows(results) if not (retry_failed and r.get("status") == "failed")}
    planned = len(points) * len(seeds)

    def todo(bad: bool) -> Iterator[Item]:
        for i, point in enumerate(points):
            if (i in refused) != bad:
                continue
            for s in seeds:
                k = run_key(loaded.hash, point, s)
                if k not in have:
                    yield point, s, k

    total = sum(1 for _ in todo(False)) + sum(1 for _ in todo(True))
    done, compute, client = 0, 0.0, 0.0
    t0 = time.perf_counter()
    if total:
        for name in FINAL_FILES:  # they come back at the end: a folder holding them is a complete sweep
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / FIGURES, ignore_errors=True)  # drawn again from the complete table at the end
        with ResultsWriter(results) as writer:

            def on_result(lines: bytes, seconds: float) -> None:
                nonlocal done, compute, client
                t = time.perf_counter()
                writer.append(lines)
                done += lines.count(b"\n")
                compute += seconds
                client += time.perf_counter() - t
                if on_done:
                    on_done(done, total)

            for i in refused:  # points the scenario refuses: recorded as failed, nothing to run
                on_result(
                    encode_rows([failed_row(p, s, k, refused[i]) for p, s, k in todo(True) if p is points[i]]), 0.0
                )
            ctx = SweepContext(uuid.uuid4().hex, loaded)
            execute(ctx, _batches(todo(False), batch_size), on_result, workers, backend, scheduler, max_in_flight)
    wall = time.perf_counter() - t0
    # pandas, pyarrow and scipy.stats load here, when there is a table to gather, not at import (issue 14)
    from defistress.sim.experiments.sweep_figures import write_figures
    from defistress.sim.experiments.sweep_results import finalize

    gathered = finalize(out, sorted(points[0]))
    figures, notes = write_figures(out)
    return SweepSummary(
        out=out,
        planned=planned,
        skipped=planned - total,
        ran=done,
        rows=gathered.rows,
        failed=gathered.failed,
        points=gathered.points,
        torn_lines=torn,
        wall_s=wall,
        compute_s=compute,
        client_s=client,
        gather_s=time.perf_counter() - t0 - wall,
        figures=tuple(figures),
        warnings=tuple(notes),
    )


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive runs, `size` at a time (the same grid point where possible: items come point by point)."""
    while batch := list(itertools.islice(items, size)):
        yield batch


def execute(
    ctx: SweepContext,
    batches: Iterator[list[Item]],
    on_result: Callable[[bytes, float], None],
    workers: int,
    backend: str,
    scheduler: str | None,
    max_in_flight: int | None,
) -> None:
    """Run batches on the chosen backend, handing each finished batch's rows to `on_result` (tune and
    stress-search use it too)."""
    from defistress.sim.experiments import sweep_backends

    if backend == "inline" or (backend == "process" and workers <= 1):
        sweep_backends.run_inline(ctx, batches, on_result)
    elif backend == "process":
        sweep_backends.run_process(ctx, batches, on_result, workers, max_in_flight)
    else:
        from defistress.sim.experiments.sweep_dask import run_dask

        run_dask(ctx, batches, on_result, workers, scheduler, max_in_flight)
