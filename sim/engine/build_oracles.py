"""Builders of the oracle kinds of scenarios/schema_oracles.py (rounds, composite, fallback; the anchored view is
built in build_compound.py), and the settings every oracle takes from its table (the unit of its answers, its
staleness threshold)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from defistress.agents.oracle_composite import CompositeOracle
from defistress.agents.oracle_fallback import FallbackOracle
from defistress.agents.oracle_rounds import RoundsOracle
from defistress.agents.oracles import Oracle
from defistress.scenarios.schema_oracles import denomination_of
from defistress.sim.engine.builders import oracle_builder

AnyOracle = TypeVar("AnyOracle", bound=Oracle)


def reference_of(model, asset: str, denomination: str = "USD") -> Callable[[], float]:
    """The reference price an oracle is compared with, in the oracle's unit (USD, or a market asset)."""
    if denomination == "USD" or denomination not in model.market.index:
        return lambda: model.market.price(asset)
    return lambda: model.market.price(asset) / model.market.price(denomination)


def configured(model, spec, oracle: AnyOracle) -> AnyOracle:
    """Set what every oracle takes from its table: the unit of its answers and its staleness threshold."""
    oracle.denomination = denomination_of(spec, model.scenario)
    oracle.max_age = getattr(spec, "max_age", None)
    if oracle.denomination != "USD":
        oracle.reference = reference_of(model, spec.asset, oracle.denomination)
    return oracle


@oracle_builder("rounds")
def build_rounds_oracle(model, spec) -> RoundsOracle:
    times, answers = model.replay.feed_values(spec.feed)
    rounds = model.replay.feeds[spec.feed].round_id or []
    unit = denomination_of(spec, model.scenario)
    o = RoundsOracle(model, spec.id, spec.asset, times, answers, rounds, reference_of(model, spec.asset, unit), unit)
    return configured(model, spec, o)


@oracle_builder("composite")
def build_composite_oracle(model, spec) -> CompositeOracle:
    feeds = [model.oracles[f] for f in spec.feeds]
    factor = 1.0 if spec.factor is None else spec.factor
    o = CompositeOracle(model, spec.id, spec.asset, feeds, reference_of(model, spec.asset), factor)
    return configured(model, spec, o)


@oracle_builder("fallback")
def build_fallback_oracle(model, spec) -> FallbackOracle:
    o = FallbackOracle(
        model,
        spec.id,
        spec.asset,
        model.oracles[spec.primary],
        model.oracles[spec.fallback],
        reference_of(model, spec.asset),
        spec.timeout,
        spec.max_deviation,
        spec.max_difference,
    )
    return configured(model, spec, o)
