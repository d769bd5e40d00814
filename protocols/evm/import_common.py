"""What the importers share: a JSON-RPC connection with retries, the block to read at, contract checks, ABI calls by
signature (no artifacts needed: any RPC, any chain), and the errors a user can act on."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3

from defistress.protocols.evm.rpc import Rpc, RpcError, RpcTransportError, _normalize

#: words in node errors that mean "I do not have that block's state" (pruned, not an archive node)
STATE_MISSING = (
    "missing trie node",
    "header not found",
    "state",
    "pruned",
    "archive",
    "not available",
    "unknown block",
    "out of range",
    "outofrange",
)
Progress = Callable[[str, int, int], None]


class ChainImportError(ValueError):
    """An import that cannot go on: the message says what is wrong (address, block, RPC) and what to do."""


def redact(url: str) -> str:
    """scheme://host[:port] of an RPC URL: its path and query often hold an API key."""
    u = urlparse(url)
    return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return f"defistress {version('defistress')}"
    except Exception:  # pragma: no cover - not installed
        return "defistress"


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect(url: str, retries: int = 5, backoff: float = 0.5) -> tuple[Rpc, int]:
    """An Rpc with retries and backoff, and the chain id; a clear error when the RPC cannot be reached."""
    try:
        rpc = Rpc(url, timeout=60.0, retries=min(retries, 1), backoff=backoff)
        chain_id = int(rpc.call("eth_chainId"), 16)  # a node that is not there fails fast
        rpc.retries = retries
        return rpc, chain_id
    except ValueError as exc:
        raise ChainImportError(f"--rpc: {exc}") from None
    except (RpcTransportError, RpcError) as exc:
        raise ChainImportError(f"cannot reach the RPC at {redact(url)}: {exc}") from None


@dataclass(frozen=True)
class Block:
    number: int
    hash: str
    timestamp: int

    @property
    def tag(self) -> str:
        return hex(self.number)


def resolve_block(rpc: Rpc, chain_id: int, block: int | None) -> Block:
    """The block to read at (default: the head); an error when it is beyond the head."""
    head = int(rpc.call("eth_blockNumber"), 16)
    number = head if block is None else int(block)
    if number < 0 or number > head:
        raise ChainImportError(f"--block {number}: beyond the head of chain {chain_id} (block {head})")
    b = rpc.call("eth_getBlockByNumber", [hex(number), False])
    if b is None:
        raise ChainImportError(f"--block {number}: the RPC does not know this block of chain {chain_id}")
    return Block(number, b["hash"], int(b["timestamp"], 16))


def state_error(exc: Exception, block: Block, what: str) -> ChainImportError:
    return ChainImportError(
        f"the RPC cannot serve the state of block {block.number} ({what}): {exc}. It is probably not an archive "
        "node: use an archive RPC, or a recent --block"
    )


def checksum(address: str, option: str) -> str:
    if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise ChainImportError(f"{option} {address!r}: not an address (0x followed by 40 hex digits)")
    return Web3.to_checksum_address(address)


def require_contract(rpc: Rpc, address: str, block: Block, chain_id: int, option: str, what: str) -> None:
    try:
        code = rpc.call("eth_getCode", [address, block.tag])
    except RpcError as exc:
        if any(w in exc.message.lower() for w in STATE_MISSING):
            raise state_error(exc, block, f"code of {address}") from None
        raise
    if code in (None, "0x", "0x0"):
        raise ChainImportError(
            f"{option} {address}: no contract there on chain {chain_id} at block {block.number} "
            f"(expected {what}; a wrong address or network, or one deployed later?)"
        )


@dataclass(frozen=True)
class Fn:
    """A contract function by signature, e.g. Fn("getUserAccountData(address)", ["uint256"] * 6)."""

    signature: str
    outputs: tuple[str, ...]

    @property
    def selector(self) -> bytes:
        return keccak(text=self.signature)[:4]

    def data(self, *args: Any) -> str:
        inputs = self.signature[self.signature.index("(") + 1 : -1]
        types = _split_types(inputs) if inputs else []
        return "0x" + (self.selector + abi_encode(types, list(args))).hex()

    def request(self, to: str, block: Block, *args: Any) -> tuple[str, list[Any]]:
        return ("eth_call", [{"to": to, "data": self.data(*args)}, block.tag])

    def decode(self, result: str) -> Any:
        """Python values as web3 gives them: checksummed addresses, lists for arrays."""
        vals = abi_decode(list(self.outputs), bytes.fromhex(result[2:]))
        vals = tuple(_normalize(v, t) for v, t in zip(vals, self.outputs))
        return vals[0] if len(vals) == 1 else vals


def _split_types(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    return out + [cur]


def call(rpc: Rpc, fn: Fn, to: str, block: Block, *args: Any) -> Any:
    return fn.decode(rpc.call(*fn.request(to, block, *args)))


def batch(rpc: Rpc, items: Sequence[tuple[Fn, str, tuple]], block: Block, size: int = 200) -> list[Any]:
    """Many calls at one block, `size` per JSON-RPC batch; a failed call is returned as its RpcError."""
    out: list[Any] = []
    for k in range(0, len(items), size):
        part = items[k : k + size]
        res = rpc.batch([fn.request(to, block, *args) for fn, to, args in part], raise_errors=False)
        for (fn, _, _), r in zip(part, res):
            out.append(r if isinstance(r, RpcError) else fn.decode(r))
    return out


ERC20_SYMBOL = Fn("symbol()", ("string",))
ERC20_SYMBOL_BYTES32 = Fn("symbol()", ("bytes32",))
ERC20_DECIMALS = Fn("decimals()", ("uint8",))
ERC20_BALANCE = Fn("balanceOf(address)", ("uint256",))


def token_meta(rpc: Rpc, tokens: list[str], block: Block) -> list[tuple[str, int]]:
    """(symbol, decimals) of ERC20 tokens; a bytes32 symbol (MKR) is decoded, an unreadable one is the address."""
    syms = batch(rpc, [(ERC20_SYMBOL, t, ()) for t in tokens], block)
    decs = batch(rpc, [(ERC20_DECIMALS, t, ()) for t in tokens], block)
    out = []
    for t, s, d in zip(tokens, syms, decs):
        if isinstance(s, Exception):
            try:
                s = call(rpc, ERC20_SYMBOL_BYTES32, t, block).rstrip(b"\0").decode()
            except Exception:
                s = t
        if isinstance(d, Exception):
            raise ChainImportError(f"token {t}: decimals() failed at block {block.number}: {d}")
        out.append((str(s), int(d)))
    return out
