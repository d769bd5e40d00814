"""The model's actors: a Mesa AgentSet in the block's deterministic phase order, holding its members strongly.

Mesa's AgentSet keeps weak references (a mesa.Agent is also held by its model); an actor may be any object with a
ledger `holder` and `submit(view)` (docs/architecture.md), so this set also keeps a plain list of its members and
nothing added to it disappears. Order is insertion order, which `StressModel.phase_decide` relies on. `append` is
`add` and `extend` adds in order, for code written when the actors were a list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesa.agent import AgentSet


class Actors(AgentSet):
    """AgentSet of the actors that submit transactions each block, in the order they were added."""

    def __init__(self, agents: Iterable[Any], random: Any = None) -> None:
        self._held: list[Any] = list(agents)
        super().__init__(self._held, random=random)

    def add(self, agent: Any) -> None:
        if agent not in self:
            self._held.append(agent)
        super().add(agent)

    append = add

    def extend(self, agents: Iterable[Any]) -> None:
        """Add several actors in order (agents joining during the run: governance's add_agent)."""
        for agent in agents:
            self.add(agent)

    def discard(self, agent: Any) -> None:
        if agent in self._held:
            self._held.remove(agent)
        super().discard(agent)

    def remove(self, agent: Any) -> None:
        super().remove(agent)
        self._held.remove(agent)
