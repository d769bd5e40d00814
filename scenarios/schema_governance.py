"""Scheduled governance and operations actions: at a given time a parameter changes, a market is frozen or
paused, a keeper joins, or governance mints or burns into a protocol's buffer.

Each action is applied at the start of the first block at or after its time, before prices move (the block
boundary: a spell cast in block b governs block b), in the order of `at` and then of the list; it is
recorded as a `governance` event and in the run manifest (sim/engine/governance.py). Every action names its
`source`: the published record it reproduces (a spell, a forum post) or "assumption".

- set: a key of the protocol's own table, as written in the scenario (e.g. "params.flip.ttl",
  "params.line", "assets.ETH.liquidation_threshold", "oracles.ETH"); the protocol table is validated again
  with the new value, so a bad value is refused with the key and its bounds. Only keys a running protocol can
  take are allowed (SETTABLE below).
- freeze / unfreeze, pause / unpause: a lending reserve (or the whole market) frozen takes no new supply or
  borrows (repay and liquidation go on; Aave v3 ReserveConfiguration "frozen"); paused, nothing moves (Aave v3
  "paused": supply, borrow, repay and liquidation revert). A CDP frozen draws no new debt; paused, it starts no
  liquidation (Maker's FlipperMom denying the Cat on a flipper, spells of 15-17 March 2020).
- add_agent: an agent of the `agents` list joins at that time (built then, with its capital minted then).
- mint / burn: into the protocol's buffer: a CDP's Vow surplus (stablecoin; a recapitalisation such as the MKR
  debt auction of 19 March 2020 heals system debt first), a lending market's treasury of `asset` (tokens).
"""

from __future__ import annotations

import copy
import fnmatch
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from defistress.scenarios.schema_base import Strict, error_message
from defistress.scenarios.schema_replay import check_iso_time
from defistress.scenarios.units import MAX_USD, Float, Seconds

#: keys of a protocol's table that governance may set during a run, by protocol kind (fnmatch patterns)
SETTABLE: dict[str, tuple[str, ...]] = {
    "lending": (
        "assets.*.ltv",
        "assets.*.liquidation_threshold",
        "assets.*.liquidation_bonus",
        "assets.*.protocol_fee",
        "assets.*.reserve_factor",
        "assets.*.interest.base",
        "assets.*.interest.slope1",
        "assets.*.interest.slope2",
        "assets.*.interest.optimal_utilisation",
        "oracles.*",
        "close_factor_rule",
    ),
    "cdp": (
        "params.liquidation_ratio",
        "params.stability_fee_per_year",
        "params.chop",
        "params.line",
        "params.Line",
        "params.dust",
        "params.hole",
        "params.Hole",
        "params.dunk",
        "params.box",
        "params.lump",
        "params.flip.beg",
        "params.flip.ttl",
        "params.flip.tau",
        "params.clip.buf",
        "params.clip.tail",
        "params.clip.cusp",
        "params.clip.chip",
        "params.clip.tip",
        "oracles.*",
    ),
}
#: protocol kinds whose markets can be frozen and paused, and whose buffer governance can mint into
GATED = ("lending", "cdp")

_SOURCE = Field(
    min_length=1,
    max_length=500,
    description="the published record this action reproduces (spell, forum post, governance proposal with its "
    "link) or 'assumption'",
)


class _Timed(Strict):
    at: Seconds | None = Field(None, description="when, seconds from the run's start or e.g. '13h30m'")
    at_time: str | None = Field(
        None,
        description="when, as an ISO time (e.g. '2020-03-13T03:30:00Z'); needs a replay (market.replay) to place it",
    )
    source: str = _SOURCE
    note: str = Field("", max_length=500, description="free text shown in the report")

    @model_validator(mode="after")
    def _one_time(self):
        if (self.at is None) == (self.at_time is None):
            raise ValueError("give the time as `at` (seconds from the start) or `at_time` (ISO time), exactly one")
        check_iso_time(self.at_time)
        return self


class SetAction(_Timed):
    """Set one key of a protocol's table (e.g. params.flip.ttl = 21600) from `at` on."""

    action: Literal["set"] = Field(description="set a protocol key")
    protocol: str = Field(min_length=1, description="the protocol id")
    key: str = Field(min_length=1, description="key path inside the protocol's table, e.g. 'params.flip.ttl'")
    value: Annotated[Float, Field(ge=-MAX_USD, le=MAX_USD)] | str = Field(
        description="the new value, in the key's unit (e.g. seconds for ttl, stablecoin for line); an oracle id for "
        "'oracles.<asset>'"
    )


class GateAction(_Timed):
    """Freeze or pause a market (or one of its assets), or lift it."""

    action: Literal["freeze", "unfreeze", "pause", "unpause"] = Field(
        description="freeze: no new positions; pause: nothing moves; unfreeze / unpause lift them"
    )
    protocol: str = Field(min_length=1, description="the protocol id")
    asset: str | None = Field(None, description="one reserve (lending) or the collateral (cdp); default: all")


class AddAgentAction(_Timed):
    """An agent of the `agents` list joins the run at this time instead of at the start."""

    action: Literal["add_agent"] = Field(description="add an agent (e.g. a keeper) during the run")
    agent: str = Field(min_length=1, description="id of an entry of `agents`, built when the action applies")


class BufferAction(_Timed):
    """Mint into or burn from a protocol's buffer (CDP: the Vow surplus; lending: the treasury of `asset`)."""

    action: Literal["mint", "burn"] = Field(description="mint into or burn from the protocol's buffer")
    protocol: str = Field(min_length=1, description="the protocol id")
    amount: Float = Field(gt=0, le=MAX_USD, description="stablecoin units (cdp) or tokens of `asset` (lending)")
    asset: str | None = Field(None, description="lending: the token of the treasury; cdp: leave out")


def _action_tag(v: Any) -> str:
    a = str(v.get("action", "set") if isinstance(v, dict) else getattr(v, "action", "set"))
    tags = {
        "freeze": "gate",
        "unfreeze": "gate",
        "pause": "gate",
        "unpause": "gate",
        "mint": "buffer",
        "burn": "buffer",
    }
    return tags.get(a, a)


GovernanceAction = Annotated[
    Annotated[SetAction, Tag("set")]
    | Annotated[GateAction, Tag("gate")]
    | Annotated[AddAgentAction, Tag("add_agent")]
    | Annotated[BufferAction, Tag("buffer")],
    Discriminator(_action_tag),
]
#: discriminated-union tags pydantic inserts in error locations (skipped when naming a key path)
UNION_TAGS = ("set", "gate", "add_agent", "buffer")


def set_key(table: dict, path: str, value: Any) -> dict:
    """A copy of `table` with the dotted `path` set to `value` (intermediate tables are created)."""
    out = copy.deepcopy(table)
    node = out
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"{'.'.join(keys[:-1])} is a value, not a table")
    node[keys[-1]] = value
    return out


def changed_spec(spec, key: str, value: Any, protocol_model: Any):
    """The protocol spec with `key` set to `value`, validated as the protocol table (ValueError names the key)."""
    raw = spec.model_dump(mode="python", exclude_unset=False)
    try:
        return protocol_model.model_validate(set_key(raw, key, value))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{loc + ': ' if loc else ''}{error_message(first, protocol_model)}") from None


def check_governance_links(scenario) -> None:
    """Protocols, keys, assets and agents named by governance actions exist; times lie inside the run."""
    protocols = {p.id: p for p in scenario.protocols}
    agents = {a.id for a in scenario.agents}
    end = scenario.run.duration
    deferred: list[str] = []
    for i, a in enumerate(scenario.governance):
        where = f"governance.{i}"
        if a.at is not None and a.at > end:
            raise ValueError(f"{where}.at: {a.at:g} s is after the end of the run (run.duration = {end:g} s)")
        if a.at_time is not None and scenario.market.replay is None:
            raise ValueError(f"{where}.at_time: an ISO time needs a replay (market.replay) to place it; use `at`")
        if isinstance(a, AddAgentAction):
            if a.agent not in agents:
                raise ValueError(f"{where}.agent: unknown agent {a.agent!r}; allowed: {sorted(agents)}")
            if a.agent in deferred:
                raise ValueError(f"{where}.agent: {a.agent!r} is already added by an earlier action")
            deferred.append(a.agent)
            continue
        p = protocols.get(a.protocol)
        if p is None:
            raise ValueError(f"{where}.protocol: unknown protocol {a.protocol!r}; allowed: {sorted(protocols)}")
        if p.kind not in GATED:
            raise ValueError(f"{where}.protocol: {a.protocol!r} is a {p.kind}; governance acts on {list(GATED)}")
        if isinstance(a, SetAction):
            allowed = SETTABLE[p.kind]
            if not any(fnmatch.fnmatchcase(a.key, pat) for pat in allowed):
                raise ValueError(f"{where}.key: {a.key!r} cannot be set during a run of a {p.kind}; allowed: {allowed}")
            if a.key.startswith("oracles."):
                asset = a.key.split(".", 1)[1]
                oracles = {o.id: o for o in scenario.oracles}
                if asset not in p.oracles:
                    raise ValueError(f"{where}.key: {p.id} has no oracle for {asset!r}; it has {sorted(p.oracles)}")
                if a.value not in oracles or oracles[a.value].asset != asset:
                    ok = sorted(o for o, s in oracles.items() if s.asset == asset)
                    raise ValueError(f"{where}.value: {a.value!r} is not an oracle of {asset}; allowed: {ok}")
            elif a.key.startswith("assets.") and a.key.split(".")[1] not in p.assets:
                raise ValueError(f"{where}.key: {p.id} has no asset {a.key.split('.')[1]!r}; it has {sorted(p.assets)}")
            try:
                changed_spec(p, a.key, a.value, type(p))
            except ValueError as exc:
                raise ValueError(f"{where}.value: {exc}") from None
        elif isinstance(a, GateAction) and a.asset is not None and a.asset not in p.assets:
            raise ValueError(f"{where}.asset: {p.id} has no asset {a.asset!r}; it has {sorted(p.assets)}")
        elif isinstance(a, BufferAction):
            if p.kind == "lending" and (a.asset is None or a.asset not in p.assets):
                raise ValueError(f"{where}.asset: a lending treasury holds one token; allowed: {sorted(p.assets)}")
            if p.kind == "cdp" and a.asset is not None:
                raise ValueError(f"{where}.asset: a cdp's buffer is its Vow surplus in its stablecoin; leave it out")


def deferred_agents(scenario) -> set[str]:
    """Ids of agents that join during the run (add_agent), not at the start."""
    return {a.agent for a in scenario.governance if isinstance(a, AddAgentAction)}
