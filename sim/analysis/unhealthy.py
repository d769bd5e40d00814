"""Why accounts are still unhealthy when the run ends: one cause per account, derived from state and events.

An account is unhealthy when its health is below 1 at its protocol's oracle prices. Each one gets the first of
these causes that holds at the end of the run (every test reads protocol state, pool state, the ledger, the gas
market, the scenario's agent settings or the block history, never an agent's private memory):

- `controlled`: an external controller (the margin coordinator, Euler v2 EVC style) owns its liquidation and the
  venue refuses it (`protocols.base.ControlledRows`);
- `no_liquidator`: no liquidating agent serves the protocol (the graph's `acts_on` edges), or its keepers never kick;
- `no_collateral`: debt with no collateral left, so there is nothing to seize;
- `recent`: liquidatable for no more blocks than the serving liquidators' latency plus one (health can change after
  agents decide within a block), so nobody could act yet;
- `protocol_limit`: the protocol itself refuses the liquidation now (its revert reason is counted: a CDP's
  `Hole`/`hole` auction limit, a dusty partial auction, a perp DEX's per-block notional limit);
- `oracle_lag`: no liquidator could profit at the oracle's price, but would at the reference price: the oracle
  values the collateral above the market (stale or lagging), so what the protocol lets a liquidator seize sells for
  less than the debt repaid;
- `unprofitable`: no liquidator could profit even at reference prices: the bonus no longer covers the collateral's
  fall (or a perp position needs deleveraging, which pays the liquidator nothing);
- `capital`: the serving liquidators lack the debt asset (or free margin) to repay, with no flash loans;
- `gas`: the base fee plus the agents' tip is above the most they will pay per gas unit (CDP keepers' ceiling);
- `dust`: the liquidation's profit before gas is positive but does not pay gas at the last base fee plus the
  liquidators' minimum profit (a CDP keeper's tip and chip do not pay the bark's gas);
- `queued`: profitable, funded and old enough, yet not reached by the end: the liquidators' transactions per block
  and the block space ran out before the run did;
- `unclassified`: protocol kinds whose liquidation economics are not modelled here (options, LLAMMA, Comet, peg
  keepers); their accounts are counted and named by kind, never guessed.

The checks replay, at the end's prices, the same previews the liquidator agents run each block
(`agents/liquidator.py`, `agents/perp_liquidator.py`, `agents/keeper.py`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from defistress.protocols.base import Revert
from defistress.sim.engine.network import node

#: causes in the order they are tested (the first that holds is the account's cause)
CAUSES = (
    "controlled",
    "no_liquidator",
    "no_collateral",
    "recent",
    "protocol_limit",
    "oracle_lag",
    "unprofitable",
    "capital",
    "gas",
    "dust",
    "queued",
    "unclassified",
)
#: a short explanation of each cause, for the report
CAUSE_TEXT = {
    "controlled": "an external controller owns its liquidation; the venue refuses it",
    "no_liquidator": "no liquidator or keeper serves this protocol (or keepers never kick)",
    "no_collateral": "debt with no collateral left: nothing to seize",
    "recent": "liquidatable for no longer than the liquidators' latency when the run ended",
    "protocol_limit": "the protocol refuses the liquidation now (auction limit, dust rule, per-block cap)",
    "oracle_lag": "the oracle prices the collateral above the market: the seizure sells for less than the debt "
    "repaid (it would pay at the reference price)",
    "unprofitable": "no liquidator could profit even at reference prices: the bonus does not cover the fall",
    "capital": "the liquidators' capital (or free margin) in the debt asset is exhausted",
    "gas": "the gas price is above what the liquidators or keepers will pay (their ceiling)",
    "dust": "the profit does not pay gas at the last base fee plus the bots' minimum profit",
    "queued": "profitable, funded and old enough, but not reached before the run ended (transactions per block, "
    "block space)",
    "unclassified": "a protocol kind whose liquidation economics are not modelled here",
}
#: scenario agent kinds that liquidate (their `acts_on` edges say which protocols they serve)
LIQUIDATING_AGENT_KINDS = ("liquidator", "keeper", "llamma_liquidator", "collateral_buyer", "absorber")
#: protocol kinds classified beyond the generic causes
LENDING_KINDS = ("lending", "compound-v2")
GWEI = 1e-9


def serving_agents(model, pid: str) -> list:
    """Scenario specs of the liquidating agents that act on protocol `pid`."""
    target = node("protocol", pid)
    out = []
    for a in model.scenario.agents:
        if a.kind in LIQUIDATING_AGENT_KINDS and model.graph.has_edge(node("agent", a.id), target, key="acts_on"):
            out.append(a)
    return out


def holders_of(spec) -> list[str]:
    """Ledger holders of an agent spec with `count` copies (agents built as id, or id-0, id-1, ...)."""
    n = int(getattr(spec, "count", 1))
    return [spec.id] if n == 1 else [f"{spec.id}-{k}" for k in range(n)]


@contextlib.contextmanager
def oracles_at_reference(model) -> Iterator[None]:
    """Every oracle of the model shows its asset's reference price until the block exits (then restored)."""
    assets = {o.id: o.asset for o in model.scenario.oracles}
    saved = {oid: o.price for oid, o in model.oracles.items()}
    try:
        for oid, o in model.oracles.items():
            o.price = float(model.market.price(assets[oid]))
        yield
    finally:
        for oid, o in model.oracles.items():
            o.price = saved[oid]


def unhealthy_accounts(model, streak: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per account unhealthy at the end: protocol, account (row index), health, debt_usd, cause, detail.

    `streak[pid]`: per account, consecutive blocks unhealthy up to the end (the Recorder's `unhealthy_streak`)."""
    streak = streak if streak is not None else getattr(model.recorder, "unhealthy_streak", {})
    frames = []
    for pid, proto in model.protocols.items():
        hf = np.asarray(proto.health(), dtype=float)
        rows = np.flatnonzero(hf < 1.0)
        if rows.size == 0:
            continue
        kind = model.protocol_specs[pid].kind
        cause = np.full(rows.size, "", dtype=object)
        detail = np.full(rows.size, "", dtype=object)
        debt = _debt_usd(proto, rows)

        def mark(mask: np.ndarray, name: str, why: str = "") -> None:
            m = (cause == "") & mask
            cause[m] = name
            if why:
                detail[m] = why

        ctl = getattr(proto, "controlled", None)
        if ctl is not None:
            mark(np.asarray(ctl)[rows], "controlled")
        agents = serving_agents(model, pid)
        if kind == "cdp":
            agents = [a for a in agents if a.kind == "keeper" and a.keeper_params().kick_policy != "never"]
        mark(np.full(rows.size, not agents), "no_liquidator")
        coll = _collateral_usd(proto, rows)
        if coll is not None:
            mark((coll <= 0) & (debt > 0), "no_collateral")
        s = streak.get(pid)
        if s is not None and agents:
            latency = min(_latency(a) for a in agents)
            ss = np.zeros(rows.size, dtype=np.int64)
            ok = rows < s.size
            ss[ok] = s[rows[ok]]
            mark(ss <= latency + 1, "recent")
        todo = np.flatnonzero(cause == "")
        if todo.size:
            if kind in LENDING_KINDS:
                _lending(model, pid, proto, rows, todo, agents, cause, detail)
            elif kind == "perps":
                _perps(model, proto, rows, todo, agents, cause, detail)
            elif kind == "cdp":
                _cdp(model, proto, rows, todo, agents, cause, detail)
        mark(np.ones(rows.size, dtype=bool), "unclassified", f"kind {kind}")
        frames.append(
            pd.DataFrame(
                {
                    "protocol": pid,
                    "account": rows.astype(np.int64),
                    "health": hf[rows],
                    "debt_usd": debt,
                    "cause": cause.astype(str),
                    "detail": detail.astype(str),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            {
                "protocol": pd.Series([], dtype="str"),
                "account": pd.Series([], dtype="int64"),
                "health": pd.Series([], dtype="float64"),
                "debt_usd": pd.Series([], dtype="float64"),
                "cause": pd.Series([], dtype="str"),
                "detail": pd.Series([], dtype="str"),
            }
        )
    return pd.concat(frames, ignore_index=True)


def cause_counts(table: pd.DataFrame) -> dict[str, dict]:
    """Per protocol: {"accounts": n, "debt_usd": USD, "causes": {cause: n}, "debt_by_cause_usd": {...},
    "details": {"cause: detail": n}} (causes in CAUSES order; only those that occur)."""
    out: dict[str, dict] = {}
    for pid, g in table.groupby("protocol", sort=False):
        counts = g["cause"].value_counts()
        debt = g.groupby("cause")["debt_usd"].sum()
        order = [c for c in CAUSES if c in counts.index]
        det = g[g["detail"] != ""].groupby(["cause", "detail"]).size()
        out[str(pid)] = {
            "accounts": int(len(g)),
            "debt_usd": float(g["debt_usd"].sum()),
            "causes": {c: int(counts[c]) for c in order},
            "debt_by_cause_usd": {c: float(debt[c]) for c in order},
            "details": {
                f"{c}: {d}": int(n)
                for c, d, n in zip(det.index.get_level_values(0), det.index.get_level_values(1), det.to_numpy())
            },
        }
    return out


# --- per kind -------------------------------------------------------------------------------------------
def _debt_usd(proto, rows: np.ndarray) -> np.ndarray:
    if hasattr(proto, "account_usd"):
        return np.asarray(proto.account_usd()[1], dtype=float)[rows]
    if hasattr(proto, "maintenance_requirement"):  # perps: what the account must keep, USD
        return np.asarray(proto.maintenance_requirement(), dtype=float)[rows]
    if hasattr(proto, "debt"):
        d = np.asarray(proto.debt(), dtype=float)
        if d.ndim == 1 and d.size > int(rows.max(initial=-1)):
            return d[rows]  # a CDP's debt in stablecoin, valued at its par of $1 (dss spot.sol par)
    return np.zeros(rows.size)


def _collateral_usd(proto, rows: np.ndarray) -> np.ndarray | None:
    if hasattr(proto, "account_usd"):
        return np.asarray(proto.account_usd()[0], dtype=float)[rows]
    if hasattr(proto, "ink"):  # CDP vaults: collateral tokens
        return np.asarray(proto.ink, dtype=float)[rows]
    return None


def _latency(spec) -> int:
    if spec.kind == "keeper":
        return int(spec.keeper_params().latency_blocks)
    return int(getattr(spec, "latency_blocks", 0))


def _gas_usd(model, gas_units: float) -> float:
    """USD cost of `gas_units` at the last base fee and the reference price of ETH."""
    return float(gas_units) * float(model.gas.base_fee_gwei) * GWEI * float(model.eth_price())


def _pool(model, pid: str, a: str, b: str):
    for v in model.graph.successors(node("protocol", pid)):
        if not v.startswith("venue:"):
            continue
        pool = model.pools.get(v.split(":", 1)[1])
        if pool is not None and {pool.p.token0, pool.p.token1} == {a, b}:
            return pool
    return None


def _sale_usd(model, pid: str, coll: str, debt: str, amount: float) -> float:
    """What `amount` of seized collateral sells for, USD: through the protocol's pool for the pair, else on the
    outside market at the reference price less its fee (agents/liquidator.py `_sale_value`)."""
    if amount <= 0:
        return 0.0
    ref = model.market.as_dict()
    if coll == debt:
        return amount * ref.get(coll, 1.0)
    pool = _pool(model, pid, coll, debt)
    if pool is not None:
        return float(pool.quote(coll, amount)) * ref.get(debt, 1.0)
    return amount * ref.get(coll, 0.0) * (1.0 - model.scenario.market.external_fee)


def _lending(model, pid, m, rows, todo, agents, cause, detail) -> None:
    """Lending and Compound v2: the liquidator's own plan (largest collateral and debt, close factor, its capital),
    valued at the end's reference prices and pool depth."""
    led = model.env.ledger
    ref = model.market.as_dict()
    flash = any(getattr(a, "funding", "capital") != "capital" for a in agents)
    min_profit = min(float(getattr(a, "min_profit_usd", 0.0)) for a in agents)
    gas = _gas_usd(model, model.scenario.gas.liquidation_gas)
    flash_fee = min((float(getattr(a, "flash_fee", 0.0)) for a in agents if a.funding != "capital"), default=0.0)
    holders = [h for a in agents if a.kind == "liquidator" for h in holders_of(a)]
    p = m.prices()
    coll_usd = m.collateral()[rows[todo]] * p
    debt_usd = m.debt()[rows[todo]] * p

    def gross(a: int, c: str, d: str, cap: float) -> tuple[float, float]:
        pv = m.preview(a, c, d, cap)
        fee = flash_fee * pv.debt_to_repay if flash else 0.0
        return pv.debt_to_repay, _sale_usd(model, pid, c, d, pv.collateral_seized) - (pv.debt_to_repay + fee) * ref.get(
            d, 1.0
        )

    plans = []
    for k, i in enumerate(todo):
        a = int(rows[i])
        c, d = m.assets[int(coll_usd[k].argmax())], m.assets[int(debt_usd[k].argmax())]
        avail = math.inf if flash else max((led.balance(h, d) for h in holders), default=0.0)
        if avail <= 0:
            cause[i] = "capital"
            continue
        repay, g = gross(a, c, d, avail)
        full, _ = gross(a, c, d, math.inf) if math.isfinite(avail) else (repay, g)
        plans.append((i, a, c, d, repay, g, full))
    lagging = {}
    with oracles_at_reference(model):
        for i, a, c, d, _repay, g, _full in plans:
            if g <= 0:
                lagging[i] = gross(a, c, d, math.inf)[1] > 0
    for i, _a, _c, _d, repay, g, full in plans:
        if g <= 0:
            cause[i] = "oracle_lag" if lagging[i] else "unprofitable"
        elif g - gas <= min_profit:
            cause[i] = "capital" if repay < full * (1 - 1e-9) else "dust"
        else:
            cause[i] = "queued"
    del detail  # lending causes need no detail


def _perps(model, dex, rows, todo, agents, cause, detail) -> None:
    """Perp DEX: the perp liquidator's preview (revert, deleveraging, its free margin, profit after gas)."""
    imf = dex.imf_effective()
    holders = [h for a in agents if a.kind == "liquidator" for h in holders_of(a)]
    own = {int(x) for h in holders for x in dex.accounts_of(h)}
    free = max((float(dex.free_collateral()[x]) for x in own), default=0.0)
    min_profit = min(float(getattr(a, "min_profit_usd", 0.0)) for a in agents)
    gas = _gas_usd(model, model.scenario.gas.liquidation_gas)
    for i in todo:
        a = int(rows[i])
        if a in own:
            cause[i] = "unclassified"
            detail[i] = "a liquidator's own account"
            continue
        try:
            pv = dex.preview_liquidation(a)
        except Revert as exc:
            cause[i], detail[i] = "protocol_limit", _reason(str(exc))
            continue
        if pv.adl:
            cause[i], detail[i] = "unprofitable", "needs deleveraging (the insurance fund cannot pay)"
        elif abs(pv.size) * pv.oracle_price * imf[pv.market] > free:
            cause[i] = "capital"
        elif pv.liquidator_profit_usd <= 0:
            cause[i] = "unprofitable"
        elif pv.liquidator_profit_usd - gas <= min_profit:
            cause[i] = "dust"
        else:
            cause[i] = "queued"


def _cdp(model, cdp, rows, todo, agents, cause, detail) -> None:
    """CDP: the Dog's (or Cat's) own preview of a bark, and whether the keeper's reward pays the bark's gas."""
    pv = cdp.preview_bark(rows[todo])
    params = [a.keeper_params() for a in agents]
    always = any(p.kick_policy == "always" for p in params)
    for k, i in enumerate(todo):
        if not pv["ok"][k]:
            cause[i], detail[i] = "protocol_limit", str(pv["reason"][k])
            continue
        pays = always or any(float(pv["coin"][k]) - _gas_usd(model, p.gas_bark) >= p.min_profit_usd for p in params)
        cause[i] = "queued" if pays else "dust"


def _reason(text: str) -> str:
    """A revert message without its protocol and account prefix ('perps: account #3 reached ...' -> 'reached ...')."""
    tail = text.split(": ", 1)[-1]
    if tail.startswith("account #"):
        tail = tail.split(" ", 2)[-1]
    return tail
