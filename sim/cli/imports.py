"""`defistress import aave-v3 | chainlink | uniswap-v2`: real books, oracle rounds and pool reserves read over web3
from any RPC at a given block (protocols/evm/import_*.py); a progress bar on a terminal, retries with backoff, and
clear errors."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

import_app = typer.Typer(no_args_is_help=True, add_completion=False)
console, err = Console(), Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import", help="Import a real book, oracle rounds or pool reserves over web3.")


def _fail(exc: Exception) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def _progress(quiet: bool):
    """A rich progress bar on a terminal (one task per stage), else nothing."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskID, TimeElapsedColumn

    with Progress(
        "{task.description}",
        BarColumn(),
        "{task.completed:,}/{task.total:,}",
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _time(text: str) -> int:
    """Unix seconds from '1714521600' or an ISO time ('2024-05-01', '2024-05-01T12:00:00Z'; UTC when no zone)."""
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give unix seconds or an ISO time such as 2024-08-05T00:00:00Z") from None
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


RPC = typer.Option(..., "--rpc", help="JSON-RPC URL (an archive node for old blocks); only its host is recorded")
BLOCK = typer.Option(None, "--block", help="block to read at (default: the chain head)")
RETRIES = typer.Option(5, "--retries", help="retries of a failed RPC request, with exponential backoff")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bar, no summary")


@import_app.command("aave-v3")
def aave_v3(
    rpc: str = RPC,
    pool: str = typer.Option(..., "--pool", help="address of the Aave v3 Pool (the proxy)"),
    block: int | None = BLOCK,
    out: Path = typer.Option(Path("book.parquet"), "--out", help="snapshot to write (.parquet; manifest beside it)"),
    from_block: int = typer.Option(0, "--from-block", help="first block to scan for Supply/Borrow events"),
    chunk_blocks: int = typer.Option(5_000, "--chunk-blocks", help="blocks per eth_getLogs (halved when refused)"),
    retries: int = RETRIES,
    quiet: bool = QUIET,
):
    """A lending book: every account found in the Pool's Supply/Borrow events, with its positions at the block.
    Resumable: rerun the same command after an interruption."""
    from defistress.protocols.evm.import_aave import import_aave_v3
    from defistress.protocols.evm.import_common import ChainImportError
    from defistress.protocols.evm.rpc import RpcError, RpcTransportError

    try:
        with _progress(quiet) as bar:
            m = import_aave_v3(rpc, pool, out, block, from_block, chunk_blocks, bar, retries)
    except (ChainImportError, RpcError, RpcTransportError) as exc:
        _fail(exc)
    if not quiet:
        t = Table(title=f"{out}: chain {m['chain_id']}, block {m['block_number']}")
        t.add_column("reserve")
        t.add_column("LTV / LT / bonus (bps)", justify="right")
        t.add_column("price (USD)", justify="right")
        for r in m["reserves"]:
            t.add_row(
                r["symbol"],
                f"{r['ltv']} / {r['liquidation_threshold']} / {r['liquidation_bonus']}",
                f"{r['price_base'] / 1e8:,.4f}",
            )
        console.print(t)
        console.print(f"{m['accounts']:,} accounts, {m['rows']:,} positions; sha256 {m['sha256']}")


@import_app.command("chainlink")
def chainlink(
    rpc: str = RPC,
    feed: str = typer.Option(..., "--feed", help="address of the feed (a Chainlink proxy or aggregator)"),
    t_from: str = typer.Option(..., "--from", help="window start: unix seconds or ISO time (UTC)"),
    t_to: str = typer.Option(..., "--to", help="window end: unix seconds or ISO time (UTC)"),
    out: Path = typer.Option(Path("rounds.csv"), "--out", help=".csv (the bundled rounds format) or .parquet"),
    block: int | None = BLOCK,
    retries: int = RETRIES,
    quiet: bool = QUIET,
):
    """Every round of a feed in a time window, in the format of the bundled Chainlink-round files."""
    from defistress.protocols.evm.import_chainlink import import_chainlink
    from defistress.protocols.evm.import_common import ChainImportError
    from defistress.protocols.evm.rpc import RpcError, RpcTransportError

    try:
        with _progress(quiet) as bar:
            m = import_chainlink(rpc, feed, _time(t_from), _time(t_to), out, block, bar, retries)
    except (ChainImportError, RpcError, RpcTransportError) as exc:
        _fail(exc)
    if not quiet:
        console.print(
            f"{out}: {m['rounds']:,} rounds of {m['description']} (chain {m['chain_id']}, block "
            f"{m['block_number']}, {m['window_utc'][0]} .. {m['window_utc'][1]})"
        )


@import_app.command("uniswap-v2")
def uniswap_v2(
    rpc: str = RPC,
    pair: str = typer.Option(..., "--pair", help="address of the Uniswap v2 pair"),
    block: int | None = BLOCK,
    out: Path | None = typer.Option(None, "--out", help="JSON file to write (default: print only)"),
    retries: int = RETRIES,
    quiet: bool = QUIET,
):
    """A pair's tokens and reserves at a block."""
    from defistress.protocols.evm.import_common import ChainImportError
    from defistress.protocols.evm.import_uniswap import import_uniswap_v2
    from defistress.protocols.evm.rpc import RpcError, RpcTransportError

    try:
        m = import_uniswap_v2(rpc, pair, block, out, retries)
    except (ChainImportError, RpcError, RpcTransportError) as exc:
        _fail(exc)
    if not quiet:
        a, b = m["token0"], m["token1"]
        console.print(
            f"{pair} at block {m['block_number']} of chain {m['chain_id']}: {a['reserve']:,.6g} {a['symbol']} "
            f"+ {b['reserve']:,.6g} {b['symbol']}" + (f" -> {out}" if out else "")
        )
