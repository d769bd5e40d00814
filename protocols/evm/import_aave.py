"""`defistress import aave-v3`: a lending book at a block, from any RPC: the reserves' configuration (decoded from
the configuration bitmap), the e-mode categories, the users found in the Pool's Supply and Borrow events up to the
block, and each user's positions (aToken and debt-token balances, collateral flags, e-mode) and account data, read
with batched calls at that block. Written as a snapshot (protocols/evm/snapshot.py).

Large books take long: the work is kept in `<out>.partial/` (the users found so far, then the positions in parts)
and a rerun with the same RPC chain, pool and block resumes where it stopped. Every RPC request is retried with
exponential backoff; a log range the RPC refuses is halved.

Users are the `onBehalfOf` of Supply and Borrow events: an account that only received aTokens by transfer is not
found (a limitation of this discovery; scan the aTokens' Transfer events to add them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from eth_utils import keccak
from web3 import Web3

from defistress.protocols.evm import aave_math as am
from defistress.protocols.evm.import_common import (
    ERC20_BALANCE,
    Block,
    ChainImportError,
    Fn,
    Progress,
    batch,
    call,
    checksum,
    connect,
    now_utc,
    redact,
    require_contract,
    resolve_block,
    token_meta,
    tool_version,
)
from defistress.protocols.evm.rpc import Rpc, RpcError
from defistress.protocols.evm.snapshot import write_snapshot

RESERVES_LIST = Fn("getReservesList()", ("address[]",))
PROVIDER = Fn("ADDRESSES_PROVIDER()", ("address",))
PRICE_ORACLE = Fn("getPriceOracle()", ("address",))
ASSET_PRICE = Fn("getAssetPrice(address)", ("uint256",))
RESERVE_DATA = Fn(
    "getReserveData(address)",
    (
        "(uint256)",
        "uint128",
        "uint128",
        "uint128",
        "uint128",
        "uint128",
        "uint40",
        "uint16",
        "address",
        "address",
        "address",
        "address",
        "uint128",
        "uint128",
        "uint128",
    ),
)
EMODE_DATA = Fn("getEModeCategoryData(uint8)", ("(uint16,uint16,uint16,address,string)",))
USER_CONFIG = Fn("getUserConfiguration(address)", ("(uint256)",))
USER_EMODE = Fn("getUserEMode(address)", ("uint256",))
ACCOUNT_DATA = Fn("getUserAccountData(address)", ("uint256",) * 6)
SUPPLY_TOPIC = "0x" + keccak(text="Supply(address,address,address,uint256,uint16)").hex()
BORROW_TOPIC = "0x" + keccak(text="Borrow(address,address,address,uint256,uint8,uint256,uint16)").hex()
RANGE_WORDS = ("range", "limit", "too many", "exceed", "10000", "response size", "block range", "query returned")
USERS_PER_PART = 500


def _reserves(rpc: Rpc, pool: str, b: Block) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """Reserve parameters (bps, whole-token caps, 2-decimal debt ceiling), e-mode categories, contract addresses."""
    try:
        assets = call(rpc, RESERVES_LIST, pool, b)
    except RpcError as exc:
        raise ChainImportError(
            f"--pool {pool}: does not answer getReservesList(): not an Aave v3 Pool ({exc})"
        ) from None
    provider = call(rpc, PROVIDER, pool, b)
    oracle = call(rpc, PRICE_ORACLE, provider, b)
    data = batch(rpc, [(RESERVE_DATA, pool, (a,)) for a in assets], b)
    prices = batch(rpc, [(ASSET_PRICE, oracle, (a,)) for a in assets], b)
    meta = token_meta(rpc, list(assets), b)
    reserves: list[dict[str, Any]] = []
    for a, d, p, (sym, dec) in zip(assets, data, prices, meta):
        if isinstance(d, Exception) or isinstance(p, Exception):
            raise ChainImportError(f"reserve {a}: getReserveData / getAssetPrice failed at block {b.number}: {d or p}")
        conf = am.decode_reserve_configuration(int(d[0][0]))
        reserves.append(
            {
                "symbol": sym,
                "address": Web3.to_checksum_address(a),
                "decimals": dec,
                "id": int(d[7]),
                "ltv": conf["ltv"],
                "liquidation_threshold": conf["liquidation_threshold"],
                "liquidation_bonus": conf["liquidation_bonus"],
                "protocol_fee": conf["liquidation_protocol_fee"],
                "reserve_factor": conf["reserve_factor"],
                "supply_cap": conf["supply_cap"],
                "borrow_cap": conf["borrow_cap"],
                "debt_ceiling": conf["debt_ceiling"],
                "borrowable_in_isolation": bool(conf["borrowable_in_isolation"]),
                "borrowing_enabled": bool(conf["borrowing_enabled"]),
                "active": bool(conf["active"]),
                "frozen": bool(conf["frozen"]),
                "paused": bool(conf["paused"]),
                "emode_category": conf["emode_category"],
                "price_base": int(p),
                "liquidity_index": str(d[1]),
                "variable_borrow_index": str(d[3]),
                "isolation_mode_total_debt": int(d[14]),
                "a_token": Web3.to_checksum_address(d[8]),
                "stable_debt_token": Web3.to_checksum_address(d[9]),
                "variable_debt_token": Web3.to_checksum_address(d[10]),
            }
        )
    symbols = [r["symbol"] for r in reserves]
    for r in reserves:  # two reserves with one symbol: tell them apart by address
        if symbols.count(r["symbol"]) > 1:
            r["symbol"] = f"{r['symbol']}-{r['address'][2:8]}"
    emodes = []
    for c in sorted({r["emode_category"] for r in reserves} - {0}):
        ltv, lt, bonus, source, label = call(rpc, EMODE_DATA, pool, b, c)
        src = Web3.to_checksum_address(source)
        price = call(rpc, ASSET_PRICE, oracle, b, src) if int(source, 16) else 0
        emodes.append(
            {
                "id": c,
                "ltv": ltv,
                "liquidation_threshold": lt,
                "liquidation_bonus": bonus,
                "label": label,
                "price_source": src,
                "price_base": int(price),
            }
        )
    return reserves, emodes, {"pool": pool, "addresses_provider": provider, "oracle": oracle}


def _scan_users(
    rpc: Rpc, pool: str, start: int, end: int, work: Path, state: dict, chunk: int, progress: Progress | None
) -> None:
    """Append the onBehalfOf of every Supply and Borrow event in [start, end] to work/users.txt, resumably."""
    users = work / "users.txt"
    at = state.get("scanned_to", start - 1) + 1
    size = chunk
    while at <= end:
        hi = min(at + size - 1, end)
        try:
            logs = rpc.call(
                "eth_getLogs",
                [{"address": pool, "fromBlock": hex(at), "toBlock": hex(hi), "topics": [[SUPPLY_TOPIC, BORROW_TOPIC]]}],
            )
        except RpcError as exc:
            if size > 1 and any(w in exc.message.lower() for w in RANGE_WORDS):
                size = max(size // 2, 1)
                continue
            raise ChainImportError(f"eth_getLogs over blocks {at}..{hi} failed: {exc}") from None
        found = {Web3.to_checksum_address("0x" + log["topics"][2][-40:]) for log in logs if len(log["topics"]) > 2}
        with users.open("a") as f:
            f.writelines(f"{u}\n" for u in sorted(found))
        state["scanned_to"] = hi
        _save(work, state)
        if progress is not None:
            progress("events", hi - start + 1, end - start + 1)
        at = hi + 1
        size = min(size * 2, chunk * 8) if len(logs) < 5_000 else size


def _positions(rpc: Rpc, pool: str, users: list[str], reserves: list[dict], b: Block) -> pd.DataFrame:
    """One row per (user, reserve) with a balance, a debt or a flag, plus the user's account data."""
    n_r = len(reserves)
    items: list = []
    for u in users:
        items += [(USER_CONFIG, pool, (u,)), (USER_EMODE, pool, (u,)), (ACCOUNT_DATA, pool, (u,))]
        items += [(ERC20_BALANCE, r["a_token"], (u,)) for r in reserves]
        items += [(ERC20_BALANCE, r["variable_debt_token"], (u,)) for r in reserves]
        items += [(ERC20_BALANCE, r["stable_debt_token"], (u,)) for r in reserves]
    vals = batch(rpc, items, b)
    bad = next((v for v in vals if isinstance(v, Exception)), None)
    if bad is not None:
        raise ChainImportError(f"reading positions at block {b.number} failed: {bad}")
    per = 3 + 3 * n_r
    rows = []
    for k, u in enumerate(users):
        v = vals[k * per : (k + 1) * per]
        bits, emode, acct = int(v[0][0]), int(v[1]), v[2]
        hf = np.inf if acct[5] == am.UINT256_MAX else acct[5] / 1e18
        for j, r in enumerate(reserves):
            coll, vdebt, sdebt = int(v[3 + j]), int(v[3 + n_r + j]), int(v[3 + 2 * n_r + j])
            _, on = am.user_configuration_flags(bits, r["id"])
            if coll == 0 and vdebt + sdebt == 0:
                continue
            unit = 10 ** r["decimals"]
            rows.append(
                {
                    "account": u,
                    "asset": r["symbol"],
                    "asset_address": r["address"],
                    "collateral": coll / unit,
                    "collateral_raw": str(coll),
                    "debt": (vdebt + sdebt) / unit,
                    "debt_raw": str(vdebt + sdebt),
                    "used_as_collateral": bool(on and coll > 0),
                    "emode": emode,
                    "total_collateral_base": str(acct[0]),
                    "total_debt_base": str(acct[1]),
                    "health_factor": hf,
                }
            )
    return pd.DataFrame(rows)


def _save(work: Path, state: dict) -> None:
    tmp = work / "state.json.tmp"
    tmp.write_text(json.dumps(state, sort_keys=True))
    tmp.replace(work / "state.json")


def import_aave_v3(
    rpc_url: str,
    pool: str,
    out: str | Path,
    block: int | None = None,
    from_block: int = 0,
    chunk_blocks: int = 5_000,
    progress: Progress | None = None,
    retries: int = 5,
) -> dict[str, Any]:
    """Import the book of the Aave v3 `pool` at `block` (default: the head) into the snapshot `out`; returns the
    manifest (with the file's SHA-256)."""
    out = Path(out)
    if out.suffix != ".parquet":
        raise ChainImportError(f"--out {out}: the snapshot is a .parquet file")
    pool = checksum(pool, "--pool")
    rpc, chain_id = connect(rpc_url, retries)
    b = resolve_block(rpc, chain_id, block)
    if not 0 <= from_block <= b.number:
        raise ChainImportError(f"--from-block {from_block}: must be within 0..{b.number} (the block read)")
    require_contract(rpc, pool, b, chain_id, "--pool", "an Aave v3 Pool")
    reserves, emodes, contracts = _reserves(rpc, pool, b)
    work = out.with_name(out.name + ".partial")
    key = {
        "kind": "aave-v3",
        "chain_id": chain_id,
        "pool": pool,
        "block_number": b.number,
        "block_hash": b.hash,
        "from_block": from_block,
    }
    if work.exists():
        state = json.loads((work / "state.json").read_text()) if (work / "state.json").exists() else {}
        held = {k: state.get(k) for k in key}
        if held != key:
            raise ChainImportError(
                f"{work} holds an unfinished import of another pool, block or chain ({held}); "
                "delete it, or write to another --out"
            )
    else:
        work.mkdir(parents=True)
        state = dict(key)
        _save(work, state)
    _scan_users(rpc, pool, from_block, b.number, work, state, chunk_blocks, progress)
    users_file = work / "users.txt"
    users = sorted(set(users_file.read_text().split())) if users_file.exists() else []
    done = state.get("parts", 0)
    for part in range(done, (len(users) + USERS_PER_PART - 1) // USERS_PER_PART):
        chunk = users[part * USERS_PER_PART : (part + 1) * USERS_PER_PART]
        _positions(rpc, pool, chunk, reserves, b).to_parquet(work / f"positions-{part:05d}.parquet", index=False)
        state["parts"] = part + 1
        _save(work, state)
        if progress is not None:
            progress("positions", min((part + 1) * USERS_PER_PART, len(users)), len(users))
    parts = sorted(work.glob("positions-*.parquet"))
    frames = [pd.read_parquet(p) for p in parts]
    frame = pd.concat(frames, ignore_index=True) if frames else _positions(rpc, pool, [], reserves, b)
    if frame.empty:
        frame = pd.DataFrame(
            columns=[
                "account",
                "asset",
                "asset_address",
                "collateral",
                "collateral_raw",
                "debt",
                "debt_raw",
                "used_as_collateral",
                "emode",
                "total_collateral_base",
                "total_debt_base",
                "health_factor",
            ]
        )
    manifest = {
        "kind": "aave-v3",
        "chain_id": chain_id,
        "block_number": b.number,
        "block_hash": b.hash,
        "block_timestamp": b.timestamp,
        "contracts": contracts,
        "reserves": reserves,
        "emodes": emodes,
        "users_from": {
            "events": ["Supply", "Borrow"],
            "from_block": from_block,
            "to_block": b.number,
            "users": len(users),
        },
        "rpc": redact(rpc_url),
        "imported_at": now_utc(),
        "tool": tool_version(),
    }
    digest = write_snapshot(frame, manifest, out)
    shutil.rmtree(work, ignore_errors=True)
    return {**manifest, "sha256": digest, "rows": int(len(frame)), "accounts": int(frame["account"].nunique())}
