"""An options venue with portfolio margin (Derive/Deribit style): calls, puts and perps on oracle-priced underlyings.

Accounts are rows: `cash[n]` (USD quote), `qty[n, i]` (signed units of instrument i), `spot[n, u]` (spot collateral
tokens). The venue is one ledger holder (its id) holding all quote and spot deposits; premiums, perp PnL and expiry
payoffs are transfers between rows' cash, zero-sum because every trade has a counterparty row (by default the
market maker). Marks are Black-76 (protocols/margin/black76.py) on oracle spot with the venue's coupled vol surface;
perps are settled to cash every block (mark-to-market), expired options at intrinsic value against oracle spot.
Margin comes from any model of protocols.margin (registry name); equity is the venue's own mark-to-market.
Liquidation is Derive's Dutch auction (protocols/options_auction.py) or a fixed-fraction partial close; controller
entry points (Euler EVC style) let a margin coordinator close, settle and write off controlled rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, field_validator, model_validator

from defistress.protocols import options_auction as da
from defistress.protocols import options_liquidation as liq
from defistress.protocols.base import Env, Exposure, MarginProtocol, Revert
from defistress.protocols.bounds import MAX_USD, PARAMS_CONFIG, Float
from defistress.protocols.events import Generic
from defistress.protocols.margin import black76
from defistress.protocols.margin.catalog import check_model_name, get_model
from defistress.protocols.margin.portfolio import CALL, KIND_NAMES, PERP, PUT, SPOT, MarketState, Portfolio
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.options_entries import BookEntries, book_entries, entries_of, rows_entries
from defistress.protocols.options_margin_cache import MarketKey, RowMarginCache
from defistress.protocols.vol import CoupledVolSurface, VolSurfaceParams

DUST_USD = 1e-9  # float rounding below which no bad debt / transfer is recorded


def _nonzero(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.nonzero` of a 2-D float array (row-major order, NaN counts as non-zero, -0.0 as zero)."""
    _, rows, cols = entries_of(a)
    return rows, cols


def _long_units(qty: np.ndarray, entries: BookEntries | None = None) -> np.ndarray:
    """(I,) units held long per instrument, `np.maximum(qty, 0.0).sum(axis=0)` of an (N, I) array from its non-zero
    entries only (`entries`, the book's when given, else found here): a sum over the rows adds them in row order,
    as bincount adds the entries of the row-major list, and the zeros left out add +0.0 to a sum of terms >= +0.0
    (or NaN), which changes no bit (numpy's maximum gives +0.0 for -0.0). The book is mostly zeros (a few
    positions per account)."""
    flat, _, i = entries_of(qty) if entries is None else (entries.qty_flat, entries.qty_rows, entries.qty_cols)
    long = np.bincount(i, weights=np.maximum(np.ravel(qty)[flat], 0.0), minlength=qty.shape[1])
    return long.astype(np.float64, copy=False)  # bincount of no entries is int64 zeros


_KINDS = {"call": CALL, "put": PUT, "perp": PERP}


def _row_drivers(drivers: dict, rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The per-row drivers (1-D, one entry per account of `n`) at `rows`, each indexed on its own (its dtype kept):
    a margin result is read at a few rows between two state changes, so stacking them first costs more."""
    return {k: np.asarray(d)[rows] for k, d in drivers.items() if np.ndim(d) == 1 and len(d) == n}


class OptionsVenueParams(BaseModel):
    """Margin model, quote token, liquidation mode and Derive DutchAuction mainnet parameters."""

    model_config = PARAMS_CONFIG

    margin_model: str = Field("deribit-pm", description="a name of protocols.margin.catalog.list_models()")
    margin_overrides: dict = Field(default_factory=dict, description="keyword overrides of the model's params")
    quote: str = Field("USDC", min_length=1, description="cash token, valued at 1 USD")
    liquidation: Literal["auction", "partial"] = Field(
        "auction", description="auction: Derive's Dutch auction; partial: a fixed share closed per call"
    )
    # derivexyz/v2-core DutchAuction mainnet params (docs/margin-methods.md 1.7)
    starting_mtm_percentage: Float = Field(
        0.95, gt=0, le=1, description="fraction [published: Derive startingMtMPercentage 0.95, <= 1 in code]"
    )
    fast_auction_cutoff: Float = Field(
        0.70, ge=0, le=1, description="fraction [published: Derive fastAuctionCutoffPercentage 0.70]"
    )
    fast_auction_s: Float = Field(
        900.0, gt=0, le=1e7, description="seconds [published: Derive fastAuctionLength 900 s]"
    )
    slow_auction_s: Float = Field(
        43_200.0, gt=0, le=1e8, description="seconds [published: Derive slowAuctionLength 12 h]"
    )
    insolvent_auction_s: Float = Field(
        3_600.0, gt=0, le=1e8, description="insolvent auction length, seconds [published: Derive 1 h]"
    )
    liquidator_fee_rate: Float = Field(
        0.10, ge=0, le=0.1, description="fraction [published: Derive liquidatorFeeRate 10%, code caps at 10%]"
    )
    buffer_margin_percentage: Float = Field(
        0.15, ge=0, le=0.3, description="fraction [published: Derive bufferMarginPercentage 0.15, cap 0.3]"
    )
    # partial mode: assumption, in line with Derive v3 docs LIQUIDATION_PENALTY 500 bps
    partial_fraction: Float = Field(
        0.25, gt=0, le=1, description="share of every position closed per call [assumption]"
    )
    partial_penalty: Float = Field(
        0.05, ge=0, le=1, description="penalty x |mark value closed| to the liquidator [assumption: Derive 5%]"
    )
    security_module_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="quote minted into the security module at genesis, USD [scenario input]"
    )
    vol: VolSurfaceParams = Field(VolSurfaceParams(), description="the venue's implied-volatility surface")

    @field_validator("margin_model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        return check_model_name(v, "margin_model")

    @model_validator(mode="after")
    def _check(self):
        if self.fast_auction_cutoff > self.starting_mtm_percentage:
            raise ValueError(
                f"fast_auction_cutoff={self.fast_auction_cutoff}: allowed <= starting_mtm_percentage="
                f"{self.starting_mtm_percentage} (DutchAuction.sol setSolventAuctionParams)"
            )
        try:
            get_model(self.margin_model, **self.margin_overrides)
        except (TypeError, ValueError) as e:
            raise ValueError(f"margin_overrides={self.margin_overrides!r}: {e}") from e
        return self

    def schedule(self) -> da.AuctionSchedule:
        return da.AuctionSchedule(
            self.starting_mtm_percentage,
            self.fast_auction_cutoff,
            self.fast_auction_s,
            self.slow_auction_s,
            self.insolvent_auction_s,
            self.liquidator_fee_rate,
            self.buffer_margin_percentage,
        )


class OptionsVenue(MarginProtocol):
    """Portfolio-margined options venue over the oracles' underlyings; rows are accounts (struct of arrays)."""

    def __init__(self, params: OptionsVenueParams, oracles: dict, env: Env, id: str = "options"):
        self.params, self.env, self.id, self.quote = params, env, id, params.quote
        self.security_module = f"{id}:security_module"
        self.underlyings = tuple(u for u in oracles if u != params.quote)
        if not self.underlyings:
            raise ValueError(f"oracles: allowed at least one underlying besides quote {params.quote!r}")
        self.oracles = [oracles[u] for u in self.underlyings]
        self.und_index = {u: k for k, u in enumerate(self.underlyings)}
        self.model = get_model(params.margin_model, **params.margin_overrides)
        self.schedule = params.schedule()
        p0 = self.prices()
        self.surfaces = {u: CoupledVolSurface(params.vol, float(p0[k])) for k, u in enumerate(self.underlyings)}
        self.settle_price = p0.copy()  # USD per unit at the last perp settlement
        n_u = len(self.underlyings)
        self.inst_und = np.zeros(0, dtype=np.int64)
        self.inst_kind = np.zeros(0, dtype=np.int8)
        self.inst_strike = np.zeros(0)
        self.inst_expiry_t = np.zeros(0)  # absolute chain seconds (0 for perps)
        self.inst_active = np.zeros(0, dtype=bool)
        self.cash = np.zeros(0)
        self.qty = np.zeros((0, 0))
        self.spot = np.zeros((0, n_u))
        self.owner = np.zeros(0, dtype=np.int64)
        self.controlled = np.zeros(0, dtype=bool)
        self.net_deposits = np.zeros(0)  # USD-valued deposits minus withdrawals per row
        self.holders: list[str] = []
        self._holder_ids: dict[str, int] = {}
        self.mm_row: int | None = None
        self.auction_start = np.zeros(0)  # chain seconds; NaN when no auction
        self.auction_insolvent = np.zeros(0, dtype=bool)
        self.auction_ins_start = np.zeros(0)
        self.auction_lower = np.zeros(0)  # USD, |BM| when the insolvent auction began
        self.bad_debt_usd = 0.0
        self.n_liquidations = 0
        self.liquidation_volume_usd = 0.0
        if params.security_module_usd > 0:
            env.ledger.mint(self.quote, self.security_module, params.security_module_usd, "genesis_security_module")
        self._version = 0  # bumped by every state change (_touch)
        self._cache_key: tuple | None = None  # (market key, state version) of `_cache`
        self._cache: dict = {}  # marks, unit values, equity and the margin result of one state
        self._marks_key: MarketKey | None = None  # market key of `_marks_cache`
        self._marks_cache: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))  # marks, unit values
        self._rows_cache = RowMarginCache()
        # (market key, state version, qty, spot, entries) of `_entries()`
        self._entries_kept: tuple[MarketKey, int, np.ndarray, np.ndarray, BookEntries] | None = None

    # --- views -----------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return int(self.cash.shape[0])

    @property
    def now(self) -> float:
        return float(self.env.clock.seconds)

    def prices(self) -> np.ndarray:
        """Oracle spot per underlying, USD per token."""
        return np.array([float(o.price) for o in self.oracles], dtype=np.float64)

    @property
    def instruments(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "und": [self.underlyings[u] for u in self.inst_und],
                "kind": [KIND_NAMES[k] for k in self.inst_kind],
                "strike": self.inst_strike,
                "expiry_t": self.inst_expiry_t,
                "active": self.inst_active,
            }
        )

    def accounts_of(self, holder: str) -> np.ndarray:
        hid = self._holder_ids.get(holder)
        return np.zeros(0, dtype=np.int64) if hid is None else np.flatnonzero(self.owner == hid)

    def _touch(self) -> None:
        self._version += 1

    def market_key(self) -> MarketKey:
        """What every row's marks and margin depend on besides the row's own cash, positions and spot: chain time,
        oracle and settlement prices, the instrument table, the vol surfaces' state, the model and the params."""
        p = self.prices()
        return MarketKey(
            objects=(self.model, getattr(self.model, "params", None), self.params, *self.surfaces.values()),
            values=(
                self.now,
                p.tobytes(),
                self.settle_price.tobytes(),
                self.inst_und.tobytes(),
                self.inst_kind.tobytes(),
                self.inst_strike.tobytes(),
                self.inst_expiry_t.tobytes(),
                self.inst_active.tobytes(),
                tuple((s.params, s.last_price, s.variance) for s in self.surfaces.values()),
            ),
            prices=p,
        )

    def _values(self) -> dict:
        mk = self.market_key()
        if self._cache_key is None or self._cache_key[1] != self._version or not mk.same(self._cache_key[0]):
            if self._marks_key is None or not mk.same(self._marks_key):
                p = mk.prices
                marks = self._marks(p)
                unit = np.where(self.inst_kind == PERP, p[self.inst_und] - self.settle_price[self.inst_und], marks)
                self._marks_cache = (marks, np.where(self.inst_active, unit, 0.0))
                self._marks_key = mk
            marks, unit = self._marks_cache
            self._cache = {"marks": marks, "unit": unit, "equity": self.cash + self.qty @ unit + self.spot @ mk.prices}
            self._cache_key = (mk, self._version)
        return self._cache

    def _marks(self, p: np.ndarray) -> np.ndarray:
        s = p[self.inst_und]
        t_s = np.maximum(self.inst_expiry_t - self.now, 0.0)
        opt = self.inst_kind != PERP
        sig = np.zeros(self.inst_und.size)
        for k, u in enumerate(self.underlyings):
            m = opt & (self.inst_und == k)
            if m.any():
                sig[m] = self.surfaces[u].vol(self.inst_strike[m], t_s[m], s[m])
        px = black76.price(s, self.inst_strike, black76.annualise(t_s), sig, self.inst_kind == CALL)
        return np.where(opt, px, s)

    def mark_prices(self) -> np.ndarray:
        """(I,) USD per unit: Black-76 on oracle spot with the surface vol (rate 0); perps = oracle spot."""
        return self._values()["marks"].copy()

    def unit_values(self) -> np.ndarray:
        """(I,) USD value per unit held: option marks; perps the PnL since the last settlement; 0 if expired."""
        return self._values()["unit"]

    def gross_value_usd(self) -> np.ndarray:
        """(N,) USD: Σ |qty x mark| (perps at spot notional) + spot collateral value; the base of penalties."""
        return np.abs(self.qty) @ np.abs(self.mark_prices()) + self.spot @ self.prices()

    def equity(self) -> np.ndarray:
        """(N,) USD mark-to-market: cash + positions at unit value + spot collateral at oracle price."""
        return self._values()["equity"]

    def _entries(self, mk: MarketKey | None = None) -> BookEntries:
        """The whole book's non-zero entries, found once per state and market: kept with the market key and state
        version they were found at, as `_values()` keeps the equity (the whole-book margin batch, the metrics' long
        units and a coordinator's rows read them; every state change bumps the version, and a new array is a new
        book). `mk` is this market's key when the caller already holds it (the margin batch and a coordinator's
        adaptor do): the key, a frozen dataclass of the market's bytes, is then not taken again."""
        mk = self.market_key() if mk is None else mk
        got = self._entries_kept
        if (
            got is None
            or got[1] != self._version
            or got[2] is not self.qty
            or got[3] is not self.spot
            or not (got[0] is mk or mk.same(got[0]))
        ):
            got = self._entries_kept = (mk, self._version, self.qty, self.spot, book_entries(self.qty, self.spot))
        return got[4]

    def _build(self, cash, qty, spot, mk: MarketKey | None = None) -> Portfolio:
        """The portfolio of the book (cash, qty, spot); the venue's own qty and spot from their kept entries (`mk`:
        this market's key, when the caller holds it)."""
        whole = qty is self.qty and spot is self.spot
        return self._from_entries(cash, self._entries(mk) if whole else book_entries(qty, spot), qty, spot)

    def _from_entries(self, cash, e: BookEntries, qty, spot) -> Portfolio:
        """The portfolio of `cash` (one per account) and the entries `e` of the books `qty` and `spot` (which hold
        the values at the entries' flat indices)."""
        r, i, rs, us = e.qty_rows, e.qty_cols, e.spot_rows, e.spot_cols
        q, s = e.values(qty, spot)
        kind = self.inst_kind[i]
        und = self.inst_und[i]
        perp = kind == PERP
        return Portfolio(
            n_accounts=cash.shape[0],
            underlyings=self.underlyings,
            account=np.concatenate([r, rs]),
            kind=np.concatenate([kind, np.full(rs.size, SPOT, dtype=np.int8)]),
            und=np.concatenate([und, us]),
            qty=np.concatenate([q, s]),
            strike=np.concatenate([np.where(perp, 0.0, self.inst_strike[i]), np.zeros(rs.size)]),
            expiry_s=np.concatenate(
                [np.where(perp, 0.0, np.maximum(self.inst_expiry_t[i] - self.now, 0.0)), np.zeros(rs.size)]
            ),
            entry_price=np.concatenate([np.where(perp, self.settle_price[und], 0.0), np.zeros(rs.size)]),
            cash=cash,
        )

    def portfolio(self, rows=None, mk: MarketKey | None = None) -> Portfolio:
        """Rows' options, perps (entry = last settlement price), spot collateral (SPOT) and cash (`mk`: this
        market's key, when the caller holds it)."""
        if rows is None:  # every row: no gather of the whole book (`_build` copies what it keeps but cash)
            return self._build(self.cash.copy(), self.qty, self.spot, mk)
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        e = rows_entries(self._entries(mk), rows, self.n_accounts)  # ascending rows: no gather and scan
        if e is None:
            return self._build(self.cash[rows], self.qty[rows], self.spot[rows])
        return self._from_entries(self.cash[rows], e, self.qty, self.spot)

    def market_state(self) -> MarketState:
        p = self.prices()
        return MarketState(spot={u: float(p[k]) for k, u in enumerate(self.underlyings)}, vol=dict(self.surfaces))

    def margin(self, rows=None) -> MarginResult:
        """The margin model's requirements with the venue's equity (cached per block and state when rows is None)."""
        v = self._values()
        if rows is None:
            return self._whole_margin(v)
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))  # requirements are per account: the whole, indexed
        sub = None if "margin" in v else self._current_rows(v, rows)
        if sub is not None:
            return sub
        full = self._whole_margin(v)
        return MarginResult(
            im=full.im[rows],
            mm=full.mm[rows],
            equity=full.equity[rows],
            drivers=_row_drivers(full.drivers, rows, self.n_accounts),
            model=full.model,
        )

    def _whole_margin(self, v: dict) -> MarginResult:
        """Every row's margin in the state and market of `v` (this state's `_values()`), kept in `v`."""
        if "margin" not in v:
            cache_key = self._cache_key
            assert cache_key is not None  # set by _values()
            im, mm, drivers = self._rows_cache.refresh(self, cache_key[0], self._version)
            v["margin"] = MarginResult(
                im=im, mm=mm, equity=v["equity"], drivers=drivers, model=self._rows_cache.model_name
            )
        return v["margin"]

    def _current_rows(self, v: dict, rows: np.ndarray) -> MarginResult | None:
        """The margin of `rows` from the row cache when each of them is current while other rows are stale (after
        a state change): those others are left for a later batch, often never needed at this market (the next
        block values the book again). None when the whole book is to be read (then it is current)."""
        cache_key = self._cache_key
        assert cache_key is not None  # set by _values()
        got = self._rows_cache.refresh_rows(self, cache_key[0], self._version, rows)
        if got is None:
            return None
        im, mm, drivers = got
        return MarginResult(im=im, mm=mm, equity=v["equity"][rows], drivers=drivers, model=self._rows_cache.model_name)

    def row_margin(self, row: int) -> tuple[float, float, float]:
        """(equity, mm, im) of one row, USD: the figures of `margin([row])`, read from the whole book's result or
        the row cache without building a one-row result and its drivers (the auction code reads these three
        figures of one row several times per auction and block)."""
        v = self._values()
        m = v.get("margin")
        if m is None:
            cache_key = self._cache_key
            assert cache_key is not None  # set by _values()
            rc = self._rows_cache
            if rc.row_current(self, cache_key[0], self._version, row):
                return float(v["equity"][row]), float(rc.mm[row]), float(rc.im[row])
            m = self._whole_margin(v)
        return float(m.equity[row]), float(m.mm[row]), float(m.im[row])

    def _requirements(self, cash, qty, spot, equity) -> MarginResult:
        res = self.model.requirements(self._build(cash, qty, spot), self.market_state())
        return MarginResult(im=res.im, mm=res.mm, equity=equity, drivers=res.drivers, model=res.model)

    def health(self) -> np.ndarray:
        """equity / mm per row (inf where mm is below DUST_USD: the float residue of closed positions, whose
        ratio would overflow, is no requirement)."""
        m = self.margin()
        live = m.mm > DUST_USD
        return np.where(live, m.equity / np.where(live, m.mm, 1.0), np.inf)

    def _exempt(self) -> np.ndarray:
        ex = self.controlled.copy()
        if self.mm_row is not None:
            ex[self.mm_row] = True
        return ex

    def liquidatable(self) -> np.ndarray:
        """Rows below maintenance margin, excluding the market maker and controlled rows."""
        return np.flatnonzero((self.health() < 1.0) & ~self._exempt())

    def accounting_gap_usd(self) -> float:
        """Quote held by the venue minus the sum of rows' cash (0 when every transfer is matched)."""
        return float(self.env.ledger.balance(self.id, self.quote) - self.cash.sum())

    # --- accounts ----------------------------------------------------------------------------------
    def _holder_id(self, holder: str) -> int:
        if holder not in self._holder_ids:
            self._holder_ids[holder] = len(self.holders)
            self.holders.append(holder)
        return self._holder_ids[holder]

    def _rows(self, holder: str | None, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_accounts):
            raise Revert(f"{self.id}: rows out of range 0..{self.n_accounts - 1}")
        if holder is not None and (self.owner[rows] != self._holder_ids.get(holder, -1)).any():
            raise Revert(f"{self.id}: {holder} does not own every row of {rows.tolist()}")
        return rows

    @staticmethod
    def _amounts(amounts, n: int, name: str) -> np.ndarray:
        a = np.broadcast_to(np.asarray(amounts, dtype=np.float64), (n,)).copy()
        if not (np.isfinite(a).all() and (a >= 0).all()):
            raise Revert(f"{name}: allowed finite amounts >= 0")
        return a

    def _pull(self, holder: str, token: str, amount: float) -> None:
        if self.env.ledger.balance(holder, token) < amount - DUST_USD:
            raise Revert(f"{holder} holds {self.env.ledger.balance(holder, token):.6g} {token} < {amount:.6g}")
        self.env.ledger.transfer(token, holder, self.id, amount)

    def open_accounts(self, holder: str, cash_usd) -> np.ndarray:
        """Append rows owned by `holder`, funded with quote from its ledger balance; returns the new rows."""
        cash = self._amounts(cash_usd, np.size(cash_usd), "cash_usd")
        self._pull(holder, self.quote, float(cash.sum()))
        n0, n = self.n_accounts, cash.size
        hid = self._holder_id(holder)
        self.cash = np.concatenate([self.cash, cash])
        self.qty = np.vstack([self.qty, np.zeros((n, self.qty.shape[1]))])
        self.spot = np.vstack([self.spot, np.zeros((n, self.spot.shape[1]))])
        self.owner = np.concatenate([self.owner, np.full(n, hid, dtype=np.int64)])
        self.controlled = np.concatenate([self.controlled, np.zeros(n, dtype=bool)])
        self.net_deposits = np.concatenate([self.net_deposits, cash])
        self.auction_start = np.concatenate([self.auction_start, np.full(n, np.nan)])
        self.auction_insolvent = np.concatenate([self.auction_insolvent, np.zeros(n, dtype=bool)])
        self.auction_ins_start = np.concatenate([self.auction_ins_start, np.zeros(n)])
        self.auction_lower = np.concatenate([self.auction_lower, np.zeros(n)])
        self._touch()
        return np.arange(n0, n0 + n)

    def deposit(self, holder: str, rows, amounts_usd) -> None:
        rows = self._rows(holder, rows)
        a = self._amounts(amounts_usd, rows.size, "amounts_usd")
        self._pull(holder, self.quote, float(a.sum()))
        np.add.at(self.cash, rows, a)
        np.add.at(self.net_deposits, rows, a)
        self._touch()

    def deposit_spot(self, holder: str, rows, asset: str, amounts_tokens) -> None:
        """Spot collateral (tokens) held by the venue for the rows."""
        if asset not in self.und_index:
            raise Revert(f"asset={asset!r}: allowed {list(self.underlyings)}")
        rows = self._rows(holder, rows)
        a = self._amounts(amounts_tokens, rows.size, "amounts_tokens")
        self._pull(holder, asset, float(a.sum()))
        np.add.at(self.spot[:, self.und_index[asset]], rows, a)
        np.add.at(self.net_deposits, rows, a * self.prices()[self.und_index[asset]])
        self._touch()

    def withdraw(self, holder: str, rows, amounts_usd) -> None:
        """Quote out of the rows' positive cash; reverts if a row would end below initial margin."""
        rows = self._rows(holder, rows)
        a = self._amounts(amounts_usd, rows.size, "amounts_usd")
        take = np.zeros(self.n_accounts)
        np.add.at(take, rows, a)
        u = np.unique(rows)
        if (take[u] > np.maximum(self.cash[u], 0.0) + DUST_USD).any():
            raise Revert(f"{self.id}: withdrawal above the rows' cash")
        check = u[u != self.mm_row] if self.mm_row is not None else u
        if check.size:
            m = self._requirements(
                self.cash[check] - take[check], self.qty[check], self.spot[check], self.equity()[check] - take[check]
            )
            if (m.equity < m.im - DUST_USD).any():
                raise Revert(f"{self.id}: withdrawal leaves a row below initial margin")
        self.cash -= take
        self.net_deposits -= take
        self.env.ledger.transfer(self.quote, self.id, holder, float(a.sum()))
        self._touch()

    def set_market_maker(self, row: int) -> None:
        """The liquidity row: counterparty of agents' trades, exempt from margin checks and liquidation."""
        self.mm_row = int(self._rows(None, [row])[0])

    # --- instruments and trading ---------------------------------------------------------------------
    def list_instrument(self, underlying: str, kind: str, strike_usd: float = 0.0, expiry_s: float = 0.0) -> int:
        """Index of the instrument (listed now if new); expiry_s is seconds from now, stored as chain time."""
        if underlying not in self.und_index:
            raise ValueError(f"underlying={underlying!r}: allowed {list(self.underlyings)}")
        if kind not in _KINDS:
            raise ValueError(f"kind={kind!r}: allowed {list(_KINDS)}")
        code, u = _KINDS[kind], self.und_index[underlying]
        if code == PERP:
            strike_usd, t_abs = 0.0, 0.0
        else:
            if not (np.isfinite(strike_usd) and strike_usd > 0):
                raise ValueError(f"strike_usd={strike_usd}: allowed finite > 0 for options")
            if not (np.isfinite(expiry_s) and expiry_s > 0):
                raise ValueError(f"expiry_s={expiry_s}: allowed finite > 0 seconds for options")
            t_abs = self.now + float(expiry_s)
        same = np.flatnonzero(
            (self.inst_und == u)
            & (self.inst_kind == code)
            & (self.inst_strike == strike_usd)
            & (self.inst_expiry_t == t_abs)
            & self.inst_active
        )
        if same.size:
            return int(same[0])
        self.inst_und = np.append(self.inst_und, u)
        self.inst_kind = np.append(self.inst_kind, np.int8(code))
        self.inst_strike = np.append(self.inst_strike, float(strike_usd))
        self.inst_expiry_t = np.append(self.inst_expiry_t, t_abs)
        self.inst_active = np.append(self.inst_active, True)
        self.qty = np.hstack([self.qty, np.zeros((self.n_accounts, 1))])
        self._touch()
        return int(self.inst_und.size - 1)

    def trade(
        self, holder: str, rows, instrument: int, qty, price_usd=None, counterparty_row=None, check_margin: bool = True
    ) -> None:
        """`rows` buy `qty` (signed) of `instrument` from the counterparty (default the market maker) at
        `price_usd` per unit (default the mark); premium moves row to row in cash. Reverts if a risk-increasing
        trade leaves a row (other than the market maker) below initial margin."""
        rows = self._rows(holder, rows)
        if not 0 <= int(instrument) < self.inst_und.size or not self.inst_active[int(instrument)]:
            raise Revert(f"{self.id}: instrument {instrument} not listed or expired")
        i = int(instrument)
        q = np.broadcast_to(np.asarray(qty, dtype=np.float64), rows.shape).copy()
        cp = self.mm_row if counterparty_row is None else int(counterparty_row)
        if cp is None:
            raise Revert(f"{self.id}: no counterparty row (set_market_maker first)")
        cp = int(self._rows(None, [cp])[0])
        if (rows == cp).any() or not np.isfinite(q).all():
            raise Revert(f"{self.id}: a row cannot trade with itself; qty must be finite")
        if self.inst_kind[i] == PERP:  # premium of a perp = PnL accrued since the last settlement
            unit = (self.prices()[self.inst_und[i]] if price_usd is None else float(price_usd)) - self.settle_price[
                self.inst_und[i]
            ]
        else:
            unit = self.mark_prices()[i] if price_usd is None else float(price_usd)
        if not np.isfinite(unit):
            raise Revert(f"price_usd={price_usd}: allowed finite")
        touched = np.unique(np.append(rows, cp))
        before = (self.cash[touched].copy(), self.qty[touched, i].copy())
        old_abs = np.abs(self.qty[touched, i])
        np.add.at(self.qty[:, i], rows, q)
        np.add.at(self.cash, rows, -q * unit)
        self.qty[cp, i] -= q.sum()
        self.cash[cp] += float(q.sum() * unit)
        self._touch()
        if check_margin:
            grew = touched[(np.abs(self.qty[touched, i]) > old_abs + 1e-12) & (touched != self.mm_row)]
            if grew.size:
                m = self.margin(grew)
                if (m.equity < m.im - DUST_USD).any():
                    self.cash[touched], self.qty[touched, i] = before
                    self._touch()
                    raise Revert(
                        f"{self.id}: trade leaves row(s) {grew[m.equity < m.im - DUST_USD].tolist()} "
                        f"below initial margin"
                    )

    # --- accrual -----------------------------------------------------------------------------------
    def accrue(self, dt_seconds: float) -> None:
        """Surfaces update, perps settle to cash at oracle spot, expired options settle at intrinsic, auctions
        advance (convert to insolvent or terminate)."""
        p = self.prices()
        for k, u in enumerate(self.underlyings):
            self.surfaces[u].update(p[k], dt_seconds)
        perp = np.flatnonzero(self.inst_kind == PERP)
        if perp.size:  # mark-to-market settlement: zero-sum since each perp column sums to zero
            move = p[self.inst_und[perp]] - self.settle_price[self.inst_und[perp]]
            self.cash += self.qty[:, perp] @ move
        self.settle_price = p.copy()
        due = np.flatnonzero(self.inst_active & (self.inst_kind != PERP) & (self.inst_expiry_t <= self.now))
        if due.size:  # Derive/Deribit cash settlement at intrinsic value against the settlement (oracle) price
            s, strike = p[self.inst_und[due]], self.inst_strike[due]
            payoff = np.where(self.inst_kind[due] == CALL, np.maximum(s - strike, 0.0), np.maximum(strike - s, 0.0))
            self.cash += self.qty[:, due] @ payoff
            oi = np.maximum(self.qty[:, due], 0.0).sum(axis=0)
            self.qty[:, due] = 0.0
            self.inst_active[due] = False
            for j, d in enumerate(due):
                self.env.emit(
                    Generic(
                        self.env.clock.block,
                        self.id,
                        "option_expired",
                        {
                            "instrument": int(d),
                            "settle_price": float(s[j]),
                            "payoff_per_unit": float(payoff[j]),
                            "open_interest": float(oi[j]),
                        },
                    )
                )
        self._touch()
        liq.advance_auctions(self)

    # --- metrics -------------------------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        eq = self.equity()
        p = self.prices()
        long_units = _long_units(self.qty, self._entries())
        first = self.surfaces[self.underlyings[0]]
        mm_pnl = 0.0 if self.mm_row is None else float(eq[self.mm_row] - self.net_deposits[self.mm_row])
        return {
            "collateral_usd": float(self.cash.sum() + (self.spot @ p).sum()),
            "debt_usd": float(np.maximum(-eq, 0.0).sum()),
            "bad_debt_usd": self.bad_debt_usd,
            "accounts_unhealthy": int(self.liquidatable().size),
            "liquidations": self.n_liquidations,
            "liquidation_volume_usd": self.liquidation_volume_usd,
            "security_module_usd": self.env.ledger.balance(self.security_module, self.quote),
            "atm_vol": first.atm_vol,
            "open_interest_usd": float(long_units @ p[self.inst_und]) if long_units.size else 0.0,
            "mm_pnl_usd": mm_pnl,
            "auctions_ongoing": int(np.isfinite(self.auction_start).sum()),
        }

    def exposures(self) -> list[Exposure]:
        """Holds the deposited quote and spot tokens (and the security module's quote)."""
        led = self.env.ledger
        out = [Exposure("holds", self.quote, led.balance(self.id, self.quote))]
        sm = led.balance(self.security_module, self.quote)
        if sm > 0:
            out.append(Exposure("holds", self.quote, sm, counterparty=self.security_module))
        for u in self.underlyings:
            amt = led.balance(self.id, u)
            if amt > 0:
                out.append(Exposure("holds", u, amt))
        return out

    # --- liquidation and controller entry points (defined in protocols/options_liquidation.py) -------
    start_auction = liq.start_auction
    auction_state = liq.auction_state
    auction_discount = liq.auction_discount
    bid = liq.bid
    liquidate_partial = liq.liquidate_partial
    set_controlled = liq.set_controlled
    controller_close = liq.controller_close
    settle_out = liq.settle_out
    settle_in = liq.settle_in
    write_off = liq.write_off
