"""One adaptor per venue kind, so that the margin coordinator reads and controls every venue the same way.

An adaptor wraps a venue (lending market, perp DEX, options venue) and answers, for some of its rows: equity and
the venue's own (silo) requirements in USD, the positions as a `protocols.margin.portfolio.Portfolio`, net delta
and notional per underlying, and it forwards the controller entry points (Euler v2 EVC pattern,
docs/margin-methods.md 9.1): `set_controlled`, `close`, `settle_out`, `settle_in`, `write_off`.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol
from typing import runtime_checkable

import numpy as np

from defistress.protocols.base import MarginProtocol, Revert
from defistress.protocols.events import Event
from defistress.protocols.lending import LendingMarket
from defistress.protocols.margin.black76 import delta as b76_delta
from defistress.protocols.margin.portfolio import CALL, PERP, SECONDS_PER_YEAR, SPOT, MarketState, Portfolio, is_option
from defistress.protocols.perps import PerpDex

DUST_TOKENS = 1e-12  # token units below which a balance counts as empty (float rounding)


@runtime_checkable
class VenueAdaptor(TypingProtocol):
    """What the margin coordinator needs from a venue; rows are the venue's account indices (int64 arrays)."""

    venue: MarginProtocol
    venue_id: str

    def underlyings(self) -> tuple[str, ...]: ...
    def equity_usd(self, rows: np.ndarray) -> np.ndarray: ...
    def silo_requirements(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def portfolio(self, rows: np.ndarray, underlyings: tuple[str, ...]) -> Portfolio: ...
    def oracle_prices(self) -> dict[str, float]: ...
    def gross_notional_usd(self, rows: np.ndarray, underlyings: tuple[str, ...] | None = None) -> np.ndarray: ...
    def net_delta(self, rows: np.ndarray, underlyings: tuple[str, ...]) -> np.ndarray: ...
    def settlement_tokens(self) -> tuple[str, ...]: ...
    def token_price(self, token: str) -> float: ...
    def settleable_usd(self, rows: np.ndarray) -> np.ndarray: ...
    def accept_usd(self, row: int, token: str) -> float: ...
    def set_controlled(self, rows, flag: bool = True) -> None: ...
    def close(
        self, row: int, fraction: float, liquidator: str, liquidator_row: int | None = None, penalty: float = 0.0
    ) -> Event | None: ...
    def closable(self, row: int) -> bool: ...
    def is_flat(self, row: int) -> bool: ...
    def settle_out(self, row: int, amount_usd: float, to_holder: str, token: str | None = None) -> float: ...
    def settle_in(self, row: int, amount_usd: float, from_holder: str, token: str | None = None) -> float: ...
    def refund(self, row: int, token: str, amount_tokens: float, from_holder: str) -> None: ...
    def write_off(self, row: int) -> float: ...
    def open_liquidator_row(self, holder: str, capital_usd: float) -> int | None: ...


def _rows(rows) -> np.ndarray:
    return np.atleast_1d(np.asarray(rows, dtype=np.int64))


def _und_index(names: tuple[str, ...] | list[str], underlyings: tuple[str, ...]) -> np.ndarray:
    """Column of each name in `underlyings` (-1 when absent)."""
    pos = {u: k for k, u in enumerate(underlyings)}
    return np.array([pos.get(n, -1) for n in names], dtype=np.int64)


class _Forwarding:
    """What every adaptor hands unchanged to its venue's controller entry points (Euler EVC style)."""

    def __init__(self, venue):
        self.venue = venue
        self.venue_id = venue.id

    def set_controlled(self, rows, flag: bool = True) -> None:
        self.venue.set_controlled(rows, flag)

    def close(self, row, fraction, liquidator, liquidator_row=None, penalty=0.0):
        return self.venue.controller_close(int(row), fraction, liquidator, liquidator_row, penalty)

    def closable(self, row: int) -> bool:
        """Anything left to close (venues where a close needs more than a position override this)."""
        return not self.is_flat(row)

    def is_flat(self, row: int) -> bool:
        """No position left for `row` on the venue (each venue's adaptor defines it)."""
        raise NotImplementedError

    def settle_out(self, row, amount_usd, to_holder, token=None) -> float:
        return self.venue.settle_out(int(row), amount_usd, to_holder, token)

    def settle_in(self, row, amount_usd, from_holder, token=None) -> float:
        return self.venue.settle_in(int(row), amount_usd, from_holder, token)

    def write_off(self, row: int) -> float:
        return float(self.venue.write_off(int(row)))


class LendingAdaptor(_Forwarding):
    """Aave-like `LendingMarket`: risky collateral minus debt of the same asset is SPOT; stable collateral minus
    stable debt (the market's `stable_assets`) is cash; silo IM = Σ coll·P·(1−LTV), MM = Σ coll·P·(1−LT), so that
    equity ≥ MM ⟺ HF ≥ 1 (aave-v3 GenericLogic: HF = Σ coll·P·LT / Σ debt·P)."""

    def _stable_mask(self) -> np.ndarray:
        return np.array([a in self.venue.stable_assets for a in self.venue.assets], dtype=bool)

    def underlyings(self) -> tuple[str, ...]:
        return tuple(a for a, s in zip(self.venue.assets, self._stable_mask()) if not s)

    def _tokens(self, rows) -> tuple[np.ndarray, np.ndarray]:
        v, r = self.venue, _rows(rows)
        return v.coll_scaled[r] * v.liq_index, v.debt_scaled[r] * v.borrow_index

    def equity_usd(self, rows) -> np.ndarray:
        coll, debt = self.venue.account_usd()
        r = _rows(rows)
        return coll[r] - debt[r]

    def silo_requirements(self, rows) -> tuple[np.ndarray, np.ndarray]:
        coll, _ = self._tokens(rows)
        usd = coll * self.venue.prices()
        return usd @ (1.0 - self.venue.ltv), usd @ (1.0 - self.venue.lt)

    def portfolio(self, rows, underlyings: tuple[str, ...]) -> Portfolio:
        r = _rows(rows)
        coll, debt = self._tokens(r)
        p, stable = self.venue.prices(), self._stable_mask()
        net = coll - debt
        cash = net[:, stable] @ p[stable]
        cols = np.flatnonzero(~stable)
        uidx = _und_index([self.venue.assets[c] for c in cols], underlyings)
        if np.any(uidx < 0):
            missing = [self.venue.assets[c] for c, k in zip(cols, uidx) if k < 0]
            raise ValueError(f"underlyings: {self.venue_id} needs {missing}; given {underlyings}")
        q = net[:, cols]
        acc, k = np.nonzero(q != 0)
        n = acc.size
        z = np.zeros(n)
        return Portfolio(r.size, underlyings, acc, np.full(n, SPOT, np.int8), uidx[k], q[acc, k], z, z, z, cash)

    def oracle_prices(self) -> dict[str, float]:
        return dict(zip(self.venue.assets, self.venue.prices().tolist()))

    def net_delta(self, rows, underlyings: tuple[str, ...]) -> np.ndarray:
        """(R, U) underlying units: collateral − debt of each risky asset."""
        coll, debt = self._tokens(rows)
        out = np.zeros((coll.shape[0], len(underlyings)))
        stable = self._stable_mask()
        for c, k in zip(range(len(self.venue.assets)), _und_index(self.venue.assets, underlyings)):
            if k >= 0 and not stable[c]:
                out[:, k] += coll[:, c] - debt[:, c]
        return out

    def gross_notional_usd(self, rows, underlyings: tuple[str, ...] | None = None) -> np.ndarray:
        """|collateral − debt| · P per risky asset, USD (netted within an asset: it is liquidated as one);
        (R,) summed, or (R, U) per underlying."""
        unds = self.underlyings() if underlyings is None else underlyings
        p = self.oracle_prices()
        per = np.abs(self.net_delta(rows, unds)) * np.array([p.get(u, 0.0) for u in unds])
        return per.sum(axis=1) if underlyings is None else per

    def settlement_tokens(self) -> tuple[str, ...]:
        return tuple(a for a in self.venue.assets if a in self.venue.stable_assets)

    def token_price(self, token: str) -> float:
        return float(self.venue.prices()[self.venue.idx[token]])

    def settleable_usd(self, rows) -> np.ndarray:
        coll, _ = self._tokens(rows)
        p, stable = self.venue.prices(), self._stable_mask()
        return np.minimum(coll[:, stable] @ p[stable], np.maximum(self.equity_usd(rows), 0.0))

    def accept_usd(self, row: int, token: str) -> float:
        """Stable debt in `token` the row can repay, USD (settle_in repays debt only)."""
        _, debt = self._tokens([row])
        j = self.venue.idx.get(token)
        return 0.0 if j is None else float(debt[0, j] * self.venue.prices()[j])

    def is_flat(self, row: int) -> bool:
        """No debt left."""
        _, debt = self._tokens([row])
        return not np.any(debt > DUST_TOKENS)

    def closable(self, row: int) -> bool:
        """Debt and collateral left (a close repays debt against collateral)."""
        coll, debt = self._tokens([row])
        return bool(np.any(debt > DUST_TOKENS) and np.any(coll > DUST_TOKENS))

    def refund(self, row: int, token: str, amount_tokens: float, from_holder: str) -> None:
        """Give tokens back to the row as collateral (unused part of a settlement)."""
        if amount_tokens > 0:
            self.venue.supply(from_holder, np.array([int(row)]), token, np.array([amount_tokens]))

    def open_liquidator_row(self, holder: str, capital_usd: float) -> int | None:
        """The lending liquidator repays from its wallet: no row needed."""
        return None


class PerpsAdaptor(_Forwarding):
    """dYdX-like `PerpDex`: positions are PERP with entry price entry_notional/size, collateral plus unsettled
    funding is cash; silo IM/MM are the DEX's TIMR/TMMR (dYdX liquidity_tier.go)."""

    def underlyings(self) -> tuple[str, ...]:
        return tuple(self.venue.assets)

    def equity_usd(self, rows) -> np.ndarray:
        return self.venue.equity()[_rows(rows)]

    def silo_requirements(self, rows) -> tuple[np.ndarray, np.ndarray]:
        r = _rows(rows)
        return self.venue.initial_requirement()[r], self.venue.maintenance_requirement()[r]

    def portfolio(self, rows, underlyings: tuple[str, ...]) -> Portfolio:
        v, r = self.venue, _rows(rows)
        uidx = _und_index(v.assets, underlyings)
        size = v.size[r]
        acc, m = np.nonzero(size != 0)
        if np.any(uidx[m] < 0):
            raise ValueError(f"underlyings: {self.venue_id} needs {v.assets}; given {underlyings}")
        q = size[acc, m]
        entry = v.entry_notional[r][acc, m] / q
        n = acc.size
        z = np.zeros(n)
        cash = v.collateral[r] + v.funding_owed()[r]
        return Portfolio(r.size, underlyings, acc, np.full(n, PERP, np.int8), uidx[m], q, z, z, entry, cash)

    def oracle_prices(self) -> dict[str, float]:
        return dict(zip(self.venue.assets, self.venue.prices().tolist()))

    def net_delta(self, rows, underlyings: tuple[str, ...]) -> np.ndarray:
        size = self.venue.size[_rows(rows)]
        out = np.zeros((size.shape[0], len(underlyings)))
        for m, k in enumerate(_und_index(self.venue.assets, underlyings)):
            if k >= 0:
                out[:, k] += size[:, m]
        return out

    def gross_notional_usd(self, rows, underlyings: tuple[str, ...] | None = None) -> np.ndarray:
        unds = self.underlyings() if underlyings is None else underlyings
        p = self.oracle_prices()
        per = np.abs(self.net_delta(rows, unds)) * np.array([p.get(u, 0.0) for u in unds])
        return per.sum(axis=1) if underlyings is None else per

    def settlement_tokens(self) -> tuple[str, ...]:
        return (self.venue.quote,)

    def token_price(self, token: str) -> float:
        return 1.0  # the DEX values its quote at 1 USD (dYdX margins USDC at par)

    def settleable_usd(self, rows) -> np.ndarray:
        r = _rows(rows)
        return np.maximum(self.venue.equity()[r] - self.venue.maintenance_requirement()[r], 0.0)

    def accept_usd(self, row: int, token: str) -> float:
        return np.inf if token == self.venue.quote else 0.0

    def is_flat(self, row: int) -> bool:
        return not np.any(self.venue.size[int(row)] != 0)

    def refund(self, row: int, token: str, amount_tokens: float, from_holder: str) -> None:
        if amount_tokens > 0:
            self.venue.settle_in(int(row), amount_tokens, from_holder, token)

    def open_liquidator_row(self, holder: str, capital_usd: float) -> int | None:
        own = self.venue.accounts_of(holder)
        if own.size:
            return int(own[0])
        return int(self.venue.open_accounts(holder, [capital_usd], None)[0])


class OptionsAdaptor(_Forwarding):
    """`OptionsVenue` (issue-5 contract): its portfolio and margin model are used as they are; net delta of
    options is the Black-76 delta (protocols/margin/black76.py) at the venue's own surfaces."""

    def _quote(self) -> str:
        return self.venue.params.quote

    def underlyings(self) -> tuple[str, ...]:
        return tuple(self.venue.underlyings)

    def equity_usd(self, rows) -> np.ndarray:
        return np.asarray(self.venue.equity(), float)[_rows(rows)]

    def silo_requirements(self, rows) -> tuple[np.ndarray, np.ndarray]:
        r = self.venue.margin(_rows(rows))
        return np.asarray(r.im, float), np.asarray(r.mm, float)

    def portfolio(self, rows, underlyings: tuple[str, ...]) -> Portfolio:
        """The rows' portfolio over `underlyings`; the last one is kept while the venue's state and market are
        unchanged (a coordinator asks for it three times per valuation: positions, net delta, notional)."""
        r = _rows(rows)
        v = self.venue
        key = (r.tobytes(), tuple(underlyings), v._version)
        mk = v.market_key()
        last = getattr(self, "_last_pf", None)
        if last is not None and last[0] == key and mk.same(last[1]):
            return last[2]
        pf = self._portfolio(r, underlyings, mk)
        self._last_pf = (key, mk, pf)
        return pf

    def _portfolio(self, rows, underlyings: tuple[str, ...], mk=None) -> Portfolio:
        """The venue's portfolio of `rows` over `underlyings` (`mk`: the venue's market key now, when held): the
        venue's own when it lists the same underlyings in the same order (the remap would copy every field as it
        is), else with each position's underlying remapped."""
        pf = self.venue.portfolio(_rows(rows), mk)
        if pf.underlyings == tuple(underlyings):
            return pf
        remap = _und_index(pf.underlyings, underlyings)
        if pf.n_positions and np.any(remap[pf.und] < 0):
            raise ValueError(f"underlyings: {self.venue_id} needs {pf.underlyings}; given {underlyings}")
        und = remap[pf.und] if pf.n_positions else pf.und
        return Portfolio(
            pf.n_accounts,
            underlyings,
            pf.account,
            pf.kind,
            und,
            pf.qty,
            pf.strike,
            pf.expiry_s,
            pf.entry_price,
            pf.cash,
        )

    def oracle_prices(self) -> dict[str, float]:
        return dict(zip(self.underlyings(), np.asarray(self.venue.prices(), float).tolist()))

    def _position_delta(self, pf: Portfolio, mkt: MarketState) -> np.ndarray:
        """Spot delta per position, underlying units: qty for delta-1, qty·∂V/∂F·F/S for options (Black-76)."""
        d = pf.qty.copy()
        opt = is_option(pf.kind)
        if opt.any():
            u = pf.und[opt]
            t = pf.expiry_s[opt]
            fwd = mkt.forward(u, t, pf.underlyings)
            spot = mkt.spot_array(pf.underlyings)[u]
            sig = mkt.vols(pf.underlyings, u, pf.strike[opt], t, fwd)
            disc = np.exp(-mkt.rate_array(pf.underlyings)[u] * t / SECONDS_PER_YEAR)
            dv = b76_delta(fwd, pf.strike[opt], t / SECONDS_PER_YEAR, sig, pf.kind[opt] == CALL, disc)
            d[opt] = pf.qty[opt] * dv * np.where(spot > 0, fwd / np.where(spot > 0, spot, 1.0), 1.0)
        return d

    def net_delta(self, rows, underlyings: tuple[str, ...]) -> np.ndarray:
        r = _rows(rows)
        pf = self.portfolio(r, underlyings)
        out = np.zeros((r.size, len(underlyings)))
        if pf.n_positions:
            np.add.at(out, (pf.account, pf.und), self._position_delta(pf, self.venue.market_state()))
        return out

    def gross_notional_usd(self, rows, underlyings: tuple[str, ...] | None = None) -> np.ndarray:
        """Σ |qty| · spot per underlying (options counted at their underlying notional), USD."""
        unds = self.underlyings() if underlyings is None else underlyings
        r = _rows(rows)
        pf = self.portfolio(r, unds)
        p = self.oracle_prices()
        px = np.array([p.get(u, 0.0) for u in unds])
        out = np.zeros((r.size, len(unds)))
        if pf.n_positions:
            np.add.at(out, (pf.account, pf.und), np.abs(pf.qty) * px[pf.und])
        return out.sum(axis=1) if underlyings is None else out

    def settlement_tokens(self) -> tuple[str, ...]:
        return (self._quote(),)

    def token_price(self, token: str) -> float:
        return 1.0  # the venue's cash is quote valued at 1 USD

    def settleable_usd(self, rows) -> np.ndarray:
        """Positive cash, but never so much that the row falls below its own maintenance margin."""
        r = _rows(rows)
        cash = np.asarray(self.venue.cash, float)[r]
        return np.maximum(np.minimum(cash, self.equity_usd(r) - self.silo_requirements(r)[1]), 0.0)

    def accept_usd(self, row: int, token: str) -> float:
        return np.inf if token == self._quote() else 0.0

    def close(self, row, fraction, liquidator, liquidator_row=None, penalty=0.0):
        if liquidator_row is None:  # the venue needs a row: the liquidator's first one
            own = np.asarray(self.venue.accounts_of(liquidator))
            if own.size == 0:
                raise Revert(f"{self.venue_id}: liquidator {liquidator} has no row (open one first)")
            liquidator_row = int(own[0])
        return self.venue.controller_close(int(row), fraction, liquidator, liquidator_row, penalty)

    def is_flat(self, row: int) -> bool:
        v, a = self.venue, int(row)
        return not (np.any(np.asarray(v.qty)[a] != 0) or np.any(np.asarray(v.spot)[a] != 0))

    def settle_out(self, row, amount_usd, to_holder, token=None) -> float:
        if token not in (None, self._quote()):
            return 0.0
        return float(self.venue.settle_out(int(row), amount_usd, to_holder))

    def settle_in(self, row, amount_usd, from_holder, token=None) -> float:
        if token not in (None, self._quote()):
            return 0.0
        x = min(float(amount_usd), self.venue.env.ledger.balance(from_holder, self._quote()))
        if not x > 0:
            return 0.0
        out = self.venue.settle_in(int(row), x, from_holder)
        return float(x if out is None else out)

    def refund(self, row: int, token: str, amount_tokens: float, from_holder: str) -> None:
        if amount_tokens > 0:
            self.venue.settle_in(int(row), amount_tokens, from_holder)

    def open_liquidator_row(self, holder: str, capital_usd: float) -> int | None:
        own = np.asarray(self.venue.accounts_of(holder))
        if own.size:
            return int(own[0])
        return int(np.asarray(self.venue.open_accounts(holder, [capital_usd]))[0])


def adaptor_for(venue) -> VenueAdaptor:
    """The adaptor of a venue, chosen by its class (LendingMarket, PerpDex, OptionsVenue)."""
    if isinstance(venue, LendingMarket):
        return LendingAdaptor(venue)
    if isinstance(venue, PerpDex):
        return PerpsAdaptor(venue)
    if type(venue).__name__ == "OptionsVenue" or hasattr(venue, "list_instrument"):
        return OptionsAdaptor(venue)
    raise TypeError(f"venue: no adaptor for {type(venue).__name__}; allowed LendingMarket, PerpDex, OptionsVenue")
