"""Per-block figures (one row per block) collected from state and the block's events, never from agents'
private state: prices (reference, exogenous, oracle, pool), gas, per-protocol state and liquidations,
and the mark-to-market PnL of liquidators and keepers.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from defistress.protocols.events import AuctionKicked, Liquidated

#: agent kinds whose ledger value is tracked as "liquidator PnL"
LIQUIDATING_KINDS = ("Liquidator", "Keeper", "PerpLiquidator", "LlammaLiquidator", "CollateralBuyer", "CometAbsorber")


class Recorder:
    """Collects one dict per block; `frame()` turns them into the timeseries table."""

    def __init__(self, model):
        self.model = model
        self.rows: list[dict] = []
        self.liquidators = sorted({a.holder for a in model.actors if type(a).__name__ in LIQUIDATING_KINDS})
        self.start_value = {h: self._value(h) for h in self.liquidators}
        self.health_before = {pid: _finite(p.health()) for pid, p in model.protocols.items()}
        #: more columns per block: callables model -> {column: value} (e.g. sim.regime.regime_columns)
        self.sources: list = []
        #: protocols whose liquidation is an auction kick -> USD per unit of their tab (the stablecoin's price)
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
        led, mkt = self.model.env.ledger, self.model.market
        total = 0.0
        for token, book in led.balances.items():
            bal = book.get(holder, 0.0)
            if bal and token in mkt.index:
                total += bal * mkt.price(token)
        return total

    def record(self, events: list) -> None:
        m = self.model
        st = m.block_stats
        row = {
            "block": m.env.clock.block,
            "time_s": m.env.clock.seconds,
            "base_fee_gwei": m.gas.base_fee_gwei,
            "gas_limit": m.gas.limit,
            "gas_used": st.gas_used,
            "agent_gas": st.agent_gas,
            "txs_included": st.included,
            "txs_reverted": st.reverted,
            "txs_dropped": st.dropped,
        }
        for sym, p, x in zip(
            m.market.symbols, m.market.prices, m.market.exogenous[min(m.env.clock.block, m.n_blocks - 1)]
        ):
            row[f"ref_{sym}_usd"] = float(p)
            row[f"exog_{sym}_usd"] = float(x)
        for oid, o in m.oracles.items():  # a ratio feed (stETH/ETH) is named by its unit
            row[f"oracle_{oid}_{getattr(o, 'denomination', 'USD').lower()}"] = float(o.price)
        for vid, pool in m.pools.items():
            row[f"pool_{vid}_price"] = float(pool.price())
        liq_n: dict[str, int] = defaultdict(int)
        liq_usd: dict[str, float] = defaultdict(float)
        for ev in events:
            if isinstance(ev, Liquidated):
                liq_n[ev.source] += 1
                liq_usd[ev.source] += ev.debt_repaid_usd
            elif isinstance(ev, AuctionKicked) and ev.source in self.kick_liquidates:
                # a CDP liquidates by kicking an auction (Maker dss dog.bark / cat.bite): volume = its tab, USD
                liq_n[ev.source] += 1
                liq_usd[ev.source] += ev.tab * self.kick_liquidates[ev.source]()
        for pid, proto in m.protocols.items():
            for k, v in proto.metrics().items():
                row[f"{pid}_{k}"] = float(v)
            row[f"{pid}_liquidations"] = liq_n.get(pid, 0)
            row[f"{pid}_liquidation_volume_usd"] = liq_usd.get(pid, 0.0)
        row["liquidator_pnl_usd"] = sum(self._value(h) - self.start_value[h] for h in self.liquidators)
        for source in self.sources:
            row.update(source(m))
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def health_after(self) -> dict[str, np.ndarray]:
        return {pid: _finite(p.health()) for pid, p in self.model.protocols.items()}


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)].copy()
