"""The snapshot format of an imported lending book: one Parquet file, one row per account and asset, with its
manifest (chain, block, contracts, reserve parameters, e-mode categories, import time, tool version) stored in the
file's metadata and beside it as `<name>.manifest.json`. Reading it needs pandas and pyarrow only (no web3).

Columns (amounts in token units as float64, and exactly as decimal strings of the token's base units):
  account (checksummed address), asset (reserve symbol), asset_address, collateral, collateral_raw, debt, debt_raw,
  used_as_collateral (bool), emode (the account's e-mode category, int), and the chain's own getUserAccountData of
  the account, repeated on each of its rows: total_collateral_base, total_debt_base (USD, 8 decimals, as strings)
  and health_factor (float; inf without debt).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = "defistress.aave-v3-book/1"
METADATA_KEY = b"defistress.snapshot"
COLUMNS = {
    "account": "str",
    "asset": "str",
    "asset_address": "str",
    "collateral": "float64",
    "collateral_raw": "str",
    "debt": "float64",
    "debt_raw": "str",
    "used_as_collateral": "bool",
    "emode": "int64",
    "total_collateral_base": "str",
    "total_debt_base": "str",
    "health_factor": "float64",
}
RESERVE_KEYS = (
    "symbol",
    "address",
    "decimals",
    "ltv",
    "liquidation_threshold",
    "liquidation_bonus",
    "protocol_fee",
    "reserve_factor",
    "supply_cap",
    "borrow_cap",
    "debt_ceiling",
    "borrowable_in_isolation",
    "borrowing_enabled",
    "emode_category",
    "price_base",
)


class SnapshotError(ValueError):
    """A snapshot file that cannot be used: names the file and what is wrong with it."""


@dataclass(frozen=True)
class Snapshot:
    """A book read from disk: its rows, its manifest and the SHA-256 of the file."""

    frame: pd.DataFrame
    manifest: dict[str, Any]
    sha256: str
    path: Path

    @property
    def reserves(self) -> dict[str, dict[str, Any]]:
        """Reserve parameters by symbol as the manifest holds them (bps, whole tokens, 2-decimal USD ceiling)."""
        return {r["symbol"]: r for r in self.manifest["reserves"]}

    @property
    def emodes(self) -> dict[int, dict[str, Any]]:
        return {int(e["id"]): e for e in self.manifest.get("emodes", [])}

    @property
    def accounts(self) -> list[str]:
        return list(dict.fromkeys(self.frame["account"]))

    def matrices(self, assets: list[str]) -> dict[str, np.ndarray]:
        """Per account (order of `accounts`) and asset (order of `assets`, snapshot symbols): collateral and debt in
        tokens, the used-as-collateral flag, and the account's e-mode category."""
        accounts = self.accounts
        row = {a: i for i, a in enumerate(accounts)}
        col = {s: j for j, s in enumerate(assets)}
        f = self.frame[self.frame["asset"].isin(col)]
        i = f["account"].map(row).to_numpy()
        j = f["asset"].map(col).to_numpy()
        shape = (len(accounts), len(assets))
        coll, debt, on = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
        coll[i, j] = f["collateral"].to_numpy()
        debt[i, j] = f["debt"].to_numpy()
        on[i, j] = f["used_as_collateral"].to_numpy()
        emode = self.frame.groupby("account", sort=False)["emode"].first().reindex(accounts).to_numpy()
        return {"collateral": coll, "debt": debt, "enabled": on, "emode": emode.astype(np.int64)}


def manifest_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".manifest.json")


def write_snapshot(frame: pd.DataFrame, manifest: dict[str, Any], path: str | Path) -> str:
    """Write the book and its manifest (in the Parquet metadata and beside the file); returns the file's SHA-256.
    The file appears whole or not at all (written to a temporary name, then renamed)."""
    path = Path(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SnapshotError(f"{path}: the book lacks columns {missing}")
    frame = frame[list(COLUMNS)].astype({k: v for k, v in COLUMNS.items() if v != "str"})
    manifest = {"format": FORMAT, **manifest, "rows": int(len(frame)), "accounts": int(frame["account"].nunique())}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(manifest, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(path)
    side = {**manifest, "sha256": digest, "file": path.name}
    manifest_path(path).write_text(json.dumps(side, indent=2, sort_keys=True) + "\n")
    return digest


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a book written by `write_snapshot` (or `defistress import aave-v3`); clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"{path}: no such snapshot file")
    data = path.read_bytes()
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SnapshotError(f"{path}: not a Parquet file ({exc})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise SnapshotError(f"{path}: no defistress snapshot manifest in its metadata (format {FORMAT})")
    manifest = json.loads(raw)
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    frame = table.to_pandas()
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SnapshotError(f"{path}: missing columns {missing}")
    for c in ("collateral", "debt"):
        bad = ~np.isfinite(frame[c].to_numpy()) | (frame[c].to_numpy() < 0)
        if bad.any():
            raise SnapshotError(f"{path}: column {c} has {int(bad.sum())} negative or non-finite value(s)")
    unknown = sorted(set(frame["asset"]) - {r["symbol"] for r in manifest.get("reserves", [])})
    if unknown:
        raise SnapshotError(f"{path}: assets {unknown} are not among the manifest's reserves")
    return Snapshot(frame, manifest, hashlib.sha256(data).hexdigest(), path)
