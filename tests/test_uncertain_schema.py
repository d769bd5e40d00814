"""Declared uncertain inputs: keyed errors for malformed ranges and sets, and every end of every range checked
against the scenario when it loads (a design never draws a point the scenario refuses)."""

from __future__ import annotations

import pytest

from defistress.scenarios.loader import ScenarioError, load

BASE = {"name": "attentive_share", "key": "agents.vaults.attentive_share", "description": "test input"}


def _load_with(**kw):
    return load("black-thursday-maker", {"uncertain": [{**BASE, **kw}]})


def _errors(**kw) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        _load_with(**kw)
    return exc.value.errors


def test_a_valid_range_loads_and_its_ends_are_checked():
    s = _load_with(range=[0.2, 0.9]).scenario
    assert s.uncertain[0].range == (0.2, 0.9) and s.uncertain[0].keys == ["agents.vaults.attentive_share"]


def test_a_range_end_the_scenario_refuses_names_the_input_the_key_and_the_bound():
    (line,) = _errors(range=[0.5, 1.5])
    assert line.startswith("uncertain.attentive_share.range: 1.5 at agents.vaults.attentive_share is refused:")
    assert "agents.vaults.attentive_share: 1.5 is out of range; allowed: <= 1" in line


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"range": [0.6, 0.4]}, "uncertain.attentive_share.range: low must be below high"),
        ({"range": [0.1, 0.4], "values": [0.1, 0.2]}, "give `range` (continuous) or `values` (a set), exactly one"),
        ({"range": [0.0, 0.4], "scale": "log"}, "a log scale needs low > 0"),
        ({"values": [0.1, 0.1]}, "duplicate values"),
        ({"values": [0.1, 0.2], "integer": True}, "`scale` and `integer` apply to a range"),
        ({"range": [0.1, 0.4], "key": "agents vaults"}, "is not a key path"),
        ({"range": [0.1, 0.4], "name": "Bad Name"}, "uncertain.0.name"),
    ],
)
def test_malformed_inputs_are_keyed_errors(kw, expected):
    errors = _errors(**kw)
    assert any(expected in e for e in errors), errors


def test_two_inputs_may_not_set_the_same_key():
    again = {**BASE, "name": "again", "range": [0.3, 0.4]}
    with pytest.raises(ScenarioError) as exc:
        load("black-thursday-maker", {"uncertain": [{**BASE, "range": [0.2, 0.8]}, again]})
    assert any("set by more than one input" in e for e in exc.value.errors)


def test_every_builtin_replay_declares_valid_inputs_and_smoke_overrides():
    from defistress.sim.experiments.replay import replay_builtins

    names = replay_builtins()
    assert "black-thursday-maker" in names
    for name in names:
        s = load(name).scenario
        assert s.run.smoke, f"{name}: run.smoke (the reduced size of the smoke test) is missing"
        load(name, dict(s.run.smoke))  # the reduced size is a valid scenario
        for u in s.uncertain:
            assert u.description
