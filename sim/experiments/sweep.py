"""Parameter sweeps over many seeded runs, append-only and resumable.

Every finished run appends one JSON line to `results.jsonl` (flat metrics, the swept parameters, the
seed and a run key). A killed sweep loses only the runs in flight: on restart, keys already in the file
are skipped and a torn last line is ignored. At the end the lines are gathered into `results.parquet`
and `risk.csv` (VaR/ES/LaR per parameter combination, with bootstrap intervals).
Backends: in-process, a local process pool, or a dask.distributed cluster.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd

from defistress.scenarios.loader import load
from defistress.sim.analysis.risk import risk_table

RESULTS = "results.jsonl"


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Cartesian product of the swept values: [{key: value, ...}, ...]."""
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """`key=v1,v2,v3` strings into {key: [v1, v2, v3]} with TOML-typed values."""
    from defistress.scenarios.loader import _parse_value

    grid = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--grid {item!r}: expected key.path=v1,v2,...")
        k, vals = item.split("=", 1)
        grid[k.strip()] = [_parse_value(v.strip()) for v in vals.split(",") if v.strip()]
        if not grid[k.strip()]:
            raise ValueError(f"--grid {item!r}: no values")
    return grid


def run_key(scenario_hash: str, params: dict, seed: int) -> str:
    blob = json.dumps({"s": scenario_hash, "p": params, "seed": seed}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def flat_metrics(metrics: dict) -> dict:
    """Scalar metrics, with per-protocol figures as `{pid}_{name}` columns."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
    for pid, m in metrics.get("protocols", {}).items():
        for k, v in m.items():
            if isinstance(v, (int, float)) or v is None:
                out[f"{pid}_{k}"] = v
    for k, v in (metrics.get("contagion") or {}).items():
        if isinstance(v, (int, float)):
            out[f"contagion_{k}"] = v
    if "scorecard_metrics" in metrics:  # the scorecard vocabulary under its flat keys (sim.analysis.scorecard)
        from defistress.sim.analysis.scorecard import flat_scorecard

        out.update({f"sc:{k}": v for k, v in flat_scorecard(metrics["scorecard_metrics"]).items()})
    return out


def point_overrides(point: dict) -> list[str]:
    """A point's {key: value} as `--set` strings, values in TOML syntax (strings quoted, booleans lower-case)."""
    from defistress.scenarios.loader import _toml_value

    return [f"{k}={_toml_value(v)}" for k, v in point.items()]


def one_run(scenario_ref, base_overrides: list[str], params: dict, seed: int, key: str) -> dict:
    """Run one point of the sweep (in a worker); returns the JSON row."""
    from defistress.sim.experiments.runs import run_scenario

    overrides = list(base_overrides) + point_overrides(params)
    r = run_scenario(scenario_ref, seed, overrides)
    row = flat_metrics(r.metrics)
    row.update({f"param:{k}": v for k, v in params.items()})
    row.update({"seed": seed, "run_key": key, "scenario_sha256": r.manifest["scenario_sha256"]})
    return row


def done_keys(path: Path) -> set[str]:
    """Keys of runs already in the results file (a torn last line is ignored)."""
    keys = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                keys.add(json.loads(line)["run_key"])
            except (json.JSONDecodeError, KeyError):
                continue
    return keys


def _append(path: Path, row: dict) -> None:
    with path.open("a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn line from a killed sweep: close it
                f.write(b"\n")
        f.write((json.dumps(row, default=float) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def sweep(
    scenario_ref,
    seeds: list[int],
    grid: dict[str, list],
    out: Path,
    overrides: list[str] | None = None,
    workers: int = 1,
    backend: str = "process",
    on_done: Callable[[int, int], None] | None = None,
    points: list[dict] | None = None,
) -> pd.DataFrame:
    """Run every (grid point, seed), appending results; returns the results table of all runs in `out`.

    `points` replaces the grid's cartesian product by a list of points (a design, e.g. a Latin hypercube)."""
    overrides = list(overrides or [])
    pts = grid_points(grid) if points is None else list(points)
    loaded = load(scenario_ref, overrides)  # validate the base once, before any worker starts
    for point in pts:  # and every grid point, so a typo fails fast
        load(loaded, point_overrides(point))
    ref = loaded.source if Path(loaded.source).is_file() else scenario_ref
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS
    have = done_keys(results)
    todo = [(p, s, run_key(loaded.hash, p, s)) for p in pts for s in seeds]
    todo = [t for t in todo if t[2] not in have]
    total, done = len(todo), 0
    if backend not in ("process", "dask", "inline"):
        raise ValueError(f"backend must be one of 'process', 'dask', 'inline', got {backend!r}")
    if backend == "inline" or (backend == "process" and workers <= 1):
        for p, s, k in todo:
            _append(results, one_run(ref, overrides, p, s, k))
            done += 1
            if on_done:
                on_done(done, total)
    elif backend == "process":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(one_run, ref, overrides, p, s, k) for p, s, k in todo]
            for f in as_completed(futs):
                _append(results, f.result())
                done += 1
                if on_done:
                    on_done(done, total)
    else:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed

        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            futs = [client.submit(one_run, ref, overrides, p, s, k, pure=False) for p, s, k in todo]
            for f in dask_completed(futs):
                _append(results, f.result())
                done += 1
                if on_done:
                    on_done(done, total)
    return finalize(out, list(grid) if points is None else sorted({k for p in pts for k in p}))


def finalize(out: Path, grid_keys: list[str]) -> pd.DataFrame:
    """Gather results.jsonl into results.parquet and write risk.csv per grid point."""
    rows = []
    for line in (out / RESULTS).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df.to_parquet(out / "results.parquet", index=False)
    group = [f"param:{k}" for k in grid_keys if f"param:{k}" in df]
    risk_table(df, group).to_csv(out / "risk.csv", index=False)
    return df
