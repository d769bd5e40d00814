"""A fuzz test of the input contract (issue 15): hypothesis generates scenario documents and override lists, valid
and invalid (non-finite numbers, wrong types, out-of-range values, unknown keys, non-UTF-8 bytes), and every one
must end in exactly one of two ways:

- a keyed error: exit 2, one `error:` message naming a key of the scenario or the file, no traceback, and
  nothing written at --out; or
- a run: exit 0, every figure of summary.json finite, the ledger conserved, and the same outputs again for the
  same scenario and seed (reproducible).

Exit 1 (a failed run or an internal error) breaks the contract. `make test` runs a small derandomised budget
(FUZZ_EXAMPLES, default 12 per test); `make fuzz` runs a long random one (FUZZ_EXAMPLES=300).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import tomllib
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from defistress.scenarios.registry import builtin_path
from defistress.sim.cli.app import app

runner = CliRunner()
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
LONG = EXAMPLES > 50
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG,  # make test: the same examples every time; make fuzz: new ones
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: a small base run: few accounts and blocks, every shock inside the run
SMALL = {
    "calm": {"agents.borrowers.accounts": 120, "run.duration": "1h"},
    "eth-crash": {
        "agents.borrowers.accounts": 120,
        "run.duration": "1h",
        "shocks.0.at": "20m",
        "shocks.1.at": "20m",
        "shocks.2.at": "20m",
    },
}
#: keys whose values the fuzz varies (sizes, counts and durations stay small so every run is quick)
KEYS = [
    "market.assets.ETH.price",
    "market.assets.ETH.volatility",
    "market.assets.ETH.drift",
    "market.assets.USDC.peg",
    "market.assets.USDC.peg_volatility",
    "market.depth.ETH.usd_for_1pct",
    "market.depth.ETH.recovery_half_life",
    "market.external_fee",
    "oracles.chainlink-eth.deviation",
    "oracles.chainlink-eth.heartbeat",
    "venues.uni-eth-usdc.depth_usd",
    "venues.uni-eth-usdc.fee",
    "protocols.lend.assets.ETH.ltv",
    "protocols.lend.assets.ETH.liquidation_threshold",
    "protocols.lend.assets.ETH.liquidation_bonus",
    "protocols.lend.assets.ETH.interest.slope2",
    "protocols.lend.assets.USDC.supply_usd",
    "agents.borrowers.size_usd.median",
    "agents.borrowers.size_usd.sigma",
    "agents.borrowers.health_factor.min",
    "agents.borrowers.attentive_share",
    "agents.borrowers.reaction_delay",
    "agents.borrowers.wallet_share",
    "agents.borrowers.private",
    "agents.liquidator.capital_usd",
    "agents.liquidator.min_profit_usd",
    "agents.liquidator.private_orderflow",
    "agents.liquidator.latency_blocks",
    "agents.arbitrageur.capital_usd",
    "gas.base_fee_gwei",
    "gas.background_demand",
    "gas.liquidation_gas",
    "gas.eth_price_usd",
    "run.seed",
    "run.name",
    "run.block_seconds",
    "run.colour",
    "shocks.0.jump",
    "shocks.0.at",
    "shocks.1.until",
]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from([0, 1, -1, 0.5, 0.9, 1.5, 2, 12, 1e15, 1e16, 1e-9, 1e-300, 1e308, "1h", "30m", "5s", "nan"]),
    st.lists(st.integers(0, 3), max_size=2),
)


def _args(overrides: dict) -> list[str]:
    """--set arguments; values written in TOML syntax (strings quoted)."""
    out = []
    for k, v in overrides.items():
        text = tomli_w.dumps({"v": v})[4:].strip() if not isinstance(v, float) or math.isfinite(v) else str(v)
        out += ["--set", f"{k}={text}"]
    return out


def _check_contract(argv: list[str], out: Path, source: str) -> None:
    r = runner.invoke(app, argv)
    assert "Traceback" not in r.output, r.output
    if r.exit_code == 2:
        msg = r.stderr
        assert msg.strip(), "exit 2 without a message"
        assert not out.exists(), f"bad input, yet {out} was written"
        named = source in msg or "--" in msg or any(s in msg for s in ("run", "market", "oracles", "venues"))
        named = named or any(s in msg for s in ("protocols", "agents", "gas", "shocks", "margin"))
        assert named, f"the error names no key or file: {msg}"
        return
    assert r.exit_code == 0, f"contract broken: exit {r.exit_code}: {r.output}"
    summary = json.loads((out / "summary.json").read_text())
    bad = [v for v in _floats(summary) if not math.isfinite(v)]
    assert bad == [] and summary["conservation_ok"] is True
    again = runner.invoke(app, [*argv[:-4], "--out", str(out), "--force", "--quiet", "--no-report"])
    assert again.exit_code == 0, again.output
    summary2 = json.loads((out / "summary.json").read_text())
    assert summary2 == summary  # same scenario and seed: the same figures


def _floats(node):
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _floats(v)
    elif isinstance(node, list):
        for v in node:
            yield from _floats(v)


@FUZZ
@given(
    base=st.sampled_from(sorted(SMALL)),
    changes=st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=3),
)
def test_override_lists_end_in_a_keyed_error_or_a_sound_run(base, changes):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = ["run", base, *_args({**SMALL[base], **changes}), "--out", str(out), "--quiet", "--no-report"]
        _check_contract(argv, out, base)


def _leaves(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        for i, v in enumerate(node):
            yield from _leaves(v, (*prefix, i))
    else:
        yield prefix


BASE_DOC = tomllib.loads(builtin_path("calm").read_text())
BASE_DOC["run"]["duration"] = "1h"
BASE_DOC["agents"][0]["accounts"] = 120
SIZE_KEYS = {"accounts", "count", "duration"}
LEAVES = [p for p in _leaves(BASE_DOC) if p[-1] not in SIZE_KEYS]


def _set(doc: dict, path: tuple, value) -> None:
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _delete(doc: dict, path: tuple) -> None:
    node = doc
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]


MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(LEAVES), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(LEAVES), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from(LEAVES), st.from_regex(r"[a-z_]{1,8}", fullmatch=True)),
)


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3), garble=st.none() | st.binary(min_size=1, max_size=8))
def test_scenario_documents_end_in_a_keyed_error_or_a_sound_run(mutations, garble):
    doc = json.loads(json.dumps(BASE_DOC))
    for op, path, value in mutations:
        try:
            if op == "set":
                _set(doc, path, value)
            elif op == "delete":
                _delete(doc, path)
            else:
                _set(doc, (*path[:-1], f"x_{value}"), 1)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the table
    data = tomli_w.dumps(doc).encode()
    if garble is not None:  # bytes that are often not UTF-8, spliced into a comment line
        data = b"# " + garble.replace(b"\n", b" ") + b"\n" + data
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "scenario.toml"
        f.write_bytes(data)
        out = Path(tmp) / "run"
        _check_contract(["run", str(f), "--out", str(out), "--quiet", "--no-report"], out, str(f))
