"""Gather a sweep's results.jsonl into results.parquet and risk.csv without holding every row in memory.

results.parquet is one Parquet file sorted by grid point then seed, with one row group per grid point (split
every ROW_GROUP_ROWS rows), so a reader can scan it lazily: `pyarrow.parquet.ParquetFile(...).iter_batches()`,
or `pyarrow.dataset.dataset(...)` / `pq.read_table(..., filters=[("param:x", "==", v)])`, which skip the row
groups of other grid points by their statistics. A run key that appears twice (a failed run retried with
--retry-failed) keeps its last row. risk.csv has one row per grid point: the risk measures over its finished
runs and the number of failed ones.

Memory: the first pass keeps (grid point, seed, file offset) per row, a few dozen bytes; the second pass
reads rows back one grid point at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from defistress.sim.analysis.risk import risk_table
from defistress.sim.experiments.sweep_folder import RESULTS

PARQUET = "results.parquet"
RISK = "risk.csv"
#: rows per Parquet row group at most (a grid point with more seeds spans several groups)
ROW_GROUP_ROWS = 10_000
#: columns that lead every row, in this order
LEADING = ("status", "seed", "run_key")


@dataclass(frozen=True)
class Gathered:
    rows: int
    failed: int
    points: int


def sort_value(v: Any) -> tuple:
    """Order grid values: numbers by value, then strings, then missing."""
    if isinstance(v, (bool, int, float)):
        return (0, float(v), "")
    if v is None:
        return (2, 0.0, "")
    return (1, 0.0, str(v))


def _arrow_type(kinds: set[type]) -> pa.DataType:
    kinds = kinds - {type(None)}
    if not kinds:
        return pa.float64()
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _coerce(v: Any, t: pa.DataType) -> Any:
    if v is None:
        return None
    if pa.types.is_string(t) and not isinstance(v, str):
        return json.dumps(v)
    if pa.types.is_floating(t) and isinstance(v, bool):
        return float(v)
    return v


def finalize(out: Path, grid_keys: list[str]) -> Gathered:
    """Write results.parquet and risk.csv from results.jsonl (atomically: temporary files, then rename)."""
    out = Path(out)
    src = out / RESULTS
    params = [f"param:{k}" for k in grid_keys]
    entries: dict[str, tuple[tuple, int, int, int]] = {}  # run_key -> (sort key, offset, length, signature)
    signatures: dict[tuple[str, ...], int] = {}
    kinds: dict[str, set[type]] = {}
    offset = 0
    with src.open("rb") as f:
        for line in f:
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or "run_key" not in row:
                continue
            sig = signatures.setdefault(tuple(row), len(signatures))
            for k, v in row.items():
                kinds.setdefault(k, set()).add(type(v))
            point = tuple(sort_value(row.get(p)) for p in params)
            entries[row["run_key"]] = ((point, sort_value(row.get("seed"))), start, len(line), sig)
    if not entries:
        return Gathered(0, 0, 0)
    order = sorted(entries.values(), key=lambda e: e[0])
    schema = _schema(order, signatures, kinds, params)
    parquet_tmp, risk_tmp = out / f".{PARQUET}.tmp", out / f".{RISK}.tmp"
    try:
        n_points = _write_parquet(src, order, schema, parquet_tmp)
        risk = _risk(parquet_tmp, params)
        risk.to_csv(risk_tmp, index=False)
        os.replace(parquet_tmp, out / PARQUET)
        os.replace(risk_tmp, out / RISK)
    finally:
        parquet_tmp.unlink(missing_ok=True)
        risk_tmp.unlink(missing_ok=True)
    failed = int(risk["failed"].sum()) if "failed" in risk else 0
    return Gathered(len(order), failed, n_points)


def _schema(order: list, signatures: dict, kinds: dict[str, set[type]], params: list[str]) -> pa.Schema:
    """Columns: the grid parameters, status, seed, run key, then the others as they first appear in order."""
    by_id = {i: sig for sig, i in signatures.items()}
    names: dict[str, None] = dict.fromkeys([p for p in params if p in kinds] + [c for c in LEADING if c in kinds])
    for sig in dict.fromkeys(e[3] for e in order):
        names.update(dict.fromkeys(by_id[sig]))
    return pa.schema([(n, _arrow_type(kinds[n])) for n in names])


def _write_parquet(src: Path, order: list, schema: pa.Schema, dest: Path) -> int:
    """Rows in sorted order, one row group per grid point (split at ROW_GROUP_ROWS); returns the points."""
    types = {f.name: f.type for f in schema}
    points = 0
    with src.open("rb") as f, pq.ParquetWriter(dest, schema) as writer:
        i = 0
        while i < len(order):
            point, j = order[i][0][0], i
            while j < len(order) and order[j][0][0] == point and j - i < ROW_GROUP_ROWS:
                j += 1
            rows = []
            for _, start, length, _ in order[i:j]:
                f.seek(start)
                row = json.loads(f.read(length))
                rows.append({k: _coerce(row.get(k), t) for k, t in types.items()})
            writer.write_table(pa.Table.from_pylist(rows, schema=schema), row_group_size=ROW_GROUP_ROWS)
            points += i == 0 or order[i - 1][0][0] != point
            i = j
    return points


def _risk(parquet: Path, params: list[str]) -> pd.DataFrame:
    """Risk measures per grid point over its finished runs, with the count of failed runs."""
    want = [c for c in [*params, "status", "bad_debt_usd", "liquidation_volume_usd"]]
    have = set(pq.read_schema(parquet).names)
    df = pq.read_table(parquet, columns=[c for c in want if c in have]).to_pandas()
    group = [p for p in params if p in df]
    failed_mask = df["status"] == "failed"
    counts = (
        df.assign(failed=failed_mask.astype(int)).groupby(group, dropna=False, sort=True)["failed"].sum().reset_index()
        if group
        else pd.DataFrame({"failed": [int(failed_mask.sum())]})
    )
    ok = df[~failed_mask]
    if ok.empty:
        table = counts.assign(runs=0)
    else:
        table = risk_table(ok, group)
        table = counts.merge(table, on=group, how="left") if group else pd.concat([counts, table], axis=1)
        table["runs"] = table["runs"].fillna(0).astype(int)
    first = [*group, "runs", "failed"]
    return table[first + [c for c in table.columns if c not in first]]
