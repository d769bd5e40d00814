"""Scenario tables of the oracle kinds beyond push / delayed / fixed (schema.OracleSpec):

- rounds: replays published rounds (roundId, answer, updatedAt) of a feed of the replay exactly as published
  (market.replay.feeds with format chainlink_rounds: the bundled Chainlink files, `defistress import chainlink`);
- composite: the product of other oracles' answers (stETH/ETH x ETH/USD, as Aave priced wstETH), times a
  constant factor;
- fallback: a primary and a fallback feed under Liquity's rules (frozen after a timeout, broken, a jump of
  more than 50% between rounds, back to the primary when both agree within 5%);
- anchored (schema_compound.AnchoredOracleSpec, Compound's UniswapAnchoredView): a reporter's price accepted only
  within a band around a TWAP of an anchor; reporter and anchor may be any source below, including a named
  venue's series.

Oracle sources (`source`, `anchor`): 'reference', 'pool:VENUE' (spot), 'twap:VENUE', 'feed:FEED' (a named
series of market.replay.feeds, e.g. Coinbase's prices: an oracle that reads one venue) or 'oracle:ID' (another
oracle's answer). An oracle's answers are in USD unless it reads a feed quoted in another unit (stETH/ETH
rounds are in ETH); protocols read USD oracles only, and a composite multiplies its way to USD.
An oracle named by a composite, a fallback or an `oracle:` source is listed before the oracle that reads it
(oracles update in list order each block). `max_age` (every kind) watches staleness: the run logs when an
answer gets older than it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from defistress.scenarios.schema_base import Strict
from defistress.scenarios.schema_compound import SOURCE_PATTERN, AnchoredOracleSpec

__all__ = ["SOURCE_PATTERN", "check_oracle_links", "denomination_of", "oracle_tag", "sources_of"]
from defistress.scenarios.units import MAX_VALUE, Float, Seconds

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
_MAX_AGE = Field(
    None,
    gt=0,
    description="staleness threshold, seconds or e.g. '25h': the run logs an oracle_stale event when the answer "
    "gets older (none: not watched)",
)


class RoundsOracleSpec(Strict):
    """Published rounds replayed exactly: each round's answer at its updatedAt, with its round id."""

    id: str = Field(pattern=ID_PATTERN, description="oracle id")
    kind: Literal["rounds"] = Field(description="replay published rounds of a feed")
    asset: str = Field(description="the asset it prices (a market asset)")
    feed: str = Field(min_length=1, description="id of a market.replay.feeds entry of format chainlink_rounds")
    max_age: Seconds | None = _MAX_AGE


class CompositeOracleSpec(Strict):
    """factor x the product of other oracles' answers; their units must chain to USD (stETH/ETH x ETH/USD)."""

    id: str = Field(pattern=ID_PATTERN, description="oracle id")
    kind: Literal["composite"] = Field(description="the product of other oracles")
    asset: str = Field(description="the asset it prices (a market asset)")
    feeds: list[str] = Field(
        min_length=2,
        description="oracle ids multiplied in order: the first prices `asset` (or its underlying, see `factor`), "
        "each next one prices the unit of the one before, the last is in USD",
    )
    factor: Float | None = Field(
        None,
        gt=0,
        le=MAX_VALUE,
        description="constant multiplier: tokens of the first feed's asset per token of `asset` (e.g. stETH per "
        "wstETH); required when the first feed prices another asset",
    )
    max_age: Seconds | None = _MAX_AGE


class FallbackOracleSpec(Strict):
    """Liquity's PriceFeed: a primary (Chainlink) and a fallback (Tellor) feed with its switching rules."""

    id: str = Field(pattern=ID_PATTERN, description="oracle id")
    kind: Literal["fallback"] = Field(description="primary feed with a fallback, Liquity's rules")
    asset: str = Field(description="the asset it prices (a market asset)")
    primary: str = Field(min_length=1, description="oracle id of the primary feed (Liquity: Chainlink ETH/USD)")
    fallback: str = Field(min_length=1, description="oracle id of the fallback feed (Liquity: Tellor)")
    timeout: Seconds = Field(
        4 * 3600.0, gt=0, description="a feed older than this is frozen [published: Liquity TIMEOUT 4 h]"
    )
    max_deviation: Float = Field(
        0.5,
        gt=0,
        lt=1,
        description="largest move between two primary rounds, share of the larger "
        "[published: Liquity MAX_PRICE_DEVIATION_FROM_PREVIOUS_ROUND 50%]",
    )
    max_difference: Float = Field(
        0.05,
        gt=0,
        lt=1,
        description="two feeds agree within this share of the smaller "
        "[published: Liquity MAX_PRICE_DIFFERENCE_BETWEEN_ORACLES 5%]",
    )
    max_age: Seconds | None = _MAX_AGE


#: oracle kinds beside push / delayed / fixed, by `kind` (the anchored view is Compound's, schema_compound)
KINDS: dict[str, type] = {
    "rounds": RoundsOracleSpec,
    "composite": CompositeOracleSpec,
    "fallback": FallbackOracleSpec,
    "anchored": AnchoredOracleSpec,
}
#: discriminated-union tags pydantic inserts in error locations (skipped when naming a key path)
UNION_TAGS = ("feed", *KINDS)


def oracle_tag(v: Any) -> str:
    """The union tag of an oracle table: its kind if this module defines it, else "feed" (push, delayed, fixed)."""
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return kind if kind in KINDS else "feed"


def sources_of(o) -> list[str]:
    """The sources an oracle reads ('reference', 'pool:V', 'twap:V', 'feed:F', 'oracle:ID')."""
    if isinstance(o, RoundsOracleSpec):
        return [f"feed:{o.feed}"]
    if isinstance(o, CompositeOracleSpec):
        return [f"oracle:{f}" for f in o.feeds]
    if isinstance(o, FallbackOracleSpec):
        return [f"oracle:{o.primary}", f"oracle:{o.fallback}"]
    if isinstance(o, AnchoredOracleSpec):
        return [o.source, o.anchor]
    return [] if getattr(o, "kind", None) == "fixed" else [o.source]


def denomination_of(o, scenario) -> str:
    """The unit of an oracle's answers: USD, or the quote of the feed it reads (e.g. ETH for stETH/ETH rounds)."""
    if isinstance(o, (CompositeOracleSpec, FallbackOracleSpec, AnchoredOracleSpec)) or o.kind == "fixed":
        return "USD"
    src = sources_of(o)[0]
    if src.startswith("feed:") and scenario.market.replay is not None:
        feeds = {f.id: f for f in scenario.market.replay.feeds}
        f = feeds.get(src.split(":", 1)[1])
        return (f.quote or "USD") if f is not None else "USD"
    return "USD"


def check_oracle_links(scenario) -> None:
    """Sources name existing venues, feeds and earlier oracles; rounds read round feeds; a composite's units chain
    to USD; a fallback's feeds price its asset; protocols read USD oracles."""
    venues = {v.id for v in scenario.venues}
    feeds = {f.id: f for f in scenario.market.replay.feeds} if scenario.market.replay is not None else {}
    earlier: dict[str, Any] = {}
    for o in scenario.oracles:
        where = f"oracles.{o.id}"
        fields = {"rounds": ["feed"], "fallback": ["primary", "fallback"], "anchored": ["source", "anchor"]}
        for i, src in enumerate(sources_of(o)):
            how, _, name = src.partition(":")
            field = "feeds" if o.kind == "composite" else fields.get(o.kind, ["source"])[i]
            if how in ("pool", "twap") and name not in venues:
                raise ValueError(f"{where}.{field}: unknown venue in {src!r}; allowed: {sorted(venues)}")
            if how == "feed" and name not in feeds:
                raise ValueError(
                    f"{where}.{field}: unknown feed {name!r}; declare it in market.replay.feeds (have {sorted(feeds)})"
                )
            if how == "oracle" and name not in earlier:
                raise ValueError(
                    f"{where}.{field}: {name!r} is not an oracle listed before {o.id!r}; list the oracles it reads "
                    f"first (earlier: {sorted(earlier)})"
                )
        if isinstance(o, RoundsOracleSpec) and feeds[o.feed].format != "chainlink_rounds":
            raise ValueError(
                f"{where}.feed: {o.feed!r} has format {feeds[o.feed].format!r}; rounds need chainlink_rounds"
            )
        if isinstance(o, CompositeOracleSpec):
            chain = [earlier[f] for f in o.feeds]
            units = [denomination_of(c, scenario) for c in chain]
            for a, b, unit in zip(chain[:-1], chain[1:], units[:-1]):
                if unit != b.asset:
                    raise ValueError(
                        f"{where}.feeds: {a.id!r} is in {unit} but {b.id!r} prices {b.asset}: each feed must price the "
                        "unit of the one before"
                    )
            if units[-1] != "USD":
                raise ValueError(f"{where}.feeds: the last feed {chain[-1].id!r} is in {units[-1]}, not USD")
            if chain[0].asset != o.asset and o.factor is None:
                raise ValueError(
                    f"{where}.factor: the first feed prices {chain[0].asset}, not {o.asset}; give the factor "
                    f"({chain[0].asset} per {o.asset})"
                )
        if isinstance(o, FallbackOracleSpec):
            for role in ("primary", "fallback"):
                other = earlier[getattr(o, role)]
                if other.asset != o.asset or denomination_of(other, scenario) != "USD":
                    raise ValueError(f"{where}.{role}: {other.id!r} must be a USD oracle of {o.asset}")
        earlier[o.id] = o
    for p in scenario.protocols:
        for asset, oid in p.oracles.items():
            o = earlier.get(oid)
            if o is not None and denomination_of(o, scenario) != "USD":
                raise ValueError(
                    f"protocols.{p.id}.oracles.{asset}: {oid!r} answers in {denomination_of(o, scenario)}, not USD; "
                    "price it through a composite oracle"
                )
