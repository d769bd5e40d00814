"""Scheduled governance and operations actions, applied at block boundaries (scenarios/schema_governance.py).

An action with time t applies at the start of block ceil(t / block_seconds), before the block's prices move
(StressModel.phase_governance), in the order of time and then of the scenario's list, so the same scenario
and seed give the same run. Each application emits a `governance` event (the old and the new value, the
source it cites) and is listed in the run manifest and the report.

How each action reaches a running protocol (the scenario table is validated again with the new value first):
- lending `set`: the reserve arrays (ltv, liquidation threshold, bonus, protocol fee, reserve factor, rate
  model) and the oracle of an asset are replaced and the market's cached account values dropped, so the
  next health check uses them (an Aave v3 PoolConfigurator call takes effect in the next transaction).
- cdp `set`: the ilk's parameters are replaced (dss `file` calls: vat line/Line/dust, cat lump/chop/dunk/box,
  dog hole/Hole, jug duty, spot mat, the auction house's beg/ttl/tau or buf/tail/cusp/chip/tip); running
  auctions keep the end they were kicked with and new bids use the new ttl, as in flip.sol; a Clipper's chost
  is recomputed (dss clip.sol upchost).
- freeze / pause: the protocol's gates (protocols/gates.py).
- add_agent: the agent is built now (its capital is minted now) and joins the actors.
- mint / burn: a CDP's Vow surplus (a figure, not a token balance: the books' identity in protocols/cdp.py
  moves both sides), or tokens minted into / burned from a lending market's treasury through the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from defistress.protocols.events import Generic
from defistress.scenarios.schema_governance import (
    AddAgentAction,
    BufferAction,
    GateAction,
    SetAction,
    changed_spec,
)

SOURCE = "governance"


class GovernanceError(ValueError):
    """A governance action that cannot be placed in the run (e.g. an ISO time outside it); names its key."""


class Governance:
    """The scenario's actions in the order they apply; `apply_due(block)` runs those of a block."""

    def __init__(self, model):
        self.model = model
        s = model.scenario
        bs, end = s.run.block_seconds, s.run.duration
        items = []
        for i, a in enumerate(s.governance):
            at = a.at if a.at is not None else _iso_seconds(a.at_time) - model.epoch
            if a.at is None and not 0 <= at <= end:
                raise GovernanceError(
                    f"governance.{i}.at_time: {a.at_time} is {at:g} s from the run's start "
                    f"({model.replay.manifest()['start'] if model.replay.manifest() else 'unset'}); "
                    f"it must lie inside the run (0..{end:g} s)"
                )
            items.append((math.ceil(at / bs - 1e-9), at, i, a))
        self.schedule = sorted(items, key=lambda x: (x[0], x[1], x[2]))
        self._next = 0
        self.applied: list[dict[str, Any]] = []

    def apply_due(self, block: int) -> list[Generic]:
        """Apply every action whose block has come; returns the events emitted."""
        out = []
        while self._next < len(self.schedule) and self.schedule[self._next][0] <= block:
            _, at, i, a = self.schedule[self._next]
            self._next += 1
            detail = {"index": i, "action": a.action, "at_s": float(at), **_APPLY[type(a)](self.model, a)}
            detail.update(cites=a.source, note=a.note)  # `source` of an event is its emitter ("governance")
            self.applied.append({"block": block, **detail})
            out.append(self.model.env.emit(Generic(block, SOURCE, "governance", detail)))
        return out

    def manifest(self) -> list[dict[str, Any]]:
        """Every scheduled action with the block it applies at (and what it did, once applied)."""
        done = {d["index"]: d for d in self.applied}
        return [
            {"index": i, "block": b, "at_s": float(at), **a.model_dump(mode="json"), **_result(done.get(i))}
            for b, at, i, a in self.schedule
        ]


def _result(applied: dict | None) -> dict[str, Any]:
    if applied is None:
        return {"applied": False}
    keep = {k: v for k, v in applied.items() if k in ("old", "new", "state", "amount_applied", "holders")}
    return {"applied": True, **keep}


def _iso_seconds(text: str) -> float:
    import pandas as pd

    t = pd.Timestamp(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return float(t.tz_convert("UTC").value / 1e9)


# --- set --------------------------------------------------------------------------------------------------
def _get(table: Any, path: str) -> Any:
    node = table
    for k in path.split("."):
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def _apply_set(model, a: SetAction) -> dict[str, Any]:
    old_spec = model.protocol_specs[a.protocol]
    new_spec = changed_spec(old_spec, a.key, a.value, type(old_spec))
    proto = model.protocols[a.protocol]
    if old_spec.kind == "cdp":
        old = _cdp_value(old_spec, a.key)
        _set_cdp(model, proto, new_spec, a.key)
        new = _cdp_value(new_spec, a.key)
    else:
        old = _get(old_spec.model_dump(mode="json"), a.key)
        _set_lending(model, proto, new_spec, a.key)
        new = _get(new_spec.model_dump(mode="json"), a.key)
    model.protocol_specs[a.protocol] = new_spec
    return {"protocol": a.protocol, "key": a.key, "old": old, "new": new}


def _cdp_value(spec, key: str) -> Any:
    """The effective value of a cdp key (preset merged with params)."""
    if key.startswith("params."):
        return _get(spec.cdp_params().model_dump(mode="json"), key.split(".", 1)[1])
    return _get(spec.model_dump(mode="json"), key)


def _set_cdp(model, cdp, spec, key: str) -> None:
    if key.startswith("oracles."):
        cdp.oracle = model.oracles[spec.oracles[cdp.collateral]]
        if hasattr(cdp.auctions, "oracle"):
            cdp.auctions.oracle = cdp.oracle  # the Clipper reads the same feed (dss clip.sol pip via spotter)
        return
    p = spec.cdp_params()
    cdp.p = p
    cdp.auctions.p = p.clip if p.mechanism == "clip" else p.flip
    if p.mechanism == "clip":
        cdp.auctions.chost = p.dust * p.chop  # dss clip.sol upchost: chost = dust * chop


def _set_lending(model, market, spec, key: str) -> None:
    if key.startswith("oracles."):
        sym = key.split(".", 1)[1]
        market.oracles[market.idx[sym]] = model.oracles[spec.oracles[sym]]
    elif key == "close_factor_rule":
        market.rule = spec.close_factor_rule
    else:
        sym = key.split(".")[1]
        i, a = market.idx[sym], spec.assets[sym]
        market.params[i] = replace(
            market.params[i],
            ltv=a.ltv,
            liquidation_threshold=a.liquidation_threshold,
            liquidation_bonus=a.liquidation_bonus,
            protocol_fee=a.protocol_fee,
            reserve_factor=a.reserve_factor,
            base_rate=a.interest.base,
            slope1=a.interest.slope1,
            slope2=a.interest.slope2,
            optimal_utilisation=a.interest.optimal_utilisation,
        )
        market.ltv[i], market.lt[i] = a.ltv, a.liquidation_threshold
        market.bonus[i], market.fee[i] = 1.0 + a.liquidation_bonus, a.protocol_fee
        market.reserve_factor[i] = a.reserve_factor
        for arr, v in zip(
            market._rate_params, (a.interest.base, a.interest.slope1, a.interest.slope2, a.interest.optimal_utilisation)
        ):
            arr[i] = v
    market._touch()  # cached health factors and limits are stale now


# --- freeze / pause -------------------------------------------------------------------------------------------
def _apply_gate(model, a: GateAction) -> dict[str, Any]:
    state = "frozen" if a.action in ("freeze", "unfreeze") else "paused"
    on = a.action in ("freeze", "pause")
    gates = model.protocols[a.protocol].gates
    old = gates.is_frozen(a.asset) if state == "frozen" else gates.is_paused(a.asset)
    gates.set(state, on, a.asset)
    return {"protocol": a.protocol, "asset": a.asset, "state": state, "old": old, "new": on}


# --- agents -------------------------------------------------------------------------------------------------
def _apply_add_agent(model, a: AddAgentAction) -> dict[str, Any]:
    from defistress.sim.engine.build import AGENT_BUILDERS

    spec = next(x for x in model.scenario.agents if x.id == a.agent)
    actors = AGENT_BUILDERS[spec.kind](model, spec)
    model.actors.extend(actors)
    holders = [getattr(x, "holder", spec.id) for x in actors]
    model.recorder.track(actors)
    return {"agent": a.agent, "kind": spec.kind, "holders": holders}


# --- buffers ------------------------------------------------------------------------------------------------
def _apply_buffer(model, a: BufferAction) -> dict[str, Any]:
    proto = model.protocols[a.protocol]
    sign = 1.0 if a.action == "mint" else -1.0
    if model.protocol_specs[a.protocol].kind == "cdp":
        old = proto.surplus
        amount = a.amount if sign > 0 else min(a.amount, proto.surplus)
        proto.surplus += sign * amount
        proto.p = proto.p.model_copy(update={"surplus_buffer": proto.p.surplus_buffer + sign * amount})
        woe = proto.woe
        proto._heal()  # dss vow.heal: surplus nets system debt
        return {
            "protocol": a.protocol,
            "key": "surplus",
            "old": old,
            "new": proto.surplus,
            "amount_applied": amount,
            "system_debt_healed": woe - proto.woe,
        }
    led, holder = model.env.ledger, proto.treasury
    old = led.balance(holder, a.asset)
    if sign > 0:
        amount = a.amount
        led.mint(a.asset, holder, amount, "governance_mint")
    else:
        amount = min(a.amount, old)
        led.burn(a.asset, holder, amount, "governance_burn")
    return {
        "protocol": a.protocol,
        "asset": a.asset,
        "key": "treasury",
        "old": old,
        "new": led.balance(holder, a.asset),
        "amount_applied": amount,
    }


_APPLY: dict[type, Callable[[Any, Any], dict[str, Any]]] = {
    SetAction: _apply_set,
    GateAction: _apply_gate,
    AddAgentAction: _apply_add_agent,
    BufferAction: _apply_buffer,
}
