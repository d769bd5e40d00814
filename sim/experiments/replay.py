"""Scorecards with uncertainty bands: a Latin-hypercube design over a scenario's declared uncertain inputs,
every design point run at several seeds through the sweep machinery (append-only, resumable, parallel),
then each scorecard figure reported as a band over seeds x samples with the published figure inside it or
not, and the inputs ranked by the share of the figure's variance each explains.

The output folder holds:
- `design.csv`: one row per design sample: its Latin-hypercube coordinates (u_*) and input values;
- `runs/`: the sweep folder (results.jsonl appended run by run, results.parquet, risk.csv);
- `scorecard.csv` / `scorecard.json`: per figure, the band (low, median, high), the published value and
  range, inside or not, and the sensitivity indices; `replay.json`: what was run (a manifest);
- `index.html` with its figures (band vs published per figure, sensitivity).

The design is drawn with scipy.stats.qmc.LatinHypercube (McKay et al. 1979) from `design_seed`, so the same
call draws the same points and a killed replay, run again, skips the runs already in `runs/results.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.scenarios.loader import LoadedScenario, ScenarioError, load
from defistress.scenarios.schema_scorecard import METRICS, scorecard_key
from defistress.scenarios.schema_uncertainty import UncertainInput, Value
from defistress.sim.analysis.bands import band, inside, seed_share, sensitivity
from defistress.sim.experiments.outdir import write_file_atomically
from defistress.sim.experiments.sweep import sweep
from defistress.sim.experiments.sweep_results import PARQUET

#: default band: the 5% and 95% quantiles over seeds x samples
QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class Design:
    """Latin-hypercube samples of the uncertain inputs: coordinates u in [0, 1) and the inputs' values."""

    inputs: tuple[UncertainInput, ...]
    u: np.ndarray  #: (samples, inputs)
    seed: int

    @property
    def samples(self) -> int:
        return int(self.u.shape[0])

    def values(self, i: int) -> dict[str, Value]:
        """Sample i as {input name: value}."""
        return {inp.name: inp.value_at(float(self.u[i, j])) for j, inp in enumerate(self.inputs)}

    def point(self, i: int) -> dict[str, Value]:
        """Sample i as the overrides {scenario key: value} a run applies."""
        return {k: v for inp, v in zip(self.inputs, self.values(i).values()) for k in inp.keys}

    def coordinates(self) -> np.ndarray:
        """The numeric axes of sensitivity analysis (schema_uncertainty.UncertainInput.coordinate)."""
        out = np.empty(self.u.shape)
        for i in range(self.samples):
            for j, (inp, v) in enumerate(zip(self.inputs, self.values(i).values())):
                out[i, j] = inp.coordinate(v)
        return out

    def frame(self) -> pd.DataFrame:
        rows = []
        for i in range(self.samples):
            row: dict[str, Any] = {"sample": i}
            row.update({f"u_{inp.name}": float(self.u[i, j]) for j, inp in enumerate(self.inputs)})
            row.update(self.values(i))
            rows.append(row)
        return pd.DataFrame(rows)


def lhs_design(inputs: list[UncertainInput], samples: int, seed: int = 0) -> Design:
    """`samples` Latin-hypercube points over the inputs (scipy.stats.qmc.LatinHypercube, scrambled, seeded).

    With no inputs the design is one empty point (the band is over seeds only)."""
    if samples < 1:
        raise ValueError(f"--samples: must be at least 1 (got {samples})")
    if not inputs:
        return Design((), np.zeros((1, 0)), seed)
    from scipy.stats import qmc

    u = qmc.LatinHypercube(d=len(inputs), rng=np.random.default_rng(seed)).random(samples)
    return Design(tuple(inputs), u, seed)


@dataclass
class ReplayResult:
    """What a replay produced: the table of figures with bands, and where it is on disk."""

    scenario: str
    out: Path
    table: pd.DataFrame
    design: Design
    runs: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    def published_rows(self) -> pd.DataFrame:
        return self.table[self.table["published"].notna()].reset_index(drop=True)


def _portable_source(source: str) -> str:
    """A built-in's source as `builtin:<name>` (not the install path, which differs per machine); others as given."""
    from defistress.scenarios.registry import builtin_names, builtin_path

    for name in builtin_names():
        if str(builtin_path(name)) == str(source):
            return f"builtin:{name}"
    return str(source)


def replay(
    scenario_ref: Any,
    out: Path,
    seeds: list[int],
    samples: int = 10,
    overrides: list[str] | None = None,
    workers: int = 1,
    backend: str = "process",
    design_seed: int = 0,
    quantiles: tuple[float, float] = QUANTILES,
    smoke: bool = False,
    report: bool = True,
    on_done: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Run the design x seeds and write the replay folder `out` (see the module docstring)."""
    if not seeds:
        raise ValueError("--seeds: must be at least 1")
    base = load(scenario_ref)
    ref, overrides = source_and_overrides(base, scenario_ref, smoke_overrides(base, smoke) + list(overrides or []))
    loaded = load(ref, overrides)
    inputs = list(loaded.scenario.uncertain)
    design = lhs_design(inputs, samples if inputs else 1, design_seed)
    points = [design.point(i) for i in range(design.samples)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomically(out / "design.csv", design.frame().to_csv(index=False))
    summary = sweep(ref, seeds, {}, out / "runs", overrides, workers, backend, on_done=on_done, points=points)
    runs = design_runs(design, summary.out / PARQUET, seeds)
    table = score_table(loaded, design, runs, quantiles)
    manifest = {
        "scenario": loaded.scenario.run.name,
        "scenario_source": _portable_source(loaded.source),
        "scenario_sha256": loaded.hash,
        "overrides": overrides,
        "smoke": smoke,
        "seeds": list(seeds),
        "samples": design.samples,
        "design": "scipy.stats.qmc.LatinHypercube (scrambled)",
        "design_seed": design_seed,
        "quantiles": list(quantiles),
        "sensitivity": "SALib RBD-FAST first-order indices (S1, with 95% bootstrap half-widths S1conf) on "
        "seed-averaged outcomes",
        "inputs": [u.model_dump(mode="json") for u in inputs],
        "assumed": list(loaded.scenario.run.assumed),
        "runs": int(len(runs)),
        "failed_runs": int(summary.failed),
    }
    result = ReplayResult(loaded.scenario.run.name, out, table, design, runs, manifest)
    write_outputs(result, report=report)
    return result


def source_and_overrides(base: LoadedScenario, ref: Any, extra: list[str]) -> tuple[Any, list[str]]:
    """What worker processes load: the scenario file (or the caller's dict) and every override on top of it,
    those a LoadedScenario already carries first."""
    if Path(base.source).is_file():
        return base.source, list(base.overrides) + list(extra)
    raw = ref.raw if isinstance(ref, LoadedScenario) else ref
    return raw, list(extra)


def smoke_overrides(loaded: LoadedScenario, smoke: bool) -> list[str]:
    """The scenario's reduced-size overrides (`run.smoke`) as `--set` strings, when `smoke` is asked."""
    if not smoke:
        return []
    from defistress.sim.experiments.sweep_tasks import point_overrides

    return point_overrides(dict(loaded.scenario.run.smoke))


def score_table(
    loaded: LoadedScenario, design: Design, runs: pd.DataFrame, quantiles: tuple[float, float] = QUANTILES
) -> pd.DataFrame:
    """One row per figure: the published figures first, then every vocabulary figure of each protocol and of
    the run. Columns: key, metric, protocol, asset, unit, band (low, median, high, n), published value and
    range, inside, seed share of the variance and the first-order index of each input (`S1:<name>`)."""
    s = loaded.scenario
    sample_of = _sample_index(design, runs)
    published = {p.key: p for p in s.run.published}
    keys = list(published)
    for pid in [p.id for p in s.protocols]:
        for m, d in METRICS.items():
            if "protocol" in d.scopes and scorecard_key(m, pid) not in keys:
                keys.append(scorecard_key(m, pid))
    for m, d in METRICS.items():
        if "total" in d.scopes and scorecard_key(m) not in keys:
            keys.append(scorecard_key(m))
    names = [u.name for u in design.inputs]
    coords = design.coordinates() if design.inputs else np.zeros((design.samples, 0))
    rows = []
    for key in keys:
        col = f"sc:{key}"
        vals = runs[col] if col in runs else pd.Series([np.nan] * len(runs))
        y = pd.to_numeric(vals, errors="coerce").to_numpy(dtype=float)
        if key not in published and not np.isfinite(y).any():
            continue  # a figure this run's protocols do not have
        b = band(y, *quantiles)
        metric, protocol, asset = _split(key)
        row: dict[str, Any] = {
            "key": key,
            "metric": metric,
            "protocol": protocol,
            "asset": asset,
            "unit": METRICS[metric].unit,
            **{f"band_{k}": v for k, v in b.as_dict().items() if k in ("low", "median", "high", "n", "missing")},
        }
        p = published.get(key)
        if p is not None:
            row.update(
                {
                    "published": p.value,
                    "published_low": p.range[0],
                    "published_high": p.range[1],
                    "inside": inside(b, p.range),
                    "source": p.source,
                    "note": p.note,
                }
            )
        row["seed_share"] = seed_share(sample_of, y)
        if names:
            ymean = pd.Series(y).groupby(sample_of).mean().reindex(range(design.samples)).to_numpy()
            s1 = sensitivity(coords, ymean, names, seed=design.seed, with_conf=True)
            row.update({f"S1:{n}": s1[n] for n in names})
            row.update({f"S1conf:{n}": s1[f"{n}:conf"] for n in names})
        rows.append(row)
    table = pd.DataFrame(rows)
    for c in ("published", "published_low", "published_high", "inside", "source", "note"):
        if c not in table:
            table[c] = None
    return table


def _split(key: str) -> tuple[str, str | None, str | None]:
    metric, _, asset = key.partition(":")
    metric, _, protocol = metric.partition("@")
    return metric, protocol or None, asset or None


def design_runs(design: Design, parquet: Path, seeds: list[int]) -> pd.DataFrame:
    """The finished runs of this design at these seeds, from the sweep's results.parquet: rows of failed runs,
    of other seeds and of another design run earlier in the same folder (e.g. another --samples) are left out."""
    if not parquet.exists():
        return pd.DataFrame()
    runs = pd.read_parquet(parquet)
    keep = runs["seed"].isin([int(s) for s in seeds])
    if "status" in runs:
        keep &= runs["status"] == "ok"
    if design.inputs:
        keys = sorted(design.point(0))
        ids = {_point_id(design.point(i), keys) for i in range(design.samples)}
        mine = [_point_id({k: row[f"param:{k}"] for k in keys}, keys) in ids for _, row in runs.iterrows()]
        keep &= pd.Series(mine, index=runs.index, dtype=bool)
    return runs[keep].reset_index(drop=True)


def _sample_index(design: Design, runs: pd.DataFrame) -> np.ndarray:
    """The design sample of each run row (rows carry their point as `param:<key>` columns)."""
    if not design.inputs:
        return np.zeros(len(runs), dtype=int)
    keys = sorted(design.point(0))
    index: dict[str, int] = {}
    for i in range(design.samples):
        index.setdefault(_point_id(design.point(i), keys), i)
    out = np.empty(len(runs), dtype=int)
    for r, (_, row) in enumerate(runs.iterrows()):
        pid = _point_id({k: row[f"param:{k}"] for k in keys}, keys)
        if pid not in index:
            raise KeyError(f"run {row.get('run_key')} is not a point of this design (seed {design.seed})")
        out[r] = index[pid]
    return out


def _point_id(point: dict, keys: list[str]) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, float, np.integer, np.floating)):
            return round(float(v), 9)
        return str(v)

    return json.dumps([norm(point[k]) for k in keys])


def write_outputs(result: ReplayResult, report: bool = True) -> None:
    """scorecard.csv, scorecard.json, replay.json and (with `report`) index.html with its figures."""
    out = result.out
    table = result.table
    write_file_atomically(out / "scorecard.csv", table.to_csv(index=False))
    records = json.loads(table.to_json(orient="records"))
    write_file_atomically(out / "scorecard.json", json.dumps({"scenario": result.scenario, "rows": records}, indent=2))
    write_file_atomically(out / "replay.json", json.dumps(result.manifest, indent=2, default=str))
    if report:
        from defistress.sim.report.replay_report import write_replay_report

        write_replay_report(result.scenario, table, result.manifest, out)


def replay_all(
    out: Path,
    seeds: list[int],
    samples: int,
    names: list[str] | None = None,
    workers: int = 1,
    backend: str = "process",
    smoke: bool = False,
    design_seed: int = 0,
    quantiles: tuple[float, float] = QUANTILES,
    report: bool = True,
    on_scenario: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Replay every built-in scenario with published figures (or `names`); one table of event, figure,
    published, band and inside, written to `out/all.csv`."""
    rows = []
    for name in names or replay_builtins():
        if on_scenario:
            on_scenario(name)
        res = replay(
            name, Path(out) / name, seeds, samples, None, workers, backend, design_seed, quantiles, smoke, report
        )
        pub = res.published_rows()
        for _, r in pub.iterrows():
            rows.append(
                {
                    "event": name,
                    "figure": r["key"],
                    "unit": r["unit"],
                    "published": r["published"],
                    "published_low": r["published_low"],
                    "published_high": r["published_high"],
                    "band_low": r["band_low"],
                    "band_median": r["band_median"],
                    "band_high": r["band_high"],
                    "inside": r["inside"],
                }
            )
    table = pd.DataFrame(rows)
    Path(out).mkdir(parents=True, exist_ok=True)
    write_file_atomically(Path(out) / "all.csv", table.to_csv(index=False))
    return table


def replay_builtins() -> list[str]:
    """Built-in scenarios that are replays of historic events: they publish figures or declare inputs."""
    from defistress.scenarios.registry import builtin_names

    out = []
    for name in builtin_names():
        try:
            s = load(name).scenario
        except ScenarioError:
            continue
        if s.run.published or s.uncertain:
            out.append(name)
    return out
