"""A cross-venue margin coordinator: one controller (Euler v2 EVC pattern) over a principal's rows on several venues.

docs/margin-methods.md 9 (design anchors): the coordinator is the controller of each enrolled row (the venues' own
liquidation is disabled on them), judges solvency over all of a principal's rows with one portfolio-margin model
(full revaluation across venues, §0/§2), grants part of the netting benefit as a SPAN-style inter-commodity
credit (§6.1: credit rate × offsetting requirement), and adds per-venue contingencies (§9 recommendation):

    equity     = Σ_v equity_v                                        (each venue at its own oracle)
    credit     = credit_rate · max(Σ_v MM_v − MM_pm, 0)              (SPAN inter-commodity credit, §6.1)
    MM         = max(Σ_v MM_v − credit, max_v MM_v) + contingencies  (never below the worst silo; design choice)
    IM         = max(im_factor · (MM − contingencies), max_v IM_v) + contingencies           (design choice)
    contingencies (USD, per principal):
      oracle     = m · Σ_v Σ_u |Δ_{v,u}| · |P_{v,u} − mean_v' P_{v',u}|  (Derive-style oracle contingency, §9)
      latency    = z · Σ_v Σ_u N_{v,u} · σ_u · sqrt(latency_v / year)    (normal VaR over the venue's liquidation
                                                                          latency as MPOR, sqrt-time; §6.4)
      settlement = settlement_haircut · credit                        (bridge/settlement haircut, §9; design choice)
    health     = equity / MM

Liquidation closes venues in `liquidation_order`, `close_fraction` of each venue's starting position per step
(so 1/close_fraction steps flatten it), until health ≥ target_health or nothing is left to close; then negative
venue equity is covered from the other venues' settleable cash (`settle_out` → `settle_in`), and what is left is
written off per venue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field, field_validator

from defistress.protocols.base import Env, Exposure, MarginProtocol, Revert
from defistress.protocols.bounds import PARAMS_CONFIG, Float
from defistress.protocols.events import Event, Generic
from defistress.protocols.margin.catalog import check_model_name, get_model
from defistress.protocols.margin.portfolio import SECONDS_PER_YEAR, MarketState, Portfolio
from defistress.protocols.margin.scenario_pm import ScenarioPM
from defistress.protocols.options_margin_cache import row_separable
from defistress.protocols.venue_adaptors import VenueAdaptor, adaptor_for

DUST_USD = 1e-6  # USD below which a settlement or a negative equity is float rounding
SCREEN_MARGIN = 1e-9  # relative room between equity and the bound on MM before a principal counts as healthy


class CoordinatorParams(BaseModel):
    """Model, netting credit, contingencies and liquidation settings of the margin coordinator."""

    model_config = PARAMS_CONFIG

    # Derive PMRM_2 (docs/margin-methods.md 2): full revaluation of SPOT, PERP and options, cash may be negative
    model: str = Field(
        "derive-pm2", description="a name of protocols.margin.catalog.list_models() [published model: Derive PM2]"
    )
    model_overrides: dict = Field(default_factory=dict, description="keyword overrides of the model's params")
    # design choice; SPAN inter-commodity credit rates are per pair, e.g. 55% Corn/Soybeans (docs/margin-methods.md 6.1)
    credit_rate: Float = Field(
        0.8, ge=0, le=1, description="share of the netting benefit granted, fraction [assumption]"
    )
    latency_s: dict[str, Annotated[Float, Field(ge=0, le=30 * 86400)]] = Field(
        default_factory=dict, description="per venue liquidation latency, seconds (0..30 days) [assumption]"
    )
    # design choice: about five 12-second blocks for a keeper to see an account and land its liquidation
    default_latency_s: Float = Field(
        60.0, ge=0, le=30 * 86400, description="latency of venues not in latency_s, seconds [assumption]"
    )
    # N^-1(0.99) = 2.326: 99% one-tailed, EMIR RTS 153/2013 confidence for non-OTC (docs/margin-methods.md 6.4)
    latency_z: Float = Field(
        2.326, gt=0, le=10, description="quantile multiplier of the latency contingency [published: EMIR 99%]"
    )
    oracle_divergence: Float = Field(
        1.0, ge=0, le=100, description="multiplier of the oracle contingency (unitless) [assumption]"
    )
    # design choice (docs/margin-methods.md 9: bridge/settlement risk as a collateral haircut)
    settlement_haircut: Float = Field(
        0.02, ge=0, le=1, description="share of the credit added as contingency [assumption]"
    )
    liquidation_order: list[str] = Field(default_factory=list, description="venue ids; default the order given")
    # aave-v3 LiquidationLogic DEFAULT_LIQUIDATION_CLOSE_FACTOR 0.5
    close_fraction: Float = Field(
        0.5, gt=0, le=1, description="share of each venue's position closed per step [published: Aave v3 0.5]"
    )
    # design choice: below Aave's 5% ETH bonus and Derive PM2's 5% LIQUIDATION_PENALTY (docs/margin-methods.md 2, 5.1)
    penalty: Float = Field(0.02, ge=0, lt=0.5, description="liquidator's reward, share of value closed [assumption]")
    target_health: Float = Field(
        1.05, ge=1, le=10, description="liquidation stops at this health (unitless) [assumption]"
    )
    # Lyra PMRM v1 imFactor 1.25 (docs/margin-methods.md 0 (e))
    im_factor: Float = Field(
        1.25, ge=1, le=10, description="IM = factor x MM for the combined part [published: Lyra PMRM imFactor]"
    )
    vol: dict[str, Annotated[Float, Field(gt=0, le=5)]] = Field(
        default_factory=dict, description="annualised vol per underlying, 0 < vol <= 5 (no surface) [assumption]"
    )
    # same ETH-like assumption as protocols/vol.py VolSurfaceParams.atm_vol
    default_vol: Float = Field(
        0.65, gt=0, le=5, description="vol of underlyings not in vol and with no surface [assumption]"
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        return check_model_name(v, "model")

    @field_validator("latency_s")
    @classmethod
    def _latencies(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if not (math.isfinite(s) and 0 <= s <= 30 * 86400):
                raise ValueError(f"latency_s[{k!r}]={s}: allowed 0..2592000 seconds")
        return v

    @field_validator("vol")
    @classmethod
    def _vols(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if not (math.isfinite(s) and 0 < s <= 5):
                raise ValueError(f"vol[{k!r}]={s}: allowed 0 < vol <= 5 (annualised)")
        return v


@dataclass
class CoordinatedResult:
    """Per-principal (P,) USD figures of the coordinator's margin (see the module docstring for formulas)."""

    equity_usd: np.ndarray
    silo_im_usd: np.ndarray  # Σ over venues of the venues' own IM
    silo_mm_usd: np.ndarray  # Σ over venues of the venues' own MM
    silo_mm_max_usd: np.ndarray  # worst single venue MM
    pm_mm_usd: np.ndarray  # portfolio-margin MM of all positions together
    credit_usd: np.ndarray
    contingency_usd: np.ndarray
    contingencies: dict[str, np.ndarray]  # oracle, latency, settlement
    mm_usd: np.ndarray
    im_usd: np.ndarray
    health: np.ndarray
    silo_shortfall_usd: np.ndarray  # Σ over venues of max(venue MM − venue equity, 0): silo rules


@dataclass
class _Book:
    """Per-principal (n,) USD figures of a batch of principals that need no portfolio-margin valuation, with the
    market state and the venue rows (venue id, adaptor, positions in the batch, venue rows) that valuation reads."""

    mkt: MarketState
    equity_usd: np.ndarray
    silo_im_usd: np.ndarray
    silo_mm_usd: np.ndarray
    silo_mm_max_usd: np.ndarray
    silo_im_max_usd: np.ndarray
    silo_shortfall_usd: np.ndarray
    oracle_usd: np.ndarray
    latency_usd: np.ndarray
    venues: list[tuple[str, VenueAdaptor, np.ndarray, np.ndarray]]


class MarginCoordinator(MarginProtocol):
    """Controller of principals' rows on several venues: cross-venue margin, liquidation and settlement."""

    def __init__(self, params: CoordinatorParams, venues: dict[str, object], env: Env, id: str = "coordinator"):
        if not venues:
            raise ValueError("venues: allowed a non-empty dict of venue id -> venue")
        self.params = params
        self.env = env
        self.id = id
        self.adaptors: dict[str, VenueAdaptor] = {k: adaptor_for(v) for k, v in venues.items()}
        order = list(params.liquidation_order) or list(venues)
        unknown = [v for v in order if v not in venues]
        if unknown:
            raise ValueError(f"liquidation_order: unknown venue ids {unknown}; allowed {list(venues)}")
        self.order = order + [v for v in venues if v not in order]
        unknown = [v for v in params.latency_s if v not in venues]
        if unknown:
            raise ValueError(f"latency_s: unknown venue ids {unknown}; allowed {list(venues)}")
        self.latency_s = {v: float(params.latency_s.get(v, params.default_latency_s)) for v in venues}
        self.model = get_model(params.model, **params.model_overrides)
        unds: dict[str, None] = {}
        for a in self.adaptors.values():
            for u in a.underlyings():
                unds.setdefault(u, None)
        self.underlyings: tuple[str, ...] = tuple(unds)
        self.principals: list[str] = []
        self.rows: dict[str, np.ndarray] = {v: np.zeros(0, dtype=np.int64) for v in venues}
        self.liquidators: dict[str, dict[str, int | None]] = {}
        self.settlement_holder = f"{id}:settlement"
        self.n_liquidations = 0
        self.settled_usd = 0.0
        self.bad_debt_usd = 0.0

    # --- enrolment ----------------------------------------------------------------------------------
    @property
    def n_accounts(self) -> int:
        return len(self.principals)

    def enroll(self, principal: str, rows: dict[str, int]) -> int:
        """Put one principal's rows under the coordinator (marks them controlled); returns its index."""
        return int(self.enroll_many([principal], {v: np.array([r]) for v, r in rows.items()})[0])

    def enroll_many(self, principals: list[str], rows: dict[str, np.ndarray]) -> np.ndarray:
        """Enroll many principals; `rows[venue]` is (P,) venue rows, -1 where the principal has none."""
        n = len(principals)
        unknown = [v for v in rows if v not in self.adaptors]
        if unknown:
            raise Revert(f"{self.id}: rows: unknown venue ids {unknown}; allowed {list(self.adaptors)}")
        new = {}
        for v in self.adaptors:
            r = np.asarray(rows.get(v, np.full(n, -1)), dtype=np.int64).ravel()
            if r.shape != (n,):
                raise Revert(f"{self.id}: rows[{v!r}] has {r.size} entries for {n} principals")
            live = r[r >= 0]
            n_rows = self.adaptors[v].venue.n_accounts
            if live.size and live.max() >= n_rows:
                raise Revert(f"{self.id}: rows[{v!r}]: allowed -1 or 0..{n_rows - 1}")
            taken = np.isin(live, self.rows[v]) | (np.unique(live, return_counts=True)[1].max(initial=1) > 1)
            if np.any(taken):
                raise Revert(f"{self.id}: rows[{v!r}]: a row may have one controller only (EVC)")
            new[v] = r
        for v, r in new.items():
            if np.any(r >= 0):
                self.adaptors[v].set_controlled(r[r >= 0], True)
            self.rows[v] = np.concatenate([self.rows[v], r])
        start = len(self.principals)
        self.principals.extend(str(p) for p in principals)
        return np.arange(start, start + n)

    def register_liquidator(self, holder: str, rows: dict[str, int | None]) -> None:
        """The rows (per venue) into which `holder` takes closed positions (None: the venue needs none)."""
        unknown = [v for v in rows if v not in self.adaptors]
        if unknown:
            raise Revert(f"{self.id}: rows: unknown venue ids {unknown}; allowed {list(self.adaptors)}")
        self.liquidators[holder] = {v: (None if r is None else int(r)) for v, r in rows.items()}

    # --- margin ---------------------------------------------------------------------------------------
    def _prices(self) -> tuple[dict[str, dict[str, float]], np.ndarray]:
        """Oracle prices per venue and the mean over venues per underlying (NaN where none prices it)."""
        pv = {v: a.oracle_prices() for v, a in self.adaptors.items()}
        mean = np.array(
            [
                np.mean([p[u] for p in pv.values() if u in p]) if any(u in p for p in pv.values()) else np.nan
                for u in self.underlyings
            ]
        )
        return pv, mean

    def market_state(self, mean: np.ndarray | None = None) -> MarketState:
        """PM market state: spot = mean of venue oracle prices; vol = a venue's surface (options venue) if one
        has it, else `params.vol`, else `params.default_vol`."""
        if mean is None:
            mean = self._prices()[1]
        vol: dict = {}
        for a in self.adaptors.values():
            ms = getattr(a.venue, "market_state", None)
            if callable(ms):
                for u, s in ms().vol.items():
                    vol.setdefault(u, s)
        spot = {}
        for k, u in enumerate(self.underlyings):
            spot[u] = float(mean[k]) if np.isfinite(mean[k]) else 0.0
            vol.setdefault(u, self.params.vol.get(u, self.params.default_vol))
        return MarketState(spot=spot, vol=vol)

    def vol_of(self, mkt: MarketState) -> np.ndarray:
        """(U,) annualised vol per underlying for the latency contingency: a surface's current ATM vol, or the
        flat vol of the market state."""
        out = []
        for u in self.underlyings:
            v = mkt.vol[u]
            out.append(float(v.atm_vol) if hasattr(v, "atm_vol") else float(v))
        return np.array(out)

    def requirements(self, principals: np.ndarray | None = None, with_pm: bool = True) -> CoordinatedResult:
        """Coordinated equity, requirements and health of all principals (or the given indices).

        with_pm=False computes the silo figures only (equity, silo IM/MM, silo shortfall): the portfolio-margin
        figures (pm_mm, credit, contingencies, mm, im, health) are NaN, and the combined book is not valued."""
        idx = np.arange(self.n_accounts) if principals is None else np.atleast_1d(np.asarray(principals, np.int64))
        if not with_pm:
            return self._silo_only(idx)
        book = self._book(idx)
        return self._coordinated(book, self._pm_mm(book))

    def _book(self, idx: np.ndarray) -> _Book:
        """The figures of principals `idx` that need no portfolio-margin valuation: market state, silo sums and the
        oracle and latency contingencies (USD), with the venue rows the valuation reads."""
        n, unds, pr = idx.size, self.underlyings, self.params
        orc, lat = np.zeros(n), np.zeros(n)
        pv, mean = self._prices()
        mkt = self.market_state(mean)
        sigma = self.vol_of(mkt)
        eq, s_im, s_mm, s_mm_max, s_im_max, s_gap, venues = self._silo_sums(idx)
        for v, a, sel, rr in venues:
            # oracle contingency: |net delta| x |venue price - mean price| (Derive-style, docs/margin-methods.md 9)
            px = np.array([pv[v].get(u, np.nan) for u in unds])
            dev = np.nan_to_num(np.abs(px - mean), nan=0.0)
            orc[sel] += pr.oracle_divergence * (np.abs(a.net_delta(rr, unds)) @ dev)
            # latency contingency: z·N·σ·sqrt(latency/year), normal VaR over the MPOR (docs/margin-methods.md 6.4)
            scale = pr.latency_z * math.sqrt(self.latency_s[v] / SECONDS_PER_YEAR)
            lat[sel] += scale * (a.gross_notional_usd(rr, unds) @ sigma)
        return _Book(mkt, eq, s_im, s_mm, s_mm_max, s_im_max, s_gap, orc, lat, venues)

    def _pm_mm(self, book: _Book) -> np.ndarray:
        """(n,) portfolio-margin MM (USD) of the book's principals: their rows on every venue valued together."""
        n = book.equity_usd.size
        if not n:
            return np.zeros(0)
        parts = [(sel, a.portfolio(rr, self.underlyings)) for _, a, sel, rr in book.venues]
        return self.model.requirements(self._combine(parts, n), book.mkt).mm

    def _coordinated(self, book: _Book, pm_mm: np.ndarray) -> CoordinatedResult:
        """The coordinated figures from the book's silo sums and contingencies and its portfolio-margin MM (USD;
        elementwise, so a principal's figures are the same bits in any batch)."""
        pr = self.params
        s_mm, eq = book.silo_mm_usd, book.equity_usd
        credit = pr.credit_rate * np.maximum(s_mm - pm_mm, 0.0)  # SPAN inter-commodity credit (6.1)
        settle = pr.settlement_haircut * credit  # settlement haircut (design choice)
        cont = book.oracle_usd + book.latency_usd + settle
        combined = np.maximum(s_mm - credit, book.silo_mm_max_usd)
        mm = combined + cont
        im = np.maximum(pr.im_factor * combined, book.silo_im_max_usd) + cont
        with np.errstate(divide="ignore", invalid="ignore"):
            health = np.where(mm > 0, eq / mm, np.where(eq >= 0, np.inf, -np.inf))
        return CoordinatedResult(
            eq,
            book.silo_im_usd,
            s_mm,
            book.silo_mm_max_usd,
            pm_mm,
            credit,
            cont,
            {"oracle": book.oracle_usd, "latency": book.latency_usd, "settlement": settle},
            mm,
            im,
            health,
            book.silo_shortfall_usd,
        )

    def _silo_sums(self, idx: np.ndarray) -> tuple:
        """Per principal of `idx`, in venue order: equity, silo IM and MM sums, the largest single-venue MM and IM,
        the silo MM shortfall (USD); and each venue holding some of them as (venue id, adaptor, positions in idx,
        venue rows)."""
        n = idx.size
        eq, s_im, s_mm, s_mm_max, s_im_max, s_gap = (np.zeros(n) for _ in range(6))
        venues = []
        for v, a in self.adaptors.items():
            r = self.rows[v][idx]
            sel = np.flatnonzero(r >= 0)
            if sel.size == 0:
                continue
            rr = r[sel]
            im, mm = a.silo_requirements(rr)
            eq_v = a.equity_usd(rr)
            eq[sel] += eq_v
            s_gap[sel] += np.maximum(mm - eq_v, 0.0)
            s_im[sel] += im
            s_mm[sel] += mm
            s_mm_max[sel] = np.maximum(s_mm_max[sel], mm)
            s_im_max[sel] = np.maximum(s_im_max[sel], im)
            venues.append((v, a, sel, rr))
        return eq, s_im, s_mm, s_mm_max, s_im_max, s_gap, venues

    def _silo_only(self, idx: np.ndarray) -> CoordinatedResult:
        """The silo figures of `requirements` (same arithmetic, same order); portfolio-margin figures NaN."""
        n = idx.size
        eq, s_im, s_mm, s_mm_max, _, s_gap, _ = self._silo_sums(idx)
        nan = np.full(n, np.nan)
        return CoordinatedResult(
            eq,
            s_im,
            s_mm,
            s_mm_max,
            nan,
            nan.copy(),
            nan.copy(),
            {"oracle": nan.copy(), "latency": nan.copy(), "settlement": nan.copy()},
            nan.copy(),
            nan.copy(),
            nan.copy(),
            s_gap,
        )

    def _combine(self, parts: list[tuple[np.ndarray, Portfolio]], n: int) -> Portfolio:
        """One portfolio with one account per principal, from the venues' portfolios."""
        cash = np.zeros(n)
        cols: dict[str, list] = {k: [] for k in ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price")}
        for sel, pf in parts:
            np.add.at(cash, sel, pf.cash)
            cols["account"].append(sel[pf.account])
            for k in ("kind", "und", "qty", "strike", "expiry_s", "entry_price"):
                cols[k].append(getattr(pf, k))
        cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
        return Portfolio(
            n,
            self.underlyings,
            cat["account"].astype(np.int64),
            cat["kind"].astype(np.int8),
            cat["und"].astype(np.int64),
            cat["qty"],
            cat["strike"],
            cat["expiry_s"],
            cat["entry_price"],
            cash,
        )

    def health(self) -> np.ndarray:
        """Coordinated equity / MM per principal (inf with nothing at risk)."""
        return self.requirements().health

    def screened_health(self) -> np.ndarray:
        """`health()` of every principal whose health may be below 1 (the same bits), +inf for the others: those
        whose coordinated MM is provably at most their equity whatever their portfolio-margin MM (`_surely_healthy`).

        Who is below 1, and how far, is all a keeper needs; the silo sums and contingencies of every principal are
        cheap, the portfolio-margin valuation of the combined book is not, so only the principals the bound cannot
        clear are valued, as a batch of their own (`_screens`: the model values each account alone)."""
        n = self.n_accounts
        book = self._book(np.arange(n))
        maybe = ~self._surely_healthy(book) if self._screens() else np.ones(n, dtype=bool)
        if maybe.all():
            return self._coordinated(book, self._pm_mm(book)).health
        health = np.full(n, np.inf)
        pick = np.flatnonzero(maybe)
        if pick.size:
            sub = _take(book, pick)
            health[pick] = self._coordinated(sub, self._pm_mm(sub)).health
        return health

    def _screens(self) -> bool:
        """Whether `screened_health` may leave principals unvalued: the model is the scenario-grid model, which
        values each account on its own (a principal's MM is the same bits in any batch: row_separable) and never
        gives an MM below 0 (every term is a loss -min(PnL, 0), a roll, static or floor charge of |quantity| x
        price x a parameter validated >= 0, at spot >= 0: MarketState, ScenarioPMParams, ContingencyParams)."""
        return type(self.model) is ScenarioPM and row_separable(self.model, len(self.underlyings))

    def _surely_healthy(self, book: _Book) -> np.ndarray:
        """(n,) True where health >= 1 for any portfolio-margin MM in [0, inf] or NaN (USD): then credit is at most
        credit_rate x max(silo MM, 0), so MM is at most max(silo MM, worst venue MM) + oracle + latency +
        settlement_haircut x that credit. Rounding is monotone, so this bound, computed in the order of
        `_coordinated`, holds bit for bit; equity must still beat it by SCREEN_MARGIN (relative) and DUST_USD. A NaN
        MM gives health +inf at equity >= 0. Rows with a non-finite figure are never cleared."""
        pr = self.params
        s_mm, s_max, eq = book.silo_mm_usd, book.silo_mm_max_usd, book.equity_usd
        with np.errstate(over="ignore", invalid="ignore"):
            credit_max = pr.credit_rate * np.maximum(s_mm, 0.0)
            mm_max = np.maximum(s_mm, s_max) + (book.oracle_usd + book.latency_usd + pr.settlement_haircut * credit_max)
            finite = np.isfinite(eq) & np.isfinite(s_mm) & np.isfinite(s_max) & np.isfinite(mm_max)
            finite &= np.isfinite(book.oracle_usd) & np.isfinite(book.latency_usd)
            return finite & (eq >= 0.0) & (eq >= mm_max + SCREEN_MARGIN * np.abs(mm_max) + DUST_USD)

    def liquidatable(self) -> np.ndarray:
        return np.flatnonzero(self.health() < 1.0)

    # --- liquidation ----------------------------------------------------------------------------------
    def liquidate(self, principal: int, liquidator: str) -> list[Event]:
        """Close the principal's venues in order until health ≥ target_health or nothing is closable, settle
        negative venue equity from the other venues, write off the rest. Reverts if the principal is healthy."""
        i = int(principal)
        if not 0 <= i < self.n_accounts:
            raise Revert(f"{self.id}: no principal #{i}")
        h0 = float(self.requirements(np.array([i])).health[0])
        if not h0 < 1.0:
            raise Revert(f"{self.id}: principal #{i} is healthy (health {h0:.6g} >= 1)")
        pr = self.params
        lrows = self.liquidators.get(liquidator, {})
        events: list[Event] = []
        failures: dict[str, str] = {}
        health = h0
        for v in self.order:
            a, row = self.adaptors[v], int(self.rows[v][i])
            if row < 0:
                continue
            share = 1.0  # share of the venue's starting position still open
            while health < pr.target_health and share > 0 and a.closable(row):
                f = min(pr.close_fraction / share, 1.0)
                try:
                    ev = a.close(row, f, liquidator, lrows.get(v), pr.penalty)
                except Revert as exc:
                    failures[v] = str(exc)
                    break
                if ev is None:
                    break
                events.append(ev)
                share = 0.0 if f >= 1.0 else share * (1.0 - f)
                health = float(self.requirements(np.array([i])).health[0])
            if health >= pr.target_health:
                break
        settled = self._settle(i)
        bad = 0.0
        n_before = len(self.env.events)
        for v in self.order:
            row = int(self.rows[v][i])
            if row >= 0:
                bad += self.adaptors[v].write_off(row)
        events.extend(self.env.events[n_before:])
        health_after = float(self.requirements(np.array([i])).health[0])
        self.n_liquidations += 1
        self.settled_usd += settled
        self.bad_debt_usd += bad
        events.append(
            self.env.emit(
                Generic(
                    self.env.clock.block,
                    self.id,
                    "coordinator_liquidation",
                    {
                        "principal": self.principals[i],
                        "index": i,
                        "liquidator": liquidator,
                        "health_before": h0,
                        "health_after": health_after,
                        "closes": sum(1 for e in events if e.kind == "liquidation"),
                        "settled_usd": settled,
                        "bad_debt_usd": bad,
                        "failures": dict(failures),
                    },
                )
            )
        )
        return events

    def _settle(self, i: int) -> float:
        """Cover each venue's negative equity from the other venues' settleable cash, token by token through
        the settlement holder; unused tokens go back to the paying row. Returns USD settled."""
        led, hold = self.env.ledger, self.settlement_holder
        total = 0.0
        for v in self.order:
            a, row = self.adaptors[v], int(self.rows[v][i])
            if row < 0:
                continue
            need = -float(a.equity_usd(np.array([row]))[0])
            for w in self.order:
                if need <= DUST_USD:
                    break
                b, src = self.adaptors[w], int(self.rows[w][i])
                if w == v or src < 0:
                    continue
                for token in (t for t in b.settlement_tokens() if t in a.settlement_tokens()):
                    if need <= DUST_USD:
                        break
                    ask = min(need, float(b.settleable_usd(np.array([src]))[0]), a.accept_usd(row, token))
                    if not ask > DUST_USD:
                        continue
                    before = led.balance(hold, token)
                    b.settle_out(src, ask, hold, token)
                    got = led.balance(hold, token) - before
                    if not got > 0:
                        continue
                    paid = a.settle_in(row, got * a.token_price(token), hold, token)
                    rest = led.balance(hold, token) - before
                    if rest > 0:
                        b.refund(src, token, rest, hold)
                    need -= float(paid)
                    total += float(paid)
        return total

    # --- protocol surface ---------------------------------------------------------------------------------
    def accrue(self, dt_seconds: float) -> None:
        """Nothing accrues in the coordinator itself: each venue accrues on its own."""
        if not dt_seconds >= 0:
            raise ValueError(f"dt_seconds must be >= 0, got {dt_seconds}")

    def metrics(self) -> dict[str, float]:
        r = self.requirements()
        out = {
            "principals": self.n_accounts,
            "equity_usd": float(r.equity_usd.sum()),
            "silo_im_usd": float(r.silo_im_usd.sum()),
            "silo_mm_usd": float(r.silo_mm_usd.sum()),
            "im_usd": float(r.im_usd.sum()),
            "mm_usd": float(r.mm_usd.sum()),
            "netting_credit_usd": float(r.credit_usd.sum()),
            "contingency_usd": float(r.contingency_usd.sum()),
            "accounts_unhealthy": int(np.sum(r.health < 1.0)),
            "liquidations": self.n_liquidations,
            "settled_usd": self.settled_usd,
            "bad_debt_usd": self.bad_debt_usd,
        }
        for k, c in r.contingencies.items():
            out[f"contingency_{k}_usd"] = float(c.sum())
        return out

    def exposures(self) -> list[Exposure]:
        """The equity of controlled rows on each venue (USD), with the venue as counterparty."""
        out = []
        for v, a in self.adaptors.items():
            rows = self.rows[v][self.rows[v] >= 0]
            if rows.size:
                out.append(Exposure("receivable", "USD", float(a.equity_usd(rows).sum()), counterparty=v))
        return out


def _take(book: _Book, pick: np.ndarray) -> _Book:
    """The book of the principals at positions `pick` (ascending) of `book`: each figure gathered, each venue's
    rows kept in their order (as `_silo_sums` of those principals lists them), venues with none of them dropped."""
    pos = np.full(book.equity_usd.size, -1, dtype=np.int64)
    pos[pick] = np.arange(pick.size)
    venues = []
    for v, a, sel, rr in book.venues:
        keep = pos[sel] >= 0
        if keep.any():
            venues.append((v, a, pos[sel[keep]], rr[keep]))
    return _Book(
        book.mkt,
        book.equity_usd[pick],
        book.silo_im_usd[pick],
        book.silo_mm_usd[pick],
        book.silo_mm_max_usd[pick],
        book.silo_im_max_usd[pick],
        book.silo_shortfall_usd[pick],
        book.oracle_usd[pick],
        book.latency_usd[pick],
        venues,
    )
