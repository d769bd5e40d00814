"""Per-block figures (one row per block) collected from state and the block's events, never from agents'
private state: prices (reference, exogenous, oracle, pool), gas, per-protocol state and liquidations,
and the mark-to-market PnL of liquidators and keepers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from defistress.protocols.events import AuctionKicked, Liquidated

#: blocks beyond the longest agent latency over which each account's unhealthy streak is counted at the end of the
#: run (sim/analysis/unhealthy.py: an account unhealthy for at most latency + 1 blocks could not be acted on yet)
STREAK_MARGIN = 2
#: agent kinds whose ledger value is tracked as "liquidator PnL"
LIQUIDATING_KINDS = ("Liquidator", "Keeper", "PerpLiquidator", "LlammaLiquidator", "CollateralBuyer", "CometAbsorber")


#: the liquidation counts of a block without events (read-only use)
_NONE: dict = {}


class Recorder:
    """Collects one dict per block; `frame()` turns them into the timeseries table."""

    def __init__(self, model):
        self.model = model
        self.rows: list[dict] = []
        self.liquidators = sorted({a.holder for a in model.actors if type(a).__name__ in LIQUIDATING_KINDS})
        self.start_value = {h: self._value(h) for h in self.liquidators}
        #: health factor of every account (row) at the start, inf where there is no debt
        self.health_before = {pid: _all(p.health()) for pid, p in model.protocols.items()}
        #: what each protocol held, issued and owed at the start, and the reference prices then (USD per token)
        self.exposures_before = {pid: list(p.exposures()) for pid, p in model.protocols.items()}
        self.prices_before = dict(model.market.as_dict())
        #: per protocol and account, consecutive blocks unhealthy up to the last recorded block, counted over the
        #: run's last `STREAK_MARGIN` + longest-latency blocks only (a bounded cost at the end)
        self.unhealthy_streak: dict[str, np.ndarray] = {}
        self.streak_from = model.n_blocks - (STREAK_MARGIN + _longest_latency(model.scenario))
        #: more columns per block: callables model -> {column: value} (e.g. sim.regime.regime_columns)
        self.sources: list = []
        #: protocols whose liquidation is an auction kick -> USD per unit of their tab (the stablecoin's price)
        #: column names by what they name (an asset, oracle, pool or protocol), formatted once, not every block
        self._columns: dict[tuple, Any] = {}
        self.kick_liquidates = {
            pid: self._price_of(getattr(p, "stablecoin", None))
            for pid, p in model.protocols.items()
            if model.protocol_specs[pid].kind == "cdp"
        }

    def track(self, actors) -> None:
        """Liquidating agents that joined during the run (governance add_agent): their PnL counts from now."""
        for a in actors:
            h = getattr(a, "holder", None)
            if type(a).__name__ in LIQUIDATING_KINDS and h is not None and h not in self.start_value:
                self.liquidators.append(h)
                self.start_value[h] = self._value(h)

    def _price_of(self, token: str | None):
        mkt = self.model.market
        return (lambda: mkt.price(token)) if token in mkt.index else (lambda: 1.0)

    def _value(self, holder: str) -> float:
        """USD value of a holder's ledger balances at reference prices."""
        return self._values([holder])[0]

    def _values(self, holders: list[str]) -> list[float]:
        """USD value of each holder's ledger balances at reference prices, each summed in the ledger's token order
        (one pass over the ledger for every holder: the liquidators' PnL is recorded every block)."""
        mkt = self.model.market
        price = dict(zip(mkt.symbols, mkt.prices.tolist()))  # USD per token, the values `Market.price` returns
        totals = [0.0] * len(holders)
        for token, book in self.model.env.ledger.balances.items():
            p = price.get(token)
            if p is None:
                continue
            for i, h in enumerate(holders):
                bal = book.get(h, 0.0)
                if bal:
                    totals[i] += bal * p
        return totals

    def record(self, events: list) -> None:
        m = self.model
        st = m.block_stats
        clock, gas, mkt = m.env.clock, m.gas, m.market
        block = clock.block
        row = {
            "block": block,
            "time_s": clock.seconds,
            "base_fee_gwei": gas.base_fee_gwei,
            "gas_limit": gas.limit,
            "gas_used": st.gas_used,
            "agent_gas": st.agent_gas,
            "txs_included": st.included,
            "txs_reverted": st.reverted,
            "txs_dropped": st.dropped,
        }
        # column names are formatted once each (kept in `_columns`); `tolist()` gives the floats `float(x)` gives
        col = self._columns
        exog = mkt.exogenous[min(block, m.n_blocks - 1)]
        for sym, p, x in zip(mkt.symbols, mkt.prices.tolist(), exog.tolist()):
            names = col.get(("asset", sym))
            if names is None:
                names = col[("asset", sym)] = (f"ref_{sym}_usd", f"exog_{sym}_usd")
            row[names[0]] = p
            row[names[1]] = x
        for oid, o in m.oracles.items():  # a ratio feed (stETH/ETH) is named by its unit
            unit = getattr(o, "denomination", "USD")
            name = col.get(("oracle", oid, unit))
            if name is None:
                name = col[("oracle", oid, unit)] = f"oracle_{oid}_{unit.lower()}"
            row[name] = float(o.price)
        for vid, pool in m.pools.items():
            name = col.get(("pool", vid))
            if name is None:
                name = col[("pool", vid)] = f"pool_{vid}_price"
            row[name] = float(pool.price())
        liq_n: dict[str, int] = _NONE
        liq_usd: dict[str, float] = _NONE
        if events:
            liq_n, liq_usd = defaultdict(int), defaultdict(float)
            for ev in events:
                if isinstance(ev, Liquidated):
                    liq_n[ev.source] += 1
                    liq_usd[ev.source] += ev.debt_repaid_usd
                elif isinstance(ev, AuctionKicked) and ev.source in self.kick_liquidates:
                    # a CDP liquidates by kicking an auction (Maker dss dog.bark / cat.bite): volume = its tab, USD
                    liq_n[ev.source] += 1
                    liq_usd[ev.source] += ev.tab * self.kick_liquidates[ev.source]()
        for pid, proto in m.protocols.items():
            names = col.get(("protocol", pid))
            if names is None:  # the metrics' columns by metric name, then the liquidation count and volume
                names = col[("protocol", pid)] = ({}, f"{pid}_liquidations", f"{pid}_liquidation_volume_usd")
            metric_names: dict[str, str] = names[0]
            for k, v in proto.metrics().items():
                name = metric_names.get(k)
                if name is None:
                    name = metric_names[k] = f"{pid}_{k}"
                row[name] = float(v)
            row[names[1]] = liq_n.get(pid, 0)
            row[names[2]] = liq_usd.get(pid, 0.0)
        start = self.start_value
        row["liquidator_pnl_usd"] = sum(v - start[h] for h, v in zip(self.liquidators, self._values(self.liquidators)))
        if block >= self.streak_from:
            self._count_streaks()
        for source in self.sources:
            row.update(source(m))
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def health_after(self) -> dict[str, np.ndarray]:
        """Health factor of every account (row) now, inf where there is no debt."""
        return {pid: _all(p.health()) for pid, p in self.model.protocols.items()}

    def _count_streaks(self) -> None:
        for pid, p in self.model.protocols.items():
            bad = np.asarray(p.health()) < 1.0
            s = self.unhealthy_streak.get(pid)
            if s is None or s.size != bad.size:  # rows may be added during the run: they start at zero
                grown = np.zeros(bad.size, dtype=np.int64)
                if s is not None:
                    grown[: min(s.size, bad.size)] = s[: bad.size]
                s = grown
            self.unhealthy_streak[pid] = np.where(bad, s + 1, 0)


def _all(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=float, copy=True)


def _longest_latency(scenario) -> int:
    """Longest `latency_blocks` of any agent of the scenario (a keeper's lives in its `params`), blocks."""
    out = 0
    for a in scenario.agents:
        lat = getattr(a, "latency_blocks", None)
        params = getattr(a, "params", None)
        if lat is None and isinstance(params, dict):
            lat = params.get("latency_blocks")
        out = max(out, int(lat or 0))
    return out
