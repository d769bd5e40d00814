"""`defistress import uniswap-v2`: a pair's tokens and reserves at a block, for a venue of a scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from defistress.protocols.evm.import_common import (
    ChainImportError,
    Fn,
    call,
    checksum,
    connect,
    iso,
    now_utc,
    redact,
    require_contract,
    resolve_block,
    token_meta,
    tool_version,
)
from defistress.protocols.evm.rpc import RpcError

TOKEN0 = Fn("token0()", ("address",))
TOKEN1 = Fn("token1()", ("address",))
RESERVES = Fn("getReserves()", ("uint112", "uint112", "uint32"))


def import_uniswap_v2(
    rpc_url: str, pair: str, block: int | None = None, out: str | Path | None = None, retries: int = 5
) -> dict[str, Any]:
    """Reserves of a Uniswap v2 pair (or any fork with its interface) at `block`; written as JSON to `out`."""
    pair = checksum(pair, "--pair")
    rpc, chain_id = connect(rpc_url, retries)
    b = resolve_block(rpc, chain_id, block)
    require_contract(rpc, pair, b, chain_id, "--pair", "a Uniswap v2 pair")
    try:
        t0, t1 = call(rpc, TOKEN0, pair, b), call(rpc, TOKEN1, pair, b)
        r0, r1, ts = call(rpc, RESERVES, pair, b)
    except RpcError as exc:
        raise ChainImportError(
            f"--pair {pair}: does not answer token0() / getReserves(): not a v2 pair ({exc})"
        ) from None
    (s0, d0), (s1, d1) = token_meta(rpc, [t0, t1], b)
    x0, x1 = int(r0) / 10**d0, int(r1) / 10**d1
    out_data = {
        "kind": "uniswap-v2",
        "chain_id": chain_id,
        "block_number": b.number,
        "block_hash": b.hash,
        "block_time_utc": iso(b.timestamp),
        "contracts": {"pair": pair},
        "token0": {"address": t0, "symbol": s0, "decimals": d0, "reserve_raw": str(r0), "reserve": x0},
        "token1": {"address": t1, "symbol": s1, "decimals": d1, "reserve_raw": str(r1), "reserve": x1},
        "price_token0_in_token1": x1 / x0 if x0 else None,
        "reserves_updated_utc": iso(ts),
        "rpc": redact(rpc_url),
        "imported_at": now_utc(),
        "tool": tool_version(),
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(out_data, indent=2) + "\n")
    return out_data
