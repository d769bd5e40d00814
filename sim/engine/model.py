"""StressModel: a Mesa model assembled from the scenario graph; one step is one block.

Phases of a block, in order (docs/architecture.md): governance -> market -> oracles -> agents decide -> block
building -> protocols accrue -> metrics. Each phase is a named method; hooks run at block end, on each liquidation
event and at run end (invariant checks and metric collectors register there).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator

import mesa
import numpy as np

from defistress.agents.tx import BlockView
from defistress.protocols.base import Clock, Env, Revert
from defistress.protocols.events import Liquidated
from defistress.scenarios.loader import LoadedScenario, ScenarioError, load
from defistress.scenarios.schema_governance import deferred_agents
from defistress.sim.engine import build, network, regime
from defistress.sim.engine.actors import Actors
from defistress.sim.engine.blocks import build_block
from defistress.sim.engine.gas import GasMarket
from defistress.sim.engine.governance import Governance
from defistress.sim.engine.market import External, Market
from defistress.sim.engine.metrics import Recorder
from defistress.sim.engine.replay import DataFileError, load_replay


class SetupError(ValueError):
    """A valid scenario that cannot be set up (e.g. a population asking for more than its market can lend):
    the message names the table that failed. Bad input, like a ScenarioError."""


@contextlib.contextmanager
def setting_up(key: str) -> Iterator[None]:
    """Turn a revert or a value error raised while building `key` (e.g. "agents.borrowers") into a SetupError."""
    try:
        yield
    except (ScenarioError, DataFileError, SetupError):
        raise
    except (Revert, ValueError, ArithmeticError) as exc:
        raise SetupError(f"{key}: cannot be set up: {exc}") from exc


class StressModel(mesa.Model):
    """The whole run: market, gas, venues, oracles, protocols and agents, stepped block by block."""

    def __init__(self, scenario, seed: int | None = None):
        loaded = scenario if isinstance(scenario, LoadedScenario) else load(scenario)
        s = loaded.scenario
        self.seed = int(s.run.seed if seed is None else seed)
        super().__init__(rng=self.seed)
        self.loaded = loaded
        self.scenario = s
        self.n_blocks = s.n_blocks
        self.env = Env(clock=Clock(0, s.run.block_seconds))
        self.graph = network.build_graph(s)
        self.hooks: dict[str, list[Callable]] = {"block_end": [], "liquidation": [], "run_end": []}

        #: every replayed input, read and checked before anything is built (raises DataFileError)
        self.replay = load_replay(s, loaded.resolve_data)
        #: unix time of block 0 (the replay's start; 0 for a simulated market)
        self.epoch = self.replay.epoch
        self.market = Market(s, self.stream("market"), self.replay, self.stream("replay-bridge"))
        self.external = External(self.market, self.env.ledger, s.market.external_fee)
        gas_path = None if self.replay.gas is None else self.replay.gas.gwei
        self.gas = GasMarket(s.gas, self.n_blocks, s.run.block_seconds, s.shocks, gas_path)
        stables = [a.symbol for a in s.market.assets if a.is_stable]
        self.quote_asset = stables[0] if stables else s.market.assets[0].symbol

        specs = lambda kind: [d["spec"] for _, d in self.graph.nodes(data=True) if d["type"] == kind]  # noqa: E731
        self.pools = {}
        for v in specs("venue"):
            with setting_up(f"venues.{v.id}"):
                self.pools[v.id] = build.build_pool(self, v)
        self.oracles = {}
        for o in specs("oracle"):  # in list order: composites and fallbacks read oracles built before them
            with setting_up(f"oracles.{o.id}"):
                self.oracles[o.id] = build.build_oracle(self, o)
        self.protocol_specs = {p.id: p for p in specs("protocol")}
        self.issuers = {v.split(":", 1)[1]: u.split(":", 1)[1] for u, v, _ in network.edges_of(self.graph, "issues")}
        self.protocols = {}
        for p in specs("protocol"):
            with setting_up(f"protocols.{p.id}"):
                self.protocols[p.id] = build.PROTOCOL_BUILDERS[p.kind](self, p)
        with setting_up("margin"):
            self.coordinator = regime.build_coordinator(self)  # None without multi-venue accounts
        actors: list = []
        order = {k: i for i, k in enumerate(build.AGENT_ORDER)}
        later = deferred_agents(s)  # agents that join during the run (governance add_agent)
        for a in sorted(specs("agent"), key=lambda a: order.get(a.kind, len(order))):
            if a.id not in later:
                with setting_up(f"agents.{a.id}"):
                    actors.extend(build.AGENT_BUILDERS[a.kind](self, a))
        with setting_up("margin.keeper"):
            actors.extend(regime.build_keeper(self))
        #: the agents that act each block, a Mesa AgentSet (sim/engine/actors.py) in the deterministic phase order
        #: (agent kinds in build.AGENT_ORDER, then scenario order): `phase_decide` asks each in turn
        self.actors = Actors(actors, random=self.random)
        self.recorder = Recorder(self)
        with setting_up("governance"):
            self.governance = Governance(self)  # scheduled actions, applied at block boundaries
        if self.coordinator is not None:
            self.recorder.sources.append(regime.regime_columns)
        self._event_cursor = 0
        if s.run.check_conservation_every:
            every = s.run.check_conservation_every
            self.hooks["block_end"].append(
                lambda m: m.env.ledger.check_conservation() if m.env.clock.block % every == 0 else None
            )

    def data_manifest(self) -> dict:
        """What the run read and how: data hashes, the replay (series, feeds, fill, bridge), the gas path."""
        gas = (
            self.replay.gas.info
            if self.replay.gas is not None
            else {"path": "modelled", "model": "EIP-1559 base fee from agents' and background gas (sim/engine/gas.py)"}
        )
        return {
            "data_sha256": self.replay.data_sha256(),
            "replay": self.replay.manifest(),
            "gas": gas,
            "governance": self.governance.manifest(),
        }

    # --- randomness ---------------------------------------------------------------------------------
    def stream(self, name: str) -> np.random.Generator:
        """An independent generator per component, derived from the run seed and the component's name."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),)))

    def feed_reader(self, feed: str) -> Callable[[], float]:
        """The value of a replayed feed (market.replay.feeds) at the current block, for oracles reading 'feed:F'."""
        path = self.replay.feed_path(feed)
        return lambda: float(path[min(self.env.clock.block, len(path) - 1)])

    def eth_price(self) -> float:
        """USD per ETH for gas costs: the reference price if ETH is a market asset, else the gas spec's."""
        if "ETH" in self.market.index:
            return self.market.price("ETH")
        return self.scenario.gas.eth_price_usd

    # --- the block -----------------------------------------------------------------------------------
    def step(self) -> None:
        self.phase_governance()
        self.phase_market()
        self.phase_oracles()
        txs = self.phase_decide()
        self.phase_build(txs)
        self.phase_accrue()
        self.phase_metrics()
        self.env.clock.block += 1

    def phase_governance(self) -> None:
        """Scheduled governance and operations actions due at this block boundary (sim/engine/governance.py)."""
        self.governance.apply_due(self.env.clock.block)

    def phase_market(self) -> None:
        """Exogenous prices move; last block's net selling moves the reference through the depth model."""
        self.market.advance(self.env.clock.block)
        self.gas.set_block(self.env.clock.block)

    def phase_oracles(self) -> None:
        """Each oracle decides whether to publish."""
        block, seconds, emit = self.env.clock.block, self.env.clock.seconds, self.env.emit
        for o in self.oracles.values():  # in list order: an oracle reading others comes after them
            ev = o.update(block, seconds)
            if isinstance(ev, list):
                for e in ev:
                    if e is not None:
                        emit(e)
            elif ev is not None:
                emit(ev)
            stale = o.staleness(block, seconds)
            if stale is not None:
                emit(stale)

    def phase_decide(self) -> list:
        """Agents look at what they may see and submit transactions."""
        view = BlockView(
            self.env.clock.block, self.env.clock.seconds, self.gas.base_fee_gwei, self.market.as_dict(), self.external
        )
        txs = []
        for batch in self.actors.map("submit", view):  # AgentSet.map keeps the set's (insertion) order
            txs.extend(batch)
        return txs

    def phase_build(self, txs: list) -> None:
        """Order by priority fee, include under the gas limit, execute (reverts pay gas), update base fee."""
        b = self.env.clock.block
        self.block_stats = build_block(
            txs,
            self.env,
            self.gas.base_fee_gwei,
            self.gas.limit,
            self.gas.background_gas(b),
            self.scenario.gas.background_priority_gwei,
        )
        self.gas.after_block(self.block_stats.gas_used)

    def phase_accrue(self) -> None:
        """Interest, funding, auction clocks; pools sample their TWAP."""
        dt = self.scenario.run.block_seconds
        for p in self.protocols.values():
            p.accrue(dt)
        for pool in self.pools.values():
            pool.record()

    def phase_metrics(self) -> None:
        """Record the block's figures and run hooks."""
        new = self.env.events[self._event_cursor :]
        self._event_cursor = len(self.env.events)
        if self.hooks["liquidation"]:
            for ev in new:
                if isinstance(ev, Liquidated):
                    for h in self.hooks["liquidation"]:
                        h(self, ev)
        self.recorder.record(new)
        for h in self.hooks["block_end"]:
            h(self)

    # --- the run -------------------------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Step every block of the scenario; `progress(done, total)` is called now and then."""
        every = max(self.n_blocks // 100, 1)
        while self.env.clock.block < self.n_blocks:
            self.step()
            if progress is not None and (self.env.clock.block % every == 0 or self.env.clock.block == self.n_blocks):
                progress(self.env.clock.block, self.n_blocks)
        for h in self.hooks["run_end"]:
            h(self)
