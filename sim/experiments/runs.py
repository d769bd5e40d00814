"""Runs: the pure entry point `run_scenario(scenario, seed) -> RunResult`, and the run folder on disk.

A run folder holds summary.json (metrics + manifest), timeseries.parquet (one row per block),
events.parquet (one row per event), health.parquet (health factors before/after) and report.html
with its PNG figures. It is written to a temporary folder first and moved into place at the end, so a
failed run never leaves partial output and never damages an earlier finished run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from defistress.scenarios.loader import LoadedScenario, load
from defistress.sim.analysis.summary import summarize
from defistress.sim.engine.model import StressModel


@dataclass
class RunResult:
    """What one run produced: metrics dict, per-block timeseries, event log, manifest."""

    metrics: dict
    timeseries: pd.DataFrame
    events: pd.DataFrame
    manifest: dict
    health_before: dict[str, np.ndarray] = field(default_factory=dict)
    health_after: dict[str, np.ndarray] = field(default_factory=dict)
    graph: nx.MultiDiGraph | None = None  # the scenario's network

    def summary(self) -> dict:
        return {**self.metrics, "manifest": self.manifest}


def package_version() -> str:
    try:
        return version("defistress")
    except PackageNotFoundError:
        return "0+unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(loaded: LoadedScenario, model: StressModel) -> dict:
    """Everything needed to reproduce the run: scenario hash, seed, code version, data hashes."""
    s = loaded.scenario
    return {
        "scenario": s.run.name,
        "description": s.run.description,
        "scenario_source": loaded.source,
        "scenario_sha256": loaded.hash,
        "seed": model.seed,
        "package_version": package_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "block_seconds": s.run.block_seconds,
        "blocks": model.n_blocks,
        **model.data_manifest(),  # data_sha256, replay (series, feeds, fill), gas (replayed or modelled)
    }


def events_frame(events: list) -> pd.DataFrame:
    """The event log as a table, one row per event (columns are the union of event fields)."""
    if not events:
        return pd.DataFrame(
            {
                "block": pd.Series([], dtype="int64"),
                "source": pd.Series([], dtype="str"),
                "kind": pd.Series([], dtype="str"),
            }
        )
    from dataclasses import fields

    from defistress.protocols.events import Event

    # Event.row() is dataclasses.asdict (a deep copy); for events of plain scalar fields a flat dict is the
    # same row at a tenth of the cost (100k-account runs log ~100k events)
    plain = {int, float, str, bool, type(None)}
    names: dict[type, tuple] = {}
    rows = []
    for e in events:
        t = type(e)
        f = names.get(t)
        if f is None:
            f = names[t] = tuple(x.name for x in fields(t)) if t.row is Event.row else ()
        vals = [getattr(e, k) for k in f]
        if f and all(type(v) in plain for v in vals):
            d = dict(zip(f, vals))
            d["kind"] = e.kind
            rows.append(d)
        else:
            rows.append(e.row())
    return pd.DataFrame(rows)


def run_scenario(
    scenario,
    seed: int | None = None,
    overrides: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run a scenario (built-in name, TOML path, dict or model) with a seed; pure: no files written."""
    loaded = load(scenario, overrides)
    model = StressModel(loaded, seed)
    model.run(progress)
    ts = model.recorder.frame()
    ev = events_frame(model.env.events)
    return RunResult(
        summarize(model, ts, ev),
        ts,
        ev,
        manifest(loaded, model),
        model.recorder.health_before,
        model.recorder.health_after(),
        model.graph,
    )


def write_run(result: RunResult, out: str | Path, report: bool = True) -> Path:
    """Write the run folder atomically (temporary folder, then rename into place)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "summary.json").write_text(json.dumps(result.summary(), indent=2, default=_json_default))
        result.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
        _parquet_safe(result.events).to_parquet(tmp / "events.parquet", index=False)
        health_frame(result).to_parquet(tmp / "health.parquet", index=False)
        if report:
            from defistress.sim.report.html import write_report

            write_report(result, tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def health_frame(result: RunResult) -> pd.DataFrame:
    rows = []
    for when, dists in (("before", result.health_before), ("after", result.health_after)):
        for pid, hf in dists.items():
            rows.append(pd.DataFrame({"protocol": pid, "when": when, "health": hf}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame({"protocol": [], "when": [], "health": []})


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns of mixed Python objects (dicts, mixed types) become JSON strings for Parquet."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            vals = out[c].dropna()
            kinds = {type(v) for v in vals}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool, int, float}):
                out[c] = out[c].map(
                    lambda v: (
                        None
                        if v is None or (isinstance(v, float) and np.isnan(v))
                        else json.dumps(v, default=_json_default)
                        if not isinstance(v, str)
                        else v
                    )
                )
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
