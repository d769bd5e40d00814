"""`defistress import chainlink`: every round a Chainlink feed (a proxy, or any AggregatorV3Interface) answered in a
time window, written in the format of the bundled Chainlink-round files (scenarios/historic/data/05c_*, 09c_*):
comment lines, then updated_at_utc, feed, round_id, answer_raw, decimals, source_repo (here: where the rounds were
read), followed by started_at_utc and answered_in_round. Parquet output has the same columns and the manifest.

Rounds are found without scanning: a proxy's round id is phaseId << 64 | n, and within a phase updatedAt grows with
n, so the window's first and last rounds are found by bisection, then read in batches. Earlier phases are reached
through the proxy's phaseAggregators(phase).latestRound() when the window starts before the current phase.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from defistress.protocols.evm.import_common import (
    Block,
    ChainImportError,
    Fn,
    Progress,
    batch,
    call,
    checksum,
    connect,
    iso,
    now_utc,
    redact,
    require_contract,
    resolve_block,
    tool_version,
)
from defistress.protocols.evm.rpc import Rpc, RpcError

DECIMALS = Fn("decimals()", ("uint8",))
DESCRIPTION = Fn("description()", ("string",))
LATEST = Fn("latestRoundData()", ("uint80", "int256", "uint256", "uint256", "uint80"))
ROUND = Fn("getRoundData(uint80)", ("uint80", "int256", "uint256", "uint256", "uint80"))
PHASE_AGGREGATOR = Fn("phaseAggregators(uint16)", ("address",))
LATEST_ROUND = Fn("latestRound()", ("uint256",))
PHASE_SHIFT = 64
COLUMNS = [
    "updated_at_utc",
    "feed",
    "round_id",
    "answer_raw",
    "decimals",
    "source_repo",
    "started_at_utc",
    "answered_in_round",
]


def _round(rpc: Rpc, feed: str, block: Block, rid: int) -> tuple | None:
    try:
        r = call(rpc, ROUND, feed, block, rid)
    except RpcError:
        return None  # "No data present"
    return r if r[3] > 0 else None


def _first_at_or_after(rpc: Rpc, feed: str, block: Block, phase: int, lo: int, hi: int, t: int) -> int:
    """Smallest n in [lo, hi + 1] whose round's updatedAt >= t (hi + 1: none)."""
    while lo <= hi:
        mid = (lo + hi) // 2
        r = _round(rpc, feed, block, (phase << PHASE_SHIFT) | mid)
        if r is not None and r[3] >= t:
            hi = mid - 1
        else:
            lo = mid + 1
    return lo


def _phase_last(rpc: Rpc, feed: str, block: Block, phase: int) -> int | None:
    """The last round number of an earlier phase, through the proxy's phase aggregator (None: not a proxy)."""
    try:
        agg = call(rpc, PHASE_AGGREGATOR, feed, block, phase)
        return int(call(rpc, LATEST_ROUND, agg, block)) if int(agg, 16) else None
    except RpcError:
        return None


def import_chainlink(
    rpc_url: str,
    feed: str,
    t_from: int,
    t_to: int,
    out: str | Path,
    block: int | None = None,
    progress: Progress | None = None,
    retries: int = 5,
) -> dict[str, Any]:
    """Read every round of `feed` with updatedAt in [t_from, t_to] (unix seconds) at `block` and write them to `out`
    (.csv or .parquet); returns the manifest."""
    if t_to < t_from:
        raise ChainImportError(f"--to ({iso(t_to)}) is before --from ({iso(t_from)})")
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ChainImportError(f"--out {out}: give a .csv or .parquet file")
    feed = checksum(feed, "--feed")
    rpc, chain_id = connect(rpc_url, retries)
    b = resolve_block(rpc, chain_id, block)
    require_contract(rpc, feed, b, chain_id, "--feed", "a Chainlink feed")
    try:
        decimals = int(call(rpc, DECIMALS, feed, b))
        latest = call(rpc, LATEST, feed, b)
    except RpcError as exc:
        raise ChainImportError(f"--feed {feed}: does not answer decimals() / latestRoundData(): {exc}") from None
    try:
        description = str(call(rpc, DESCRIPTION, feed, b))
    except RpcError:
        description = feed
    phase, n_last = int(latest[0]) >> PHASE_SHIFT, int(latest[0]) & ((1 << PHASE_SHIFT) - 1)
    rows: list[tuple] = []
    notes: list[str] = []
    while phase >= 0 and n_last >= 1:
        lo = _first_at_or_after(rpc, feed, b, phase, 1, n_last, t_from)
        hi = _first_at_or_after(rpc, feed, b, phase, lo, n_last, t_to + 1) - 1
        ids = [(phase << PHASE_SHIFT) | n for n in range(lo, hi + 1)]
        for k in range(0, len(ids), 200):
            got = batch(rpc, [(ROUND, feed, (rid,)) for rid in ids[k : k + 200]], b)
            rows += [tuple(int(x) for x in r) for r in got if not isinstance(r, Exception) and r[3] > 0]
            if progress is not None:
                progress("rounds", min(k + 200, len(ids)), len(ids))
        if lo > 1 or phase <= 1:
            break
        first = _round(rpc, feed, b, (phase << PHASE_SHIFT) | 1)
        if first is None or first[3] < t_from:
            break
        phase -= 1
        last = _phase_last(rpc, feed, b, phase)
        if last is None:
            notes.append(f"the window starts before phase {phase + 1}; earlier phases are not readable here")
            break
        n_last = last
    rows.sort(key=lambda r: (r[3], r[0]))
    source = f"chain {chain_id} feed {feed} at block {b.number}"
    frame = pd.DataFrame(
        {
            "updated_at_utc": [iso(r[3]) for r in rows],
            "feed": description,
            "round_id": [str(r[0]) for r in rows],
            "answer_raw": [str(r[1]) for r in rows],
            "decimals": decimals,
            "source_repo": source,
            "started_at_utc": [iso(r[2]) for r in rows],
            "answered_in_round": [str(r[4]) for r in rows],
        },
        columns=COLUMNS,
    )
    manifest = {
        "kind": "chainlink",
        "chain_id": chain_id,
        "block_number": b.number,
        "block_hash": b.hash,
        "contracts": {"feed": feed},
        "description": description,
        "decimals": decimals,
        "window_utc": [iso(t_from), iso(t_to)],
        "rounds": len(rows),
        "rpc": redact(rpc_url),
        "imported_at": now_utc(),
        "tool": tool_version(),
        "notes": notes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".csv":
        header = [
            f"# event: Chainlink {description} rounds imported with `defistress import chainlink` ({tool_version()})",
            f"# window (UTC): {iso(t_from)} .. {iso(t_to)}; granularity: every on-chain oracle round",
            f"# source {description}: {source} via {redact(rpc_url)} ; rounds={len(rows)} ; imported {now_utc()}",
            f"# note: price = answer_raw / 10**{decimals}; updated_at = the round's updatedAt",
        ] + [f"# note: {n}" for n in notes]
        tmp.write_text("\n".join(header) + "\n" + frame.to_csv(index=False))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"defistress.rounds"] = json.dumps(manifest, sort_keys=True).encode()
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(out)
    return manifest
