"""Results stay the same: the seed-1 summary metrics of every built-in scenario at reduced size, pinned.

The expected values in tests/data/pinned_results.json were produced by `benchmarks/pinned_results.py` from the
code BEFORE the speed work of issue 14 (an independent run of the unoptimised engine), so every optimisation is
checked against that behaviour. Policy (stated in the file and in the script): integers, booleans and strings
exactly; floats within rtol 1e-9 + atol 1e-9 (sums may be reordered by an optimisation), unless listed as
bit-identical. A change meant to move results regenerates the file with the script and says so in its commit.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINNED = json.loads((ROOT / "tests" / "data" / "pinned_results.json").read_text())
_spec = importlib.util.spec_from_file_location("pinned_results", ROOT / "benchmarks" / "pinned_results.py")
assert _spec and _spec.loader
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def differences(expected: object, got: object, policy: dict, path: str = "") -> list[str]:
    """Every place where `got` departs from `expected` under the policy, as 'path: expected != got' lines."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in expected.keys() - got.keys()]
        out += [f"{path}.{k}: new metric" for k in got.keys() - expected.keys()]
        for k in expected.keys() & got.keys():
            out += differences(expected[k], got[k], policy, f"{path}.{k}")
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{path}: length {len(expected)} != {len(got)}"]
        return [d for i, (a, b) in enumerate(zip(expected, got)) for d in differences(a, b, policy, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(got, (float, int)) and not isinstance(got, bool):
        if path.lstrip(".") in policy["bit_identical"]:
            ok = expected == got
        else:
            ok = math.isclose(expected, got, rel_tol=policy["float_rtol"], abs_tol=policy["float_atol"])
        return [] if ok else [f"{path}: {expected!r} != {got!r}"]
    if type(expected) is not type(got) or expected != got:
        return [f"{path}: {expected!r} != {got!r} (exact)"]
    return []


def test_the_comparison_catches_a_moved_count_and_a_moved_float_but_not_a_reordered_sum():
    policy = PINNED["policy"]
    base = {"liquidations": 10, "bad_debt_usd": 1000.0, "names": ["a"]}
    assert differences(base, dict(base), policy) == []
    assert differences(base, {**base, "bad_debt_usd": 1000.0 * (1 + 1e-12)}, policy) == []
    assert differences(base, {**base, "liquidations": 11}, policy) == [".liquidations: 10 != 11 (exact)"]
    assert differences(base, {**base, "bad_debt_usd": 1000.001}, policy) == [".bad_debt_usd: 1000.0 != 1000.001"]
    assert differences(base, {"liquidations": 10, "names": ["a"]}, policy) == [".bad_debt_usd: missing"]


def test_every_builtin_is_pinned():
    from defistress.scenarios.registry import builtin_names

    assert {c["scenario"] for c in PINNED["cases"].values()} == set(builtin_names())
    assert set(PINNED["cases"]) == set(script.CASES)


@pytest.mark.parametrize("key", sorted(script.CASES))
def test_summary_metrics_match_the_pinned_run(key: str):
    case = PINNED["cases"][key]
    assert (case["scenario"], case["overrides"]) == (script.CASES[key][0], script.CASES[key][1])
    got = script.case_metrics(key)
    diffs = differences(case["metrics"], got, PINNED["policy"])
    assert not diffs, f"{key}: {len(diffs)} metrics moved:\n" + "\n".join(sorted(diffs)[:40])
