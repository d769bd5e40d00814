"""`StressModel.run` steps each block without Mesa's per-step log line (issue 14: the wrapper formats a message every
block) but counts Mesa's `steps` as the wrapper does; a `step` replaced on the instance (a benchmark's timer) is still
the one called. Both paths must give the same run: the same recorder rows, events and step count."""

from __future__ import annotations

from defistress.scenarios.loader import load
from defistress.sim.engine.model import StressModel

OVERRIDES = [
    'run.duration="1h"',
    "agents.borrowers.accounts=200",
    "shocks.0.at=600",
    "shocks.1.at=600",
    "shocks.2.at=600",
]


def _model() -> StressModel:
    return StressModel(load("eth-crash", OVERRIDES), 1)


def test_run_counts_mesas_steps_and_gives_the_run_of_the_plain_step_loop():
    fast = _model()
    fast.run()
    plain = _model()
    while plain.env.clock.block < plain.n_blocks:  # Mesa's wrapped step, block by block
        plain.step()
    assert fast.steps == plain.steps == fast.n_blocks == 300
    assert repr(fast.recorder.rows) == repr(plain.recorder.rows)
    assert repr(fast.env.events) == repr(plain.env.events)
    assert any(type(e).__name__ == "Liquidated" for e in fast.env.events)  # a run in which something happens


def test_a_step_replaced_on_the_instance_is_the_one_run_calls():
    model = _model()
    calls = []
    inner = model.step

    def timed() -> None:
        calls.append(model.env.clock.block)
        inner()

    model.step = timed
    model.run()
    assert calls == list(range(model.n_blocks))
    assert model.steps == model.n_blocks  # Mesa's wrapper (`inner`) counted them
