"""Shared pieces of the option-venue populations: strip parameters, instrument reads, sizing and batched trades.

A strip is one or two option legs per account (an OTM put, an OTM call, or both: a strangle; distance 0 gives
a straddle) on one underlying, listed on the venue at a strike grid and an expiry drawn per account. Greeks are
Black-76 (protocols/margin/black76.py) at the oracle spot with the venue surface's vol, as the venue marks them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from defistress.agents.traders import _Strict
from defistress.protocols.bounds import Float, Share
from defistress.protocols.margin import black76
from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.portfolio import CALL, KIND_NAMES, PUT, Portfolio

SECONDS_PER_DAY = 86_400.0
STYLES = ("put", "call", "strangle")


class StripParams(_Strict):
    """Which options an account trades (behavioural defaults are modelling assumptions, not venue values)."""

    style_weights: dict[str, Share] = Field(
        {"put": 0.5, "call": 0.2, "strangle": 0.3},
        description="share of accounts per style: put | call | strangle (a put and a call), sum 1 "
        "[assumption: put selling dominates]",
    )
    otm_low: Float = Field(
        0.05, ge=0, lt=1, description="OTM distance, share of spot: strike = S(1 -/+ d) [assumption]"
    )
    otm_high: Float = Field(
        0.25, ge=0, lt=1, description="OTM distance upper bound (uniform draw), share of spot [assumption]"
    )
    expiry_days: dict[float, Share] = Field(
        {7.0: 0.4, 30.0: 0.4, 90.0: 0.2},
        description="expiry (days from set-up, (0, 3650]) -> share of accounts, sum 1 "
        "[assumption: weekly / monthly / quarterly]",
    )
    strike_step_share: Float = Field(
        0.025, gt=0, le=0.5, description="strike grid step, share of spot at set-up [assumption]"
    )

    @model_validator(mode="after")
    def _check(self):
        w = self.style_weights
        bad = [k for k in w if k not in STYLES]
        if bad or not w or min(w.values()) < 0 or not np.isclose(sum(w.values()), 1.0):
            raise ValueError(f"style_weights: keys in {STYLES}, shares >= 0 summing to 1; got {w}")
        e = self.expiry_days
        if not e or min(e) <= 0 or max(e) > 3650 or min(e.values()) < 0 or not np.isclose(sum(e.values()), 1.0):
            raise ValueError(f"expiry_days: days in (0, 3650] with shares >= 0 summing to 1; got {e}")
        if self.otm_high < self.otm_low:
            raise ValueError(f"otm_high ({self.otm_high}) must be >= otm_low ({self.otm_low})")
        return self


@dataclass
class Legs:
    """Option legs of a population (L legs): which local account, which venue instrument, one unit each."""

    local: np.ndarray  # (L,) int64 index into the population's rows
    instrument: np.ndarray  # (L,) int64 venue instrument id
    kind: np.ndarray  # (L,) int8 CALL / PUT (protocols.margin.portfolio codes)
    strike: np.ndarray  # (L,) USD
    expiry_t: np.ndarray  # (L,) absolute chain time of expiry, seconds


def instrument_arrays(venue) -> dict[str, np.ndarray]:
    """The venue's instrument table as arrays: und (str), kind (str), strike (USD), expiry_t (s), index = id.

    Read from the venue's instrument arrays when it has them (no DataFrame built per block), else from its
    `instruments` table."""
    und, kind = getattr(venue, "inst_und", None), getattr(venue, "inst_kind", None)
    if und is None or kind is None:
        tab = venue.instruments
        return {c: np.asarray(tab[c]) for c in ("und", "kind", "strike", "expiry_t")}
    names = np.array(venue.underlyings, dtype=object)
    kinds = np.array(KIND_NAMES, dtype=object)
    return {
        "und": names[np.asarray(und, dtype=np.int64)],
        "kind": kinds[np.asarray(kind, dtype=np.int64)],
        "strike": np.array(venue.inst_strike, dtype=np.float64),
        "expiry_t": np.array(venue.inst_expiry_t, dtype=np.float64),
    }


def draw_strip(venue, underlying: str, strip: StripParams, rng: np.random.Generator, n: int, spot_usd: float) -> Legs:
    """Draw each account's style, OTM distance and expiry; list the instruments; return the legs."""
    styles = list(strip.style_weights)
    w = np.array([strip.style_weights[s] for s in styles])
    style = np.array(styles)[rng.choice(len(styles), size=n, p=w / w.sum())]
    dist = rng.uniform(strip.otm_low, strip.otm_high, n)
    days = np.array(list(strip.expiry_days), dtype=np.float64)
    dw = np.array(list(strip.expiry_days.values()))
    expiry_s = days[rng.choice(days.size, size=n, p=dw / dw.sum())] * SECONDS_PER_DAY
    step = strip.strike_step_share * spot_usd
    put_k = np.maximum(np.round(spot_usd * (1.0 - dist) / step), 1.0) * step
    call_k = np.maximum(np.round(spot_usd * (1.0 + dist) / step), 1.0) * step
    has_put = style != "call"
    has_call = style != "put"
    local = np.concatenate([np.flatnonzero(has_put), np.flatnonzero(has_call)])
    kind = np.concatenate([np.full(has_put.sum(), PUT, np.int8), np.full(has_call.sum(), CALL, np.int8)])
    strike = np.concatenate([put_k[has_put], call_k[has_call]])
    exp = np.concatenate([expiry_s[has_put], expiry_s[has_call]])
    return list_legs(venue, underlying, local, kind, strike, exp)


def list_legs(venue, underlying: str, local, kind, strike, expiry_s) -> Legs:
    """List each distinct (kind, strike, expiry) on the venue (idempotent there) and return the legs."""
    local, kind = np.asarray(local, np.int64), np.asarray(kind, np.int8)
    strike, expiry_s = np.asarray(strike, np.float64), np.asarray(expiry_s, np.float64)
    keys = np.stack([kind.astype(np.float64), strike, expiry_s], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    ids = np.array(
        [
            venue.list_instrument(underlying, "call" if int(k) == CALL else "put", float(s), float(e))
            for k, s, e in uniq
        ],
        dtype=np.int64,
    )
    instrument = ids[inv.reshape(-1)]
    expiry_t = instrument_arrays(venue)["expiry_t"].astype(np.float64)[instrument] if instrument.size else strike
    return Legs(local, instrument, kind, strike, expiry_t)


def unit_margin_usd(venue, underlying: str, legs: Legs, n: int, side: float, qty_per_leg=None) -> np.ndarray:
    """Initial margin (USD) per account of holding its legs at `side` x qty (default one unit), no cash.

    Uses the venue's margin model on a hypothetical portfolio (contract: OptionsVenueParams.margin_model).
    """
    q = np.ones(legs.local.size) if qty_per_leg is None else np.asarray(qty_per_leg, np.float64)[legs.local]
    now = venue.env.clock.seconds
    pf = Portfolio(
        n_accounts=n,
        underlyings=(underlying,),
        account=legs.local,
        kind=legs.kind,
        und=np.zeros(legs.local.size, np.int64),
        qty=side * q,
        strike=legs.strike,
        expiry_s=np.maximum(legs.expiry_t - now, 0.0),
        entry_price=np.zeros(legs.local.size),
        cash=np.zeros(n),
    )
    return np.asarray(margin_model(venue).requirements(pf, venue.market_state()).im, dtype=np.float64)


def margin_model(venue):
    """The venue's margin model object (its `model`, else built from its params' registry name)."""
    model = getattr(venue, "model", None)
    return model if model is not None else get_model(venue.params.margin_model, **dict(venue.params.margin_overrides))


def spot_usd(venue, underlying: str) -> float:
    """Oracle spot of `underlying` as the venue sees it (USD per unit)."""
    return float(venue.market_state().spot[underlying])


def trade_legs(
    venue, holder: str, rows: np.ndarray, instrument: np.ndarray, qty: np.ndarray, check_margin: bool = True
) -> float:
    """Trade each (row, instrument, signed qty) against the market maker at mark, one venue call per instrument.

    Returns the absolute premium notional traded (USD at mark)."""
    marks = venue.mark_prices()
    traded = 0.0
    live = qty != 0
    for inst in np.unique(instrument[live]):
        sel = live & (instrument == inst)
        venue.trade(holder, rows[sel], int(inst), qty[sel], check_margin=check_margin)
        traded += float(np.abs(qty[sel]).sum() * marks[int(inst)])
    return traded


def _options_of(venue, underlying: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ins = instrument_arrays(venue)
    return ins, np.isin(ins["kind"], ("call", "put")) & (ins["und"] == underlying)


def _option_mask(venue, underlying: str) -> np.ndarray:
    """(I,) bool: the instrument is a call or a put on `underlying`; from the venue's integer codes when it has them
    (the same mask as `_options_of`, without building the string table)."""
    kind, und = getattr(venue, "inst_kind", None), getattr(venue, "inst_und", None)
    names = getattr(venue, "underlyings", None)
    if kind is None or und is None or names is None:
        return _options_of(venue, underlying)[1]
    u = list(names).index(underlying) if underlying in names else -1
    kind = np.asarray(kind)
    return ((kind == CALL) | (kind == PUT)) & (np.asarray(und, dtype=np.int64) == u)


def option_contracts(venue, rows: np.ndarray, underlying: str) -> np.ndarray:
    """Gross option contracts (sum of |qty|, underlying units) per row on `underlying`."""
    opt = _option_mask(venue, underlying)
    qty = np.asarray(venue.qty)[rows]
    return np.abs(qty[:, opt[: qty.shape[1]]]).sum(axis=1)


#: per venue and underlying: (market key, (I,) deltas per unit), reused while the venue's market key is the same
_DELTAS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _unit_deltas(venue, underlying: str, k: int) -> np.ndarray:
    """(k,) delta per unit held of the first k instruments: Black-76 for options on `underlying`, 1 for its perps."""
    ins, opt = _options_of(venue, underlying)
    opt = opt[:k]
    d = np.where((ins["kind"][:k] == "perp") & (ins["und"][:k] == underlying), 1.0, 0.0)
    if opt.any():
        f = spot_usd(venue, underlying)
        strike = ins["strike"][:k][opt].astype(np.float64)
        tau = np.maximum(ins["expiry_t"][:k][opt].astype(np.float64) - venue.env.clock.seconds, 0.0)
        vol = np.asarray(venue.surfaces[underlying].vol(strike, tau, np.full(strike.size, f)), dtype=np.float64)
        d[opt] = black76.delta(f, strike, black76.annualise(tau), vol, ins["kind"][:k][opt] == "call")
    return d


def option_deltas(venue, rows: np.ndarray, underlying: str) -> np.ndarray:
    """Net delta (underlying units) of each row's book on `underlying`: Black-76 option deltas plus perps.

    The per-unit deltas depend only on the market (chain time, spot, the vol surface, the instrument table): a
    venue with a `market_key` (protocols/options.py) computes them once per market state."""
    qty = np.asarray(venue.qty)[rows]
    k = qty.shape[1]
    key_of = getattr(venue, "market_key", None)
    if not callable(key_of) or k != len(getattr(venue, "inst_kind", ())):
        return qty @ _unit_deltas(venue, underlying, k)
    key = key_of()
    per_venue = _DELTAS.setdefault(venue, {})
    hit = per_venue.get(underlying)
    if hit is None or not key.same(hit[0]):
        hit = (key, _unit_deltas(venue, underlying, k))
        per_venue[underlying] = hit
    return qty @ hit[1]
