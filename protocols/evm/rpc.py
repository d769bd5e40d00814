"""JSON-RPC to an Ethereum node with the fast paths a simulation needs, on top of web3.py.

- `Rpc`: one keep-alive HTTP(S) connection, JSON-RPC batches, retries with exponential backoff (for remote RPCs
  that rate-limit or hiccup; the local node uses none).
- `Chain`: a web3 handle plus transactions sent as `eth_sendTransactionSync` (Anvil >= 1.x returns the receipt in
  the same call; detected at start, else `eth_sendTransaction` and a 1 ms receipt poll) with an explicit gas limit,
  pre-encoded reads batched in one request, revert reasons, events, and Anvil's cheat codes (snapshots, time, storage).
  web3's own `transact()` + `wait_for_transaction_receipt` polls every 0.1 s: about 10 tx/s instead of ~200.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.grammar import parse as parse_abi_type
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from web3 import Web3
from web3.datastructures import AttributeDict

from defistress.protocols.evm.artifacts import Artifact

ERROR_SELECTOR = "08c379a0"  # Error(string)
PANIC_SELECTOR = "4e487b71"  # Panic(uint256)
#: default gas limit of a transaction: below the EIP-7825 cap (2**24) and Anvil's 30M block gas limit
DEFAULT_TX_GAS = 15_000_000
#: JSON-RPC error codes worth retrying (limit exceeded, internal error, rate limited); HTTP 429 and 5xx too. A node
#: that lacks a block's state answers -32000 "header not found" or similar: not retried, the caller explains it.
RETRYABLE_CODES = {-32005, -32603, 429}
RETRYABLE_WORDS = ("rate limit", "too many requests", "timeout", "timed out", "temporarily", "try again", "busy")


class RpcError(RuntimeError):
    """A JSON-RPC error answer: `code`, `message` and `data` as the node sent them."""

    def __init__(self, method: str, error: dict[str, Any]):
        self.method = method
        self.code = error.get("code")
        self.message = str(error.get("message", ""))
        self.data = error.get("data")
        super().__init__(f"{method}: [{self.code}] {self.message}")

    @property
    def revert_reason(self) -> str | None:
        return decode_revert(self.data) if isinstance(self.data, str) else None

    @property
    def retryable(self) -> bool:
        m = self.message.lower()
        return any(w in m for w in RETRYABLE_WORDS) or (self.code in RETRYABLE_CODES and "revert" not in m)


class RpcTransportError(RuntimeError):
    """The HTTP request failed (connection refused, HTTP status, non-JSON body)."""

    def __init__(self, url: str, detail: str, status: int | None = None):
        self.status = status
        super().__init__(f"RPC {url}: {detail}")

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class TxReverted(RuntimeError):
    """A mined transaction with status 0; `reason` is the revert string (Aave: a numeric code such as '45')."""

    def __init__(self, receipt: dict[str, Any], reason: str | None):
        self.receipt = receipt
        self.reason = reason
        super().__init__(f"tx {receipt.get('transactionHash')} reverted: {reason!r}")


def decode_revert(data: str | bytes | None) -> str | None:
    """Revert data -> the Error(string) text, 'Panic(0x..)', or the raw hex."""
    if data is None:
        return None
    h = data.hex() if isinstance(data, bytes | bytearray) else data
    h = h[2:] if h.startswith("0x") else h
    if h.startswith(ERROR_SELECTOR):
        return str(abi_decode(["string"], bytes.fromhex(h[8:]))[0])
    if h.startswith(PANIC_SELECTOR):
        return f"Panic(0x{int(h[8:], 16):x})"
    return "0x" + h if h else ""


class Rpc:
    """Minimal JSON-RPC client over one keep-alive HTTP(S) connection, with batches and retries.

    `retries` extra attempts on transport errors, HTTP 429/5xx and rate-limit answers, waiting `backoff` seconds
    times 2**attempt (capped at `max_backoff`) between them."""

    def __init__(
        self, url: str, timeout: float = 120.0, retries: int = 0, backoff: float = 0.5, max_backoff: float = 30.0
    ):
        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"RPC URL must be http(s)://host[:port][/path], got {url!r}")
        self.url = url
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.timeout = timeout
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._ids = itertools.count(1)
        self._conn: http.client.HTTPConnection | None = None
        self.sleep = time.sleep  # tests replace it

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _post_once(self, payload: bytes) -> Any:
        for attempt in (0, 1):  # a dropped keep-alive connection is reopened once
            conn = self._connection()
            try:
                conn.request("POST", self.path, payload, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt:
                    raise RpcTransportError(self.url, f"{type(exc).__name__}: {exc}") from None
                continue
            if resp.status != 200:
                raise RpcTransportError(self.url, f"HTTP {resp.status}: {body[:200]!r}", resp.status)
            try:
                return json.loads(body)
            except ValueError:
                raise RpcTransportError(self.url, f"answer is not JSON: {body[:200]!r}") from None
        raise AssertionError("unreachable")

    def _with_retries(self, fn: Any) -> Any:
        for attempt in itertools.count():
            try:
                return fn()
            except (RpcTransportError, RpcError) as exc:
                if attempt >= self.retries or not exc.retryable:
                    raise
                self.sleep(min(self.backoff * 2**attempt, self.max_backoff))
        raise AssertionError("unreachable")

    def call(self, method: str, params: Sequence[Any] | None = None) -> Any:
        def once() -> Any:
            payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params or [])}
            r = self._post_once(json.dumps(payload).encode())
            if "error" in r:
                raise RpcError(method, r["error"])
            return r["result"]

        return self._with_retries(once)

    def batch(self, requests: Sequence[tuple[str, Sequence[Any]]], raise_errors: bool = True) -> list[Any]:
        """Many calls in one HTTP round trip; results in request order. A failed item is an RpcError (raised when
        `raise_errors`). Retryable item errors retry the whole batch."""
        if not requests:
            return []

        def once() -> list[Any]:
            base = next(self._ids)
            for _ in range(len(requests) - 1):
                next(self._ids)
            payload = [
                {"jsonrpc": "2.0", "id": base + i, "method": m, "params": list(p)} for i, (m, p) in enumerate(requests)
            ]
            out = self._post_once(json.dumps(payload).encode())
            if isinstance(out, dict):  # the whole batch was refused
                raise RpcError("batch", out.get("error", {"message": str(out)[:200]}))
            by_id = {r.get("id"): r for r in out}
            results: list[Any] = []
            for i, (m, _) in enumerate(requests):
                r = by_id.get(base + i)
                if r is None:
                    raise RpcTransportError(self.url, f"batch answer lacks item {i} ({m})")
                if "error" in r:
                    e = RpcError(m, r["error"])
                    if e.retryable or raise_errors:
                        raise e
                    results.append(e)
                else:
                    results.append(r["result"])
            return results

        return list(self._with_retries(once))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class PreparedCall:
    """A read whose calldata is encoded once; `decode` turns the eth_call result into Python values
    (one output: the value; several: a tuple)."""

    to: str
    data: str
    output_types: tuple[str, ...]

    def request(self, block: str = "latest") -> tuple[str, list[Any]]:
        return ("eth_call", [{"to": self.to, "data": self.data}, block])

    def decode(self, result_hex: str) -> Any:
        vals = abi_decode(list(self.output_types), bytes.fromhex(result_hex[2:]))
        vals = tuple(_normalize(v, t) for v, t in zip(vals, self.output_types))
        return vals[0] if len(vals) == 1 else vals


@functools.cache
def _parsed(type_str: str) -> Any:
    return parse_abi_type(type_str)


def _normalize(value: Any, type_str: str) -> Any:
    """As web3 returns them: checksummed addresses, lists for arrays."""
    if "address" not in type_str and "[" not in type_str:
        return value
    return _norm(value, _parsed(type_str))


def _norm(value: Any, t: Any) -> Any:
    if t.arrlist:
        return [_norm(v, t.item_type) for v in value]
    if getattr(t, "components", None) is not None:
        return tuple(_norm(v, c) for v, c in zip(value, t.components))
    if getattr(t, "base", None) == "address":
        return Web3.to_checksum_address(value)
    return value


class FnCodec:
    """One ABI function, parsed once: encodes calldata and decodes results with eth_abi directly (about ten times
    cheaper than web3's ContractFunction). `name` is a plain name or a signature for overloads, e.g.
    "mint(address,uint256)"; arguments must be ABI-ready (hex addresses, tuples for structs)."""

    def __init__(self, contract: Any, name: str):
        sig = name.replace(" ", "")
        fns = [
            e
            for e in contract.abi
            if e.get("type") == "function"
            and (e["name"] == name if "(" not in name else f"{e['name']}({','.join(get_abi_input_types(e))})" == sig)
        ]
        if len(fns) != 1:
            raise ValueError(f"{name!r}: {len(fns)} ABI matches (give the full signature for overloads)")
        self.address: str = contract.address
        self.name = name
        self.abi = fns[0]
        self.selector = function_abi_to_4byte_selector(self.abi)
        self.input_types = list(get_abi_input_types(self.abi))
        self.output_types = tuple(get_abi_output_types(self.abi))

    def calldata(self, *args: Any) -> str:
        return "0x" + (self.selector + abi_encode(self.input_types, args)).hex()

    def prepared(self, *args: Any) -> PreparedCall:
        return PreparedCall(self.address, self.calldata(*args), self.output_types)

    def tx(self, sender: str, *args: Any, gas: int | None = None, value: int = 0) -> dict[str, str]:
        t = {"from": sender, "to": self.address, "data": self.calldata(*args), "gas": hex(gas or DEFAULT_TX_GAS)}
        if value:
            t["value"] = hex(value)
        return t


class Chain:
    """A web3 handle and the fast paths; `accounts` are the node's unlocked accounts."""

    def __init__(self, url: str, default_gas: int = DEFAULT_TX_GAS, poll_interval: float = 0.001, retries: int = 0):
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))
        self.rpc = Rpc(url, retries=retries)
        self.default_gas = default_gas
        self.poll_interval = poll_interval  # seconds between receipt polls without eth_sendTransactionSync
        self.accounts: list[str] = [Web3.to_checksum_address(a) for a in self.rpc.call("eth_accounts")]
        self.chain_id = int(self.rpc.call("eth_chainId"), 16)
        self.has_send_sync = self._detect_send_sync()
        self._codecs: dict[tuple[str, str], FnCodec] = {}

    def _detect_send_sync(self) -> bool:
        """eth_sendTransactionSync without params: 'invalid params' means the method exists, -32601 that it does not."""
        try:
            self.rpc.call("eth_sendTransactionSync", [])
        except RpcError as e:
            m = e.message.lower()
            return e.code != -32601 and "not found" not in m and "not supported" not in m
        return True

    # --- transactions -------------------------------------------------------------------------------------
    def _tx(self, sender: str, to: str | None, data: str | None, value: int, gas: int | None) -> dict[str, str]:
        tx = {"from": sender, "gas": hex(gas or self.default_gas)}
        if to is not None:
            tx["to"] = to
        if data is not None:
            tx["data"] = data
        if value:
            tx["value"] = hex(value)
        return tx

    def send(
        self,
        sender: str,
        to: str | None = None,
        data: str | None = None,
        value: int = 0,
        gas: int | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        """Send and return the receipt (raw JSON: hex strings). A failed transaction raises TxReverted with its reason
        when `check`."""
        tx = self._tx(sender, to, data, value, gas)
        if self.has_send_sync:
            rcpt = self.rpc.call("eth_sendTransactionSync", [tx])
        else:
            rcpt = self.wait_receipt(self.rpc.call("eth_sendTransaction", [tx]))
        if check and rcpt.get("status") != "0x1":
            raise TxReverted(rcpt, self._replay_reason(tx, rcpt))
        return dict(rcpt)

    def wait_receipt(self, tx_hash: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if r is not None:
                return dict(r)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash} after {timeout} s")
            time.sleep(self.poll_interval)

    def _replay_reason(self, tx: dict[str, str], rcpt: dict[str, Any]) -> str | None:
        """Re-run a failed transaction as eth_call on its parent block for the revert string (exact under auto-mine,
        one transaction per block; needs the parent state, i.e. keep_states >= 1)."""
        try:
            parent = hex(int(rcpt["blockNumber"], 16) - 1)
            self.rpc.call("eth_call", [{k: v for k, v in tx.items() if k != "nonce"}, parent])
        except RpcError as e:
            return e.revert_reason or e.message
        return None

    def transact(self, fn: Any, sender: str, value: int = 0, gas: int | None = None, check: bool = True) -> dict:
        """Send a bound web3 ContractFunction: `chain.transact(pool.functions.supply(...), user)`."""
        return self.send(sender, fn.address, fn._encode_transaction_data(), value, gas, check)

    def send_tx(self, tx: dict[str, str], check: bool = True) -> dict[str, Any]:
        """Send a prepared transaction dict (FnCodec.tx / tx_for)."""
        gas = int(tx["gas"], 16) if "gas" in tx else None
        return self.send(tx["from"], tx.get("to"), tx.get("data"), int(tx.get("value", "0x0"), 16), gas, check)

    def send_many(self, txs: Sequence[dict[str, str]], mine: bool = True) -> list[dict[str, Any]]:
        """On a node with auto-mine off: send many transactions in one batch with explicit nonces (a batch from one
        sender would otherwise reuse a nonce), mine one block, fetch every receipt in one batch."""
        senders = sorted({t["from"] for t in txs})
        counts = self.rpc.batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
        nonce = {s: int(n, 16) for s, n in zip(senders, counts)}
        out = [dict(t) for t in txs]
        for t in out:
            t["nonce"] = hex(nonce[t["from"]])
            nonce[t["from"]] += 1
        hashes = self.rpc.batch([("eth_sendTransaction", [t]) for t in out])
        if mine:
            self.rpc.call("evm_mine", [])
        return [dict(r) for r in self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])]

    def tx_for(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> dict[str, str]:
        return self._tx(sender, fn.address, fn._encode_transaction_data(), value, gas)

    # --- deployment ---------------------------------------------------------------------------------------
    def deploy(
        self,
        artifact: Artifact,
        *args: Any,
        sender: str | None = None,
        libraries: dict[str, str] | None = None,
        gas: int | None = None,
    ) -> Any:
        """Deploy and return a web3 contract handle; its receipt is `handle.deploy_receipt`."""
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.creation_code(libraries))
        rcpt = self.send(sender or self.accounts[0], None, factory.constructor(*args).data_in_transaction, 0, gas)
        c = self.at(artifact, rcpt["contractAddress"])
        c.deploy_receipt = rcpt
        return c

    def at(self, artifact: Artifact, address: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    # --- reads --------------------------------------------------------------------------------------------
    def codec(self, contract: Any, name: str) -> FnCodec:
        key = (contract.address, name)
        c = self._codecs.get(key)
        if c is None:
            c = self._codecs[key] = FnCodec(contract, name)
        return c

    @staticmethod
    def prepare(fn: Any) -> PreparedCall:
        """Encode a bound ContractFunction once for repeated or batched eth_call."""
        return PreparedCall(fn.address, fn._encode_transaction_data(), tuple(get_abi_output_types(fn.abi)))

    def call(self, fn_or_prepared: Any, block: str = "latest") -> Any:
        p = fn_or_prepared if isinstance(fn_or_prepared, PreparedCall) else self.prepare(fn_or_prepared)
        return p.decode(self.rpc.call(*p.request(block)))

    def batch_call(self, calls: Iterable[Any], block: str = "latest") -> list[Any]:
        """Many reads in one JSON-RPC batch (one HTTP round trip)."""
        ps = [c if isinstance(c, PreparedCall) else self.prepare(c) for c in calls]
        return [p.decode(r) for p, r in zip(ps, self.rpc.batch([p.request(block) for p in ps]))]

    def revert_reason_of(self, fn: Any, sender: str, value: int = 0) -> str | None:
        """eth_call the function: its revert string, or None when it would succeed."""
        try:
            self.rpc.call("eth_call", [self.tx_for(fn, sender, value), "latest"])
        except RpcError as e:
            return e.revert_reason or e.message
        return None

    # --- receipts and events --------------------------------------------------------------------------------
    @staticmethod
    def format_receipt(rcpt: dict[str, Any]) -> AttributeDict:
        from web3._utils.method_formatters import receipt_formatter  # web3's own raw-receipt formatter

        return AttributeDict.recursive(receipt_formatter(rcpt))

    def events(self, contract_event: Any, rcpt: dict[str, Any]) -> list[Any]:
        """Decode events of one type (e.g. `pool.events.LiquidationCall`) from a raw receipt. Events a library emits
        through DELEGATECALL (LiquidationLogic) carry the Pool proxy's address: decode them with the pool's handle."""
        from web3.logs import DISCARD

        return list(contract_event().process_receipt(self.format_receipt(rcpt), errors=DISCARD))

    # --- Anvil cheat codes -----------------------------------------------------------------------------------
    def snapshot(self) -> str:
        return str(self.rpc.call("evm_snapshot", []))

    def revert(self, snap_id: str) -> None:
        """Back to `snap_id`. Anvil deletes that snapshot (and later ones) on revert: snapshot again to come back."""
        if not self.rpc.call("evm_revert", [snap_id]):
            raise RuntimeError(f"evm_revert({snap_id}) failed (snapshot ids are single-use)")

    def set_storage(self, address: str, slot: int, value: int) -> None:
        word = "0x" + (value % (1 << 256)).to_bytes(32, "big").hex()
        self.rpc.call("anvil_setStorageAt", [address, hex(slot), word])

    def get_storage(self, address: str, slot: int) -> int:
        return int(self.rpc.call("eth_getStorageAt", [address, hex(slot), "latest"]), 16)

    def mine(self, blocks: int = 1) -> None:
        self.rpc.call("anvil_mine", [hex(blocks)])

    def mine_at(self, timestamp: int) -> None:
        """Mine one empty block with this timestamp (seconds)."""
        self.rpc.call("evm_mine", [timestamp])

    def set_next_block_timestamp(self, ts: int) -> None:
        self.rpc.call("evm_setNextBlockTimestamp", [hex(ts)])

    def freeze_time(self) -> None:
        """Every following block gets its parent's timestamp, so no interest accrues between transactions until the
        time is moved with `advance_time` / `mine_at` (evm_increaseTime is ignored meanwhile; survives evm_revert)."""
        self.rpc.call("anvil_setBlockTimestampInterval", [0])

    def advance_time(self, seconds: int, mine: bool = False) -> int:
        """Next block's timestamp = latest + seconds (works with freeze_time); returns it."""
        ts = self.timestamp() + seconds
        self.set_next_block_timestamp(ts)
        if mine:
            self.mine()
        return ts

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc.call("anvil_setBalance", [address, hex(wei)])

    def set_automine(self, on: bool) -> None:
        self.rpc.call("evm_setAutomine", [on])

    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber", []), 16)

    def timestamp(self, block: str = "latest") -> int:
        return int(self.rpc.call("eth_getBlockByNumber", [block, False])["timestamp"], 16)

    def close(self) -> None:
        self.rpc.close()


class Checkpoint:
    """A reusable snapshot: `restore()` reverts and snapshots again at once (Anvil snapshot ids are single-use)."""

    def __init__(self, chain: Chain):
        self.chain = chain
        self.id = chain.snapshot()

    def restore(self) -> None:
        self.chain.revert(self.id)
        self.id = self.chain.snapshot()


def receipt_gas(rcpt: dict[str, Any]) -> int:
    return int(rcpt["gasUsed"], 16)
