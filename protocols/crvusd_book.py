"""A crvUSD market book (the crvUSDrisk / crvusdsim `pool_metadata_*.json` format) read into typed arrays, and a
market (LLAMMA + controller) built from it.

The file mixes three snapshots (scenarios/books/crvusd/PROVENANCE.md): AMM parameters and the oracle price at
the block, band reserves about 20 h earlier, and the borrowers about 3 h earlier. The market is rebuilt from
the borrowers, which are self-consistent:
- debt is brought to the block with the AMM's rate: debt · (1 + rate · (t_block − t_users));
- the active band is the book's, moved into the only range where every borrower's coins can sit (stablecoin
  only at or above it, collateral only at or below it; a borrower holding both straddles it);
- each borrower's collateral is spread evenly over its collateral bands and its stablecoin over its
  stablecoin bands (the per-band split is not in the file; crvusdsim's loader spreads it evenly too);
- a borrower's share of a band is its value there at the band's mid price, so in the one band holding both
  coins every borrower gets the band's mix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defistress.protocols.base import Env, PriceSource
from defistress.protocols.crvusd_controller import ControllerParams, CrvUsdController
from defistress.protocols.crvusd_policy import MonetaryPolicyParams
from defistress.protocols.llamma import MAX_TICKS, Llamma, LlammaParams

WAD = 1e18


class BookError(ValueError):
    """A book file that cannot be read or does not match what the scenario expects."""


@dataclass(frozen=True)
class StableSwapBookPool:
    """One crvUSD stableswap pool of a book: coins (symbols), balances (token units), A, fee (fraction)."""

    address: str
    name: str
    coins: tuple[str, ...]
    balances: tuple[float, ...]
    A: float
    fee: float


@dataclass(frozen=True)
class PegKeeperBook:
    """One peg keeper: the pool it acts on (address), its debt and debt ceiling (crvUSD)."""

    address: str
    pool: str
    debt: float
    ceiling: float


@dataclass(frozen=True)
class CrvUsdBook:
    """Everything a crvUSD market book says, in token units and fractions (1e18 fixed point removed)."""

    symbol: str
    block: int
    timestamp: int
    users_timestamp: int
    A: int
    fee: float
    admin_fee: float
    base_price: float
    rate: float  # per second
    rate_mul: float
    active_band: int
    oracle_price: float
    loan_discount: float
    liquidation_discount: float
    debt_ceiling: float
    minted: float
    redeemed: float
    policy: MonetaryPolicyParams
    bands_x: dict[int, float]
    bands_y: dict[int, float]
    owners: tuple[str, ...]
    n1: np.ndarray
    n2: np.ndarray
    collateral: np.ndarray
    stablecoin: np.ndarray
    debt: np.ndarray  # at the users' snapshot
    health: np.ndarray  # Controller.health(user, full=False) at the users' snapshot
    loss: np.ndarray  # collateral lost to soft liquidation before the snapshot (the subgraph's `loss`)
    pools: tuple[StableSwapBookPool, ...]
    peg_keepers: tuple[PegKeeperBook, ...]

    @property
    def debt_at_block(self) -> np.ndarray:
        """Debt brought from the users' snapshot to the block with the AMM rate (Controller.vy `_debt`)."""
        return self.debt * (1.0 + self.rate * (self.timestamp - self.users_timestamp))


def read_book(path: str | Path, expect_symbol: str | None = None) -> CrvUsdBook:
    """Parse a book file; `expect_symbol` must equal its collateral symbol (llamma_params and the token's)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        llamma, ctrl, pol = d["llamma_params"], d["controller_params"], d["policy_params"]
        symbol = llamma["collateral_symbol"]
        if d["collateral_token_params"]["symbol"] != symbol:
            raise BookError(f"{path.name}: collateral symbols disagree: {symbol} vs {d['collateral_token_params']}")
        if expect_symbol is not None and symbol != expect_symbol:
            raise BookError(f"{path.name}: book is the {symbol} market, expected {expect_symbol}")
        users = d["userStates"]
        ts_users = {int(u["timestamp"]) for u in users}
        if len(ts_users) != 1:
            raise BookError(f"{path.name}: borrower records from {len(ts_users)} times; expected one snapshot")
        ceilings = {k.lower(): int(v) / WAD for k, v in d.get("debt_ceilings", {}).items()}
        pools = tuple(
            StableSwapBookPool(
                p["address"].lower(),
                p["name"],
                tuple(c["symbol"] for c in p["coins"]),
                tuple(int(b) / 10 ** int(c["decimals"]) for b, c in zip(p["D"], p["coins"])),
                float(p["A"]),
                int(p["fee"]) / 1e10,  # Stableswap.vy FEE_DENOMINATOR
            )
            for p in d.get("stableswap_pools_params", [])
        )
        pks = tuple(
            PegKeeperBook(
                k["address"].lower(), k["pool"].lower(), int(k["debt"]) / WAD, ceilings.get(k["address"].lower(), 0.0)
            )
            for k in d.get("peg_keepers_params", [])
        )
        arr = lambda key, kind=float: np.array([kind(u[key]) for u in users])  # noqa: E731
        return CrvUsdBook(
            symbol=symbol,
            block=int(d["blockNumber"]),
            timestamp=int(d["timestamp"]),
            users_timestamp=ts_users.pop(),
            A=int(llamma["A"]),
            fee=float(llamma["fee"]),
            admin_fee=float(llamma["admin_fee"]),
            base_price=float(llamma["BASE_PRICE"]),
            rate=int(llamma["rate"]) / WAD,
            rate_mul=int(llamma["rate_mul"]) / WAD,
            active_band=int(llamma["active_band"]),
            oracle_price=float(llamma["oracle_price"]),
            loan_discount=float(ctrl["loan_discount"]),
            liquidation_discount=float(ctrl["liquidation_discount"]),
            debt_ceiling=ceilings.get(ctrl["address"].lower(), math.inf),
            minted=float(ctrl["minted"]),
            redeemed=float(ctrl["redeemed"]),
            policy=MonetaryPolicyParams(
                rate0=int(pol["rate0"]) / WAD,
                sigma=int(pol["sigma"]) / WAD,
                target_debt_fraction=int(pol["fraction"]) / WAD,
            ),
            bands_x={int(k): int(v) / WAD for k, v in llamma["bands_x"].items()},
            bands_y={int(k): int(v) / WAD for k, v in llamma["bands_y"].items()},
            owners=tuple(u["user"]["id"] for u in users),
            n1=arr("n1", int),
            n2=arr("n2", int),
            collateral=arr("collateral"),
            stablecoin=arr("stablecoin"),
            debt=arr("debt"),
            health=arr("health"),
            loss=arr("loss"),
            pools=pools,
            peg_keepers=pks,
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, BookError):
            raise
        raise BookError(f"{path}: not a crvUSD market book ({type(exc).__name__}: {exc})") from None


def feasible_active_band(book: CrvUsdBook) -> tuple[int, int]:
    """Range of active bands where every borrower's coins can sit: stablecoin at or above it (n ≤ active),
    collateral at or below it (n ≥ active)."""
    lo, hi = -(2**62), 2**62
    has_x, has_y = book.stablecoin > 0, book.collateral > 0
    both = has_x & has_y
    if both.any():
        lo = max(lo, int(book.n1[both].max()))
        hi = min(hi, int(book.n2[both].min()))
    if (has_x & ~has_y).any():
        lo = max(lo, int(book.n2[has_x & ~has_y].max()))
    if (has_y & ~has_x).any():
        hi = min(hi, int(book.n1[has_y & ~has_x].min()))
    if lo > hi:
        raise BookError(f"{book.symbol} book: no active band fits every borrower (needs {lo} <= n <= {hi})")
    return lo, hi


def market_from_book(
    book: CrvUsdBook,
    pid: str,
    env: Env,
    oracle: PriceSource,
    collateral: str | None = None,
    stablecoin: str = "crvUSD",
    fee: float | None = None,
    loan_discount: float | None = None,
    liquidation_discount: float | None = None,
    rate_source=None,
    wallet: str | None = None,
) -> CrvUsdController:
    """A controller + LLAMMA holding the book's borrowers (see the module docstring for the reconstruction).

    Ledger: the bands' collateral and stablecoin are minted to the AMM ("genesis_collateral",
    "genesis_borrowed"); the rest of the borrowed stablecoin (debt − stablecoin in bands) to `wallet`
    (default "<pid>:borrowers"), so the stablecoin's supply equals the market's debt."""
    coll = collateral or book.symbol
    params = LlammaParams(
        pid, coll, stablecoin, book.A, book.base_price, book.fee if fee is None else fee, book.admin_fee
    )
    amm = Llamma(params, oracle, env, holder=f"{pid}:amm", fee_holder=f"{pid}:fees")
    amm.rate, amm.rate_mul, amm.rate_time = book.rate, book.rate_mul, env.clock.seconds
    ctrl = CrvUsdController(
        pid,
        ControllerParams(
            book.loan_discount if loan_discount is None else loan_discount,
            book.liquidation_discount if liquidation_discount is None else liquidation_discount,
            book.debt_ceiling,
        ),
        amm,
        env,
        rate_source,
    )
    lo, hi = feasible_active_band(book)
    n_a = int(min(max(book.active_band, lo), hi))
    n1, n2 = book.n1.astype(np.int64), book.n2.astype(np.int64)
    nb = n2 - n1 + 1
    if np.any(nb < 1) or np.any(nb > MAX_TICKS):
        raise BookError(f"{book.symbol} book: a borrower spans {nb.min()}..{nb.max()} bands; allowed 1..{MAX_TICKS}")
    k = np.arange(MAX_TICKS)
    bands = n1[:, None] + k[None, :]
    inb = k[None, :] < nb[:, None]
    y_mask = inb & (bands >= n_a)
    x_mask = inb & (bands <= n_a)
    ys = np.where(y_mask, book.collateral[:, None] / np.maximum(y_mask.sum(1), 1)[:, None], 0.0)
    xs = np.where(x_mask, book.stablecoin[:, None] / np.maximum(x_mask.sum(1), 1)[:, None], 0.0)
    b_lo, b_hi = int(min(n1.min(), n_a)), int(max(n2.max(), n_a))
    amm.ensure_bands(b_lo, b_hi)
    amm.active_band, amm.min_band, amm.max_band = n_a, b_lo, b_hi
    pos = bands - amm.lo
    p_mid = amm.p_oracle_up(bands) * math.sqrt(amm.ratio)
    value = np.where(inb, xs + ys * p_mid, 0.0)
    rows = ctrl._new_rows(list(book.owners))
    np.add.at(amm.x, pos[inb], xs[inb])
    np.add.at(amm.y, pos[inb], ys[inb])
    np.add.at(amm.ts, pos[inb], value[inb])
    amm.n1[rows], amm.nb[rows] = n1, nb
    amm.shares[rows] = value
    ctrl.initial_debt[rows] = book.debt_at_block
    ctrl.loan_rate_mul[rows] = book.rate_mul
    ctrl.liq_discount[rows] = ctrl.params.liquidation_discount
    amm.touch()
    ctrl.minted, ctrl.redeemed = book.minted, book.redeemed
    led = env.ledger
    led.mint(coll, amm.holder, float(amm.y.sum()), "genesis_collateral")
    led.mint(stablecoin, amm.holder, float(amm.x.sum()), "genesis_borrowed")
    rest = float(book.debt_at_block.sum() - amm.x.sum())
    if rest > 0:
        led.mint(stablecoin, wallet or f"{pid}:borrowers", rest, "genesis_borrowed")
    return ctrl
