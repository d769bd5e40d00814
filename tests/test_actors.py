"""The model's actors (sim/engine/actors.py): a Mesa AgentSet that keeps insertion order (the block's phase order)
and holds plain objects too, so an actor appended without another reference still submits each block."""

from __future__ import annotations

import gc

import mesa

from defistress.sim.engine.actors import Actors


class Plain:
    """An actor that is not a mesa.Agent: a holder id and submit()."""

    def __init__(self, holder: str):
        self.holder = holder

    def submit(self, view) -> list[str]:
        return [f"{self.holder}@{view}"]


def test_actors_keep_insertion_order_and_hold_plain_objects():
    model = mesa.Model(seed=1)
    actors = Actors([Plain("a"), Plain("b")], random=model.random)
    actors.append(Plain("c"))  # the list API of earlier versions
    actors.add(Plain("d"))
    gc.collect()  # no other reference to any of them
    assert [a.holder for a in actors] == ["a", "b", "c", "d"]
    assert actors.map("submit", 7) == [["a@7"], ["b@7"], ["c@7"], ["d@7"]]
    b = next(a for a in actors if a.holder == "b")
    actors.remove(b)
    actors.discard(b)  # already gone: no error
    assert [a.holder for a in actors] == ["a", "c", "d"] and len(actors) == 3
