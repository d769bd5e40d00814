"""Runs: the pure entry point `run_scenario(scenario, seed) -> RunResult`, and the run folder on disk.

A run folder holds summary.json (metrics + manifest with the overrides, package version and git commit),
scenario.toml (the resolved scenario, after overrides) and overrides.txt (the overrides, one `--set` per
line), timeseries.parquet (one row per block), events.parquet (one row per event), health.parquet (health
factors before/after), report.html with its PNG figures, and the marker `.defistress.json`. It is written
to a temporary folder first and moved into place at the end (sim/experiments/outdir.py), so a failed run
never leaves partial output and never damages an earlier finished run; a folder that is not a run folder
is never written into, and an earlier run is replaced only with `force`.

A run whose outputs hold NaN or infinity fails (`NonFiniteOutput`) instead of reporting them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import tomli_w

from defistress.kernels import status as kernel_status
from defistress.scenarios.loader import LoadedScenario, Overrides, load
from defistress.sim.analysis.summary import summarize
from defistress.sim.analysis.unhealthy import unhealthy_accounts
from defistress.sim.engine.model import StressModel
from defistress.sim.experiments.outdir import check_out, staged

#: files of a run folder besides the report
SCENARIO_FILE = "scenario.toml"
OVERRIDES_FILE = "overrides.txt"


class NonFiniteOutput(RuntimeError):
    """A run produced NaN or infinite figures: a failed run (exit 1), never a report of them."""


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
    loaded: LoadedScenario | None = None
    #: accounts still unhealthy at the end, one row each with its cause (sim.analysis.unhealthy)
    unhealthy: pd.DataFrame | None = None

    def summary(self) -> dict:
        return {**self.metrics, "manifest": self.manifest}


def package_version() -> str:
    try:
        return version("defistress")
    except PackageNotFoundError:
        return "0+unknown"


@functools.cache
def git_commit() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout the package runs from; (None, None) outside one."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (head or None), bool(status.strip())


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(loaded: LoadedScenario, model: StressModel) -> dict:
    """Everything needed to reproduce the run: scenario hash, seed, code version, data hashes."""
    s = loaded.scenario
    commit, dirty = git_commit()
    return {
        "scenario": s.run.name,
        "description": s.run.description,
        "scenario_source": loaded.source,
        "scenario_sha256": loaded.hash,
        "overrides": list(loaded.overrides),
        "seed": model.seed,
        "package_version": package_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "numpy": np.__version__,
        # the CPU-dispatch variables numpy and OpenBLAS read (set by `import defistress`: defistress.kernels)
        "kernels": kernel_status(),
        "block_seconds": s.run.block_seconds,
        "blocks": model.n_blocks,
        **model.data_manifest(),  # data_sha256, replay (series, feeds, fill), gas (replayed or modelled)
        "snapshots": getattr(model, "snapshots", []),
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
    # same row at a tenth of the cost (100k-account runs log ~100k events); numpy scalars are immutable, so the
    # value itself is what asdict's deep copy would put there
    plain = {int, float, str, bool, type(None), np.float64, np.int64, np.bool_}
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
    overrides: Overrides = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run a scenario (built-in name, TOML path, dict or model) with a seed; pure: no files written.

    `overrides` are "key.path=value" strings or a dict {"key.path": value}. Raises `NonFiniteOutput` when a
    figure or a timeseries value comes out NaN or infinite."""
    loaded = load(scenario, overrides)
    model = StressModel(loaded, seed)
    model.run(progress)
    return finish_run(loaded, model)


def finish_run(loaded: LoadedScenario, model: StressModel) -> RunResult:
    """The RunResult of a model that has run: frames, metrics (checked finite), manifest."""
    ts = model.recorder.frame()
    ev = events_frame(model.env.events)
    unhealthy = unhealthy_accounts(model)
    metrics = summarize(model, ts, ev, unhealthy)
    check_finite_outputs(metrics, ts)
    return RunResult(
        metrics,
        ts,
        ev,
        manifest(loaded, model),
        model.recorder.health_before,
        model.recorder.health_after(),
        model.graph,
        loaded,
        unhealthy,
    )


def check_finite_outputs(metrics: dict, ts: pd.DataFrame) -> None:
    """Raise NonFiniteOutput naming every metric and timeseries column holding NaN or infinity."""
    bad = [k for k, v in _numbers(metrics) if not math.isfinite(v)]
    num = ts.select_dtypes(include="number")
    cols = [c for c in num.columns if not np.isfinite(num[c].to_numpy(dtype=float)).all()]
    if bad or cols:
        raise NonFiniteOutput(
            "the run produced non-finite figures (NaN or infinity), so its results are not reported: "
            + "; ".join(
                ([f"metrics {bad[:8]}" + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")] if bad else [])
                + ([f"timeseries columns {cols[:8]}" + (f" and {len(cols) - 8} more" if len(cols) > 8 else "")])
                * bool(cols)
            )
        )


def _numbers(node, key: str = ""):
    """(dotted key, value) of every float in a nested metrics dict (None and strings are skipped)."""
    if isinstance(node, bool):
        return
    if isinstance(node, (int, float, np.floating, np.integer)):
        yield key, float(node)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{key}.{i}")


def resolved_toml(loaded: LoadedScenario) -> str:
    """The resolved scenario (after overrides, every default filled in) as TOML; it loads to the same scenario."""
    head = [
        f"# Resolved scenario of {loaded.scenario.run.name}: {loaded.source}",
        *(f"#   --set {o}" for o in loaded.overrides),
        f"# sha256 of the resolved scenario: {loaded.hash}",
        "",
    ]
    data = loaded.scenario.model_dump(mode="json", exclude_none=True)
    return "\n".join(head) + tomli_w.dumps(data)


def write_run(result: RunResult, out: str | Path, report: bool = True, force: bool = False) -> Path:
    """Write the run folder atomically (temporary folder, then rename into place).

    `out` must be missing, empty or an earlier run folder; an earlier run is replaced only with `force`.
    Anything else raises OutputFolderError before a file is written."""
    folder = check_out(out, "run", force=force)
    config = {"scenario": result.metrics.get("scenario"), "seed": result.metrics.get("seed")}
    with staged(folder, "run", config) as tmp:
        (tmp / "summary.json").write_text(
            json.dumps(result.summary(), indent=2, default=_json_default, allow_nan=False)
        )
        if result.loaded is not None:
            (tmp / SCENARIO_FILE).write_text(resolved_toml(result.loaded), encoding="utf-8")
            (tmp / OVERRIDES_FILE).write_text("".join(f"{o}\n" for o in result.loaded.overrides), encoding="utf-8")
        result.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
        _parquet_safe(result.events).to_parquet(tmp / "events.parquet", index=False)
        health_frame(result).to_parquet(tmp / "health.parquet", index=False)
        if report:
            from defistress.sim.report.html import write_report

            write_report(result, tmp)
    return folder


def health_frame(result: RunResult) -> pd.DataFrame:
    """Health factors of every account with debt, before and after, long format: protocol, account (the
    protocol's row index, so before and after join on (protocol, account)), when, health; and for accounts
    still unhealthy at the end, `cause` (sim.analysis.unhealthy), else an empty string."""
    rows = []
    for when, dists in (("before", result.health_before), ("after", result.health_after)):
        for pid, hf in dists.items():
            hf = np.asarray(hf, dtype=float)
            keep = np.flatnonzero(np.isfinite(hf))
            rows.append(
                pd.DataFrame({"protocol": pid, "account": keep.astype(np.int64), "when": when, "health": hf[keep]})
            )
    df = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(
            {
                "protocol": pd.Series([], dtype="str"),
                "account": pd.Series([], dtype="int64"),
                "when": pd.Series([], dtype="str"),
                "health": pd.Series([], dtype="float64"),
            }
        )
    )
    df["cause"] = ""
    u = result.unhealthy
    if u is not None and len(u):
        key = pd.MultiIndex.from_frame(u[["protocol", "account"]])
        cause = pd.Series(u["cause"].to_numpy(), index=key)
        after = df["when"] == "after"
        idx = pd.MultiIndex.from_frame(df.loc[after, ["protocol", "account"]])
        df.loc[after, "cause"] = cause.reindex(idx).fillna("").to_numpy()
    return df


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
