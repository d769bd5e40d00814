"""The mutation-testing set-up (tests/mutation): its module map agrees with the package layout, every listed
file and test exists, every equivalent mutant still names a line of its file, and the driver reads mutmut's
names and diffs correctly. (The mutation run itself is `make mutation`, not part of the test suite.)"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutation_run", ROOT / "tests" / "mutation" / "run.py")
assert spec is not None and spec.loader is not None
run = importlib.util.module_from_spec(spec)
sys.modules["mutation_run"] = run  # dataclasses look their module up there
spec.loader.exec_module(run)


def test_package_map_is_the_one_pyproject_installs():
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    # pyproject: namespace -> folder; the driver: folder -> staged path of that namespace
    assert {folder: ns.replace(".", "/") for ns, folder in package_dir.items()} == run.PACKAGE_DIR
    assert run.staged_path("protocols/ledger.py") == "defistress/protocols/ledger.py"
    assert run.staged_path("sim/engine/gas.py") == "defistress/sim/engine/gas.py"


def test_every_group_names_existing_modules_and_test_files():
    groups = run.load_groups()
    assert set(groups) == {
        "ledger",
        "lending",
        "exact_sums",
        "cdp",
        "perps",
        "options",
        "coordinator",
        "engine",
        "scenario_pm",
    }
    for name, g in groups.items():
        assert g["mutate"] and g["tests"], name
        for path in g["mutate"] + g["tests"]:
            assert (ROOT / path).is_file(), f"{name}: {path}"


def test_every_equivalent_mutant_names_a_line_of_its_file_and_a_reason():
    for eq in run.load_equivalents():
        source = [ln.strip() for ln in (ROOT / eq["file"]).read_text().splitlines()]
        for line in eq["original"].splitlines():
            assert line.strip() in source, f"{eq['file']} {eq['function']}: no line {line.strip()!r}"
        assert eq["mutant"].strip() != eq["original"].strip()
        assert len(eq["reason"]) > 20 and "\n" not in eq["reason"]


def test_function_names_and_changed_lines_are_read_from_mutmut_output():
    assert run.function_of("defistress.protocols.ledger.xǁLedgerǁ_debit__mutmut_8") == "Ledger._debit"
    assert run.function_of("defistress.sim.engine.gas.x_next_base_fee__mutmut_3") == "next_base_fee"
    diff = (
        "--- defistress/protocols/ledger.py\n+++ defistress/protocols/ledger.py\n@@ -1,7 +1,7 @@\n"
        " def _debit(self, token, frm, amount):\n-    if have < amount:\n+    if have <= amount:\n         pass"
    )
    assert run.changed_lines(diff) == (["if have < amount:"], ["if have <= amount:"])


@pytest.mark.parametrize(
    "code, verdict",
    [(1, "killed"), (3, "killed"), (0, "survived"), (33, "no tests"), (None, "not checked"), (36, "timeout")],
)
def test_mutmut_exit_codes_map_to_verdicts(code, verdict):
    assert run.verdict(code) == verdict


def test_summary_counts_equivalents_out_of_the_score():
    ms = [run.Mutant("k", "f", "killed")] * 8 + [run.Mutant("k", "f", "timeout")]
    ms += [run.Mutant("k", "f", "survived", equivalent="same value"), run.Mutant("k", "f", "survived")]
    s = run.summarise(ms)
    # 11 mutants: 9 killed (a timeout counts), 1 equivalent, 1 survived -> 9 / (11 - 1) = 90%
    assert (s["mutants"], s["killed"], s["equivalent"], s["survived"]) == (11, 9, 1, 1)
    assert s["score"] == pytest.approx(0.9)


def test_scoped_functions_exist_in_their_modules():
    for name, g in run.load_groups().items():
        for path, functions in g.get("functions", {}).items():
            assert path in g["mutate"], name
            source = (ROOT / path).read_text()
            for f in functions:
                assert f"def {f.rpartition('.')[2]}(" in source, f"{name}: {path} has no {f}"
    assert run.mutant_glob("protocols/perps.py", "PerpDex.liquidate") == (
        "defistress.protocols.perps.xǁPerpDexǁliquidate__mutmut_*"
    )
    assert (
        run.mutant_glob("sim/engine/blocks.py", "build_block") == "defistress.sim.engine.blocks.x_build_block__mutmut_*"
    )


def test_mutants_an_interrupted_run_did_not_reach_are_kept_out_of_the_score():
    ms = [run.Mutant("k", "f", "killed")] * 9 + [run.Mutant("k", "f", "survived")]
    ms += [run.Mutant("k", "f", "not checked")] * 5
    s = run.summarise(ms)
    assert (s["mutants"], s["killed"], s["not_checked"]) == (10, 9, 5) and s["score"] == pytest.approx(0.9)


def test_a_cut_short_rerun_keeps_the_earlier_verdict_of_what_it_did_not_reach():
    assert run.carried("not checked", "survived") == "survived"  # not reached again: still a survivor
    assert run.carried("killed", "survived") == "killed"  # reached and killed by a new test
    assert run.carried("survived", "survived") == "survived"
    assert run.carried("not checked", None) == "not checked"  # never checked at all


def test_unchecked_mutants_are_rerun_only_inside_a_groups_scope():
    # --since --unchecked re-runs what an earlier run did not reach, of the functions the group scores
    scope = {"protocols/perps.py": ["PerpDex.liquidate"]}
    assert run.in_scope("PerpDex.liquidate", "protocols/perps.py", scope)
    assert not run.in_scope("PerpDex.open_accounts", "protocols/perps.py", scope)
    assert not run.in_scope("PerpDex.liquidate", "protocols/lending.py", scope)
    assert run.in_scope("anything", "protocols/ledger.py", None)  # no list: every function


def test_keep_refreshes_only_changed_sources_and_leaves_the_nested_namespaces(tmp_path):
    """`run.py --keep`: a file is rewritten only when its content changed (a new mtime makes mutmut re-generate
    it), a file gone from the repository leaves the staged tree and mutmut's copy, and the namespaces staged inside
    `defistress/` (sim, protocols, ...) are not taken for files gone from the top-level `defistress/` folder."""
    src, stage = tmp_path / "src", tmp_path / "stage"
    target, mutated = stage / "defistress", stage / "mutants" / "defistress"
    for d in (src, target / "sim", mutated):
        d.mkdir(parents=True)
    (src / "a.py").write_text("a = 1\n")
    (src / "b.py").write_text("b = 1\n")
    (target / "a.py").write_text("a = 1\n")
    (target / "b.py").write_text("b = 0\n")
    (target / "gone.py").write_text("")
    (mutated / "gone.py").write_text("")
    (target / "sim" / "x.py").write_text("")
    a_mtime = (target / "a.py").stat().st_mtime_ns
    assert sorted(run.sync_sources(src, target, mutated)) == ["b.py", "gone.py (removed)"]
    assert (target / "b.py").read_text() == "b = 1\n" and (target / "a.py").stat().st_mtime_ns == a_mtime
    assert not (target / "gone.py").exists() and not (mutated / "gone.py").exists()
    assert (target / "sim" / "x.py").exists()
