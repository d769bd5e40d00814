"""Mutation testing of the modules whose rules decide a crash (`make mutation`; not part of `make test`).

The tool is mutmut 3. mutmut derives a module's import name from its path and puts its `mutants/` copy first on
`sys.path`; the package here is mapped from top-level folders (`protocols/` installs as `defistress.protocols`),
so each group of modules (tests/mutation/modules.toml) is staged in `build/mutation/<group>/` as the installed
namespace (`defistress/protocols/ledger.py`, ...) with the tests beside it, and mutmut runs there, niced, one
worker, on that group's test files only. Results are read from mutmut's per-file `.meta` files; surviving
mutants that tests/mutation/equivalent.toml lists (matched by file, function and the changed lines) count as
equivalent. The report goes to tests/mutation/report.md and report.json (per module: mutants, killed,
survived, equivalent, score = killed / (mutants - equivalent)).

    .venv/bin/python tests/mutation/run.py              # every group, one after the other
    .venv/bin/python tests/mutation/run.py perps cdp    # some groups (the report keeps the others' results)
    .venv/bin/python tests/mutation/run.py --report     # rebuild the report from the staged results
    .venv/bin/python tests/mutation/run.py --since OLD/tests/mutation/report.json   # re-test only what survived
    .venv/bin/python tests/mutation/run.py coordinator --since OLD/report.json --unchecked  # and what it did not reach
    .venv/bin/python tests/mutation/run.py scenario_pm --since OLD/report.json --only '*requirements__mutmut_2[67]'

With `--since` a previous report of the same source files (same sha256) is the starting point: its killed mutants
stay killed (tests were only added since), the others are run again, and the report shows both scores.

    .venv/bin/python tests/mutation/run.py lending --keep   # reuse build/mutation/lending: re-run what is not killed
    .venv/bin/python tests/mutation/run.py lending --keep --function LendingMarket.liquidate   # ... of one function

With `--keep` the group's staged tree (and mutmut's verdicts in its `mutants/**/*.meta`) is kept instead of wiped:
the sources are refreshed file by file (a file is rewritten only when its content changed, so mutmut re-generates
only that file's mutants and, comparing its per-function hashes, resets only the mutants of the functions that
changed; the others keep their verdicts), the tests are copied afresh, mutmut's test-to-function map
(`mutants/mutmut-stats.json`) is collected again for today's test list, and the mutants in scope that are not
killed (survived, no tests, not checked, and every mutant of a changed function) are run, except survivors that
tests/mutation/equivalent.toml lists. Killed mutants of
unchanged functions stay killed: this assumes tests were only added since (the group's earlier test files must
all still be in its list, and the pytest options unchanged, else `--keep` refuses) and, as mutmut itself does,
that a killed mutant stays killed when a function it calls changes. It is the cheap way to re-score after new
tests or after a change to a few functions; a plain run (no `--keep`) starts over.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD = ROOT / "build" / "mutation"
#: repository folder -> its place in the installed namespace (pyproject.toml [tool.setuptools] package-dir)
PACKAGE_DIR = {"defistress": "defistress", "sim": "defistress/sim", "agents": "defistress/agents"}
PACKAGE_DIR |= {"protocols": "defistress/protocols", "scenarios": "defistress/scenarios"}
#: mutmut exit codes (mutmut/stats.py status_by_exit_code) -> our verdicts; a timeout counts as killed, a mutant
#: no test calls as survived, and one an interrupted run did not reach is "not checked" (outside the score)
KILLED, SURVIVED, NO_TESTS, TIMEOUT, NOT_CHECKED = "killed", "survived", "no tests", "timeout", "not checked"
#: pytest options of every mutant run: a fixed hypothesis seed makes a verdict reproducible; the mutation profile
#: (tests/conftest.py) does not shrink failing examples
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "--hypothesis-seed=0", "--hypothesis-profile=mutation"]
PYTEST_ARGS += ["-W", "ignore::DeprecationWarning"]


def verdict(exit_code: int | None) -> str:
    if exit_code in (1, 3):
        return KILLED
    if exit_code == 0:
        return SURVIVED
    if exit_code is None:
        return NOT_CHECKED
    if exit_code in (5, 33):
        return NO_TESTS
    if exit_code in (24, -24, 36, 152, 255):
        return TIMEOUT
    return KILLED  # crashes (segfault, internal error) of a mutant are detections too


def carried(now: str, earlier: str | None) -> str:
    """The verdict of a mutant in a `--since` run: one the (interrupted) re-run did not reach keeps its earlier
    verdict (a survivor stays a survivor), so cutting a re-run short never raises a score."""
    return earlier if now == NOT_CHECKED and earlier is not None else now


def staged_path(repo_path: str) -> str:
    """`protocols/ledger.py` -> `defistress/protocols/ledger.py`."""
    top, _, rest = repo_path.partition("/")
    return f"{PACKAGE_DIR[top]}/{rest}"


def load_groups() -> dict[str, dict]:
    with open(HERE / "modules.toml", "rb") as f:
        return tomllib.load(f)


def in_scope(function: str, repo_path: str, functions: dict | None) -> bool:
    """Whether a group's `functions` list (none: every function) covers this function of this file."""
    return functions is None or function in functions.get(repo_path, [])


def load_equivalents() -> list[dict]:
    with open(HERE / "equivalent.toml", "rb") as f:
        return tomllib.load(f).get("equivalent", [])


IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "mutation")


def test_selection(group: dict) -> list[str]:
    return [t for t in group["tests"] if (ROOT / t).exists()]


def pytest_args(group: dict) -> list[str]:
    """The pytest options of a group's mutant runs: PYTEST_ARGS and the group's `deselect` list (slow tests)."""
    return PYTEST_ARGS + [f"--deselect={t}" for t in group.get("deselect", [])]


def write_config(dest: Path, group: dict) -> None:
    """mutmut's configuration of a staged group (dest/pyproject.toml)."""
    toml_list = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    (dest / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["defistress"]\n'
        f"only_mutate = {toml_list(staged_path(p) for p in group['mutate'])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(test_selection(group))}\n"
        f"pytest_add_cli_args = {toml_list(pytest_args(group))}\n"
        "use_git_change_detection = false\n\n"
        "[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        'filterwarnings = ["ignore::DeprecationWarning:mesa.*"]\n'
    )


def stage(name: str, group: dict) -> Path:
    """A fresh tree for one group: the package as installed, the tests, and mutmut's configuration."""
    dest = BUILD / name
    if dest.exists():
        shutil.rmtree(dest)
    for src, target in PACKAGE_DIR.items():
        shutil.copytree(ROOT / src, dest / target, ignore=IGNORE, dirs_exist_ok=True)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=IGNORE)
    write_config(dest, group)
    return dest


def sync_sources(src: Path, target: Path, mutated: Path) -> list[str]:
    """Make `target` hold `src`'s files, rewriting only those whose content differs (their new mtime tells mutmut
    to re-generate them) and removing those gone (also from mutmut's copy under `mutated`). Files changed."""
    changed = []
    keep = set()
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in IGNORE(root, dirs)]
        for f in set(files) - IGNORE(root, files):
            s = Path(root) / f
            rel = s.relative_to(src)
            keep.add(rel)
            t = target / rel
            if not t.exists() or t.read_bytes() != s.read_bytes():
                t.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(s, t)  # a new mtime, newer than mutmut's mutated copy
                changed.append(str(rel))
    nested = {target.parent / t for t in PACKAGE_DIR.values()} - {target}  # defistress/sim lies in defistress/
    for root, dirs, files in os.walk(target):
        dirs[:] = [d for d in dirs if d not in IGNORE(root, dirs) and Path(root) / d not in nested]
        for f in set(files) - IGNORE(root, files):
            rel = (Path(root) / f).relative_to(target)
            if rel not in keep:
                (target / rel).unlink()
                (mutated / rel).unlink(missing_ok=True)
                changed.append(f"{rel} (removed)")
    return changed


def refresh(name: str, group: dict) -> Path:
    """`--keep`: the group's staged tree brought up to date without losing mutmut's verdicts (module docstring);
    a group never staged is staged afresh."""
    dest = BUILD / name
    if not (dest / "mutants").exists():
        return stage(name, group)
    with open(dest / "pyproject.toml", "rb") as f:
        was = tomllib.load(f)["tool"]["mutmut"]
    dropped = sorted(set(was["pytest_add_cli_args_test_selection"]) - set(test_selection(group)))
    if was["pytest_add_cli_args"] != pytest_args(group) or dropped:
        raise SystemExit(
            f"--keep cannot reuse {dest}: the pytest options changed or test files left the group ({dropped}); "
            "its killed mutants may not be killed any more: run the group without --keep"
        )
    for src, target in PACKAGE_DIR.items():
        for rel in sync_sources(ROOT / src, dest / target, dest / "mutants" / target):
            print(f"[{name}] source refreshed: {target}/{rel}", flush=True)
    for tests in (dest / "tests", dest / "mutants" / "tests"):  # mutmut copies tests/ into mutants/ when it runs
        shutil.rmtree(tests, ignore_errors=True)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=IGNORE)
    write_config(dest, group)
    # the verdicts live in the .meta files; without its stats mutmut maps every test of today's list to the
    # functions it calls afresh (and skips its config-fingerprint check, which would reset every verdict because
    # the test list grew)
    (dest / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    return dest


#: mutmut's mutant generation alone, in a staged tree: the .meta files then list today's mutants, those of a
#: changed function with no verdict (mutmut/__main__.py: create_mutants_for_file, hash_by_function_name)
GENERATE = (
    "from mutmut.__main__ import create_mutants\n"
    "from mutmut.mutation.trampoline import set_mutant_under_test\n"
    "from mutmut.utils.file_utils import copy_src_dir, setup_source_paths\n"
    "set_mutant_under_test('mutant_generation')\n"
    "copy_src_dir()\n"
    "setup_source_paths()\n"
    "create_mutants(1)\n"
)


def not_killed(dest: Path, group: dict, equivalents: list[dict], functions_only: list[str] | None = None) -> list[str]:
    """`--keep`: the mutants in scope of a refreshed tree that are not killed (after mutmut re-generated them), less
    the survivors tests/mutation/equivalent.toml lists (no test can kill them: running them again is wasted)."""
    subprocess.run(
        ["nice", "-n", "15", sys.executable, "-c", GENERATE],
        cwd=dest,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    functions = group.get("functions")
    out = []
    cwd = os.getcwd()
    os.chdir(dest)  # mutmut reads its mutants relative to the working directory
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        for p in group["mutate"]:
            meta = json.loads((dest / "mutants" / f"{staged_path(p)}.meta").read_text())
            for key, code in sorted(meta["exit_code_by_key"].items()):
                v = verdict(code)
                if v in (KILLED, TIMEOUT) or not in_scope(function_of(key), p, functions):
                    continue
                if functions_only and function_of(key) not in functions_only:
                    continue
                if v != NOT_CHECKED:
                    removed, added = changed_lines(get_diff_for_mutant(key, path=staged_path(p)))
                    if equivalence(p, function_of(key), removed, added, equivalents):
                        continue
                out.append(key)
    finally:
        os.chdir(cwd)
    return out


def run_mutmut(name: str, dest: Path, only: list[str] | None = None) -> float:
    """mutmut in the staged tree, niced, one worker, on every mutant or `only` these; its log goes to
    build/mutation/<group>.log. Seconds taken."""
    mutmut = Path(sys.executable).parent / "mutmut"
    t0 = time.monotonic()
    with open(BUILD / f"{name}.log", "w") as log:
        proc = subprocess.run(
            ["nice", "-n", "15", str(mutmut), "run", "--max-children", "1", *(only or [])],
            cwd=dest,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    if proc.returncode != 0:
        raise SystemExit(f"mutmut failed for group {name!r} (exit {proc.returncode}); see {BUILD / (name + '.log')}")
    return time.monotonic() - t0


@dataclass
class Mutant:
    key: str  # mutmut's name, e.g. defistress.protocols.ledger.xǁLedgerǁ_debit__mutmut_8
    function: str  # Ledger._debit
    verdict: str
    removed: list[str] = field(default_factory=list)  # the changed lines, stripped
    added: list[str] = field(default_factory=list)
    equivalent: str = ""  # the reason, when tests/mutation/equivalent.toml lists it


def module_of(repo_path: str) -> str:
    """`protocols/perps.py` -> `defistress.protocols.perps` (mutmut's module name of the staged file)."""
    return staged_path(repo_path)[: -len(".py")].replace("/", ".")


def mutant_glob(repo_path: str, function: str) -> str:
    """mutmut's name pattern of one function's mutants: `PerpDex.liquidate` -> ...xǁPerpDexǁliquidate__mutmut_*."""
    cls, _, fn = function.rpartition(".")
    mangled = f"xǁ{cls}ǁ{fn}" if cls else f"x_{fn}"
    return f"{module_of(repo_path)}.{mangled}__mutmut_*"


def function_of(key: str) -> str:
    mangled = key.rpartition(".")[2].partition("__mutmut_")[0]
    return mangled[2:].replace("ǁ", ".").strip(".") if mangled.startswith("x") else mangled


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    body = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++", "@@"))]
    return (
        [ln[1:].strip() for ln in body if ln.startswith("-")],
        [ln[1:].strip() for ln in body if ln.startswith("+")],
    )


def equivalence(repo_path: str, function: str, removed: list[str], added: list[str], equivalents: list[dict]) -> str:
    """The reason tests/mutation/equivalent.toml gives for this change, or ''."""
    for eq in equivalents:
        if (
            eq["file"] == repo_path
            and eq["function"] == function
            and [s.strip() for s in eq["original"].splitlines()] == removed
            and [s.strip() for s in eq["mutant"].splitlines()] == added
        ):
            return eq["reason"]
    return ""


def read_results(
    dest: Path,
    repo_path: str,
    equivalents: list[dict],
    killed_before: set[str] = frozenset(),
    functions: list[str] | None = None,
    earlier: dict[str, str] | None = None,
) -> list:
    """Every mutant of one file (of `functions` only, if given) with its verdict (those in `killed_before` stay
    killed, those a re-run did not reach keep their `earlier` verdict); survivors carry their diff and, if listed,
    the equivalence."""
    rel = staged_path(repo_path)
    meta = json.loads((dest / "mutants" / f"{rel}.meta").read_text())
    out = []
    cwd = os.getcwd()
    os.chdir(dest)  # mutmut reads its mutants relative to the working directory
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        for key, code in sorted(meta["exit_code_by_key"].items()):
            if functions is not None and function_of(key) not in functions:
                continue
            now = KILLED if key in killed_before else verdict(code)
            m = Mutant(key, function_of(key), carried(now, (earlier or {}).get(key)))
            if m.verdict in (SURVIVED, NO_TESTS):
                m.removed, m.added = changed_lines(get_diff_for_mutant(key, path=rel))
                m.equivalent = equivalence(repo_path, m.function, m.removed, m.added, equivalents)
            out.append(m)
    finally:
        os.chdir(cwd)
    return out


def sha256(repo_path: str) -> str:
    return hashlib.sha256((ROOT / repo_path).read_bytes()).hexdigest()


def before_summary(prev: dict, repo_path: str, equivalents: list[dict]) -> dict:
    """A previous run's summary with today's list of equivalent mutants."""
    ms = [
        Mutant(
            m["key"],
            m["function"],
            m["verdict"],
            equivalent=equivalence(repo_path, m["function"], m["removed"], m["added"], equivalents)
            if m["verdict"] in (SURVIVED, NO_TESTS)
            else "",
        )
        for m in prev["mutants"]
    ]
    return summarise(ms)


def summarise(mutants: list[Mutant]) -> dict:
    unchecked = sum(m.verdict == NOT_CHECKED for m in mutants)
    mutants = [m for m in mutants if m.verdict != NOT_CHECKED]
    n = len(mutants)
    killed = sum(m.verdict in (KILLED, TIMEOUT) for m in mutants)
    equivalent = sum(bool(m.equivalent) for m in mutants)
    survived = n - killed - equivalent
    return {
        "mutants": n,
        "killed": killed,
        "timeouts": sum(m.verdict == TIMEOUT for m in mutants),
        "survived": survived,
        "no_tests": sum(m.verdict == NO_TESTS and not m.equivalent for m in mutants),
        "equivalent": equivalent,
        "score": killed / (n - equivalent) if n > equivalent else 1.0,
        "not_checked": unchecked,
    }


def write_report(results: dict) -> None:
    (HERE / "report.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    lines = [
        "# Mutation testing report",
        "",
        "Written by `make mutation` (tests/mutation/run.py, mutmut 3). Score = killed / (mutants - equivalent);",
        "a timeout counts as killed. Equivalent mutants and their reasons: tests/mutation/equivalent.toml.",
        "",
        "A run that was interrupted leaves mutants not checked: they are counted apart and kept out of the score.",
        "",
        "| module | mutants | killed | survived | equivalent | score | not checked | score before the new tests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path, r in results["modules"].items():
        s, b = r["summary"], r.get("before")
        was = f"{b['score']:.1%} of {b['mutants']}" if b else ""
        lines.append(
            f"| {path} | {s['mutants']} | {s['killed']} | {s['survived']} | {s['equivalent']} | {s['score']:.1%} "
            f"| {s.get('not_checked', 0)} | {was} |"
        )
    for path, r in results["modules"].items():
        left = [m for m in r["mutants"] if m["verdict"] in (SURVIVED, NO_TESTS) and not m["equivalent"]]
        if left:
            lines += ["", f"## Surviving mutants of {path}", ""]
            for m in left:
                change = f"`{' / '.join(m['removed'])}` -> `{' / '.join(m['added'])}`"
                lines.append(f"- {m['function']} ({m['verdict']}): {change}")
    (HERE / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", help="groups of tests/mutation/modules.toml (default: all)")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from build/mutation")
    ap.add_argument("--since", type=Path, help="a previous report.json: re-test only the mutants it did not kill")
    ap.add_argument("--before", type=Path, help="the report whose scores the 'before' column shows (default: --since)")
    ap.add_argument(
        "--unchecked", action="store_true", help="with --since, also run the mutants it did not reach (in scope)"
    )
    ap.add_argument(
        "--only", nargs="+", metavar="PATTERN", help="with --since, run only the mutants whose names match (fnmatch)"
    )
    ap.add_argument(
        "--keep", action="store_true", help="reuse the staged tree and mutmut's verdicts: re-run what is not killed"
    )
    ap.add_argument(
        "--function",
        action="append",
        help="with --keep, only the mutants of this function (e.g. LendingMarket.liquidate; repeatable)",
    )
    args = ap.parse_args()
    if args.keep and (args.since or args.report):
        raise SystemExit("--keep works from the staged verdicts: it takes neither --since nor --report")
    since = json.loads(args.since.read_text())["modules"] if args.since else {}
    first = json.loads(args.before.read_text())["modules"] if args.before else since
    groups = load_groups()
    unknown = sorted(set(args.groups) - set(groups))
    if unknown:
        raise SystemExit(f"unknown group(s) {unknown}; allowed: {sorted(groups)}")
    chosen = args.groups or list(groups)
    equivalents = load_equivalents()
    report_path = HERE / "report.json"
    results = json.loads(report_path.read_text()) if report_path.exists() else {"modules": {}}
    BUILD.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        group = groups[name]
        dest = BUILD / name
        seconds = None
        # a module whose source is unchanged since carries its earlier verdicts; one that changed is run again whole
        old = {p: since[p] for p in group["mutate"] if p in since and since[p].get("sha256") == sha256(p)}
        killed_before = {m["key"] for o in old.values() for m in o["mutants"] if m["verdict"] in (KILLED, TIMEOUT)}
        functions = group.get("functions")  # {path: [function, ...]}: the rules in scope, else every function
        if args.keep:
            dest = refresh(name, group)
            only = not_killed(dest, group, equivalents, args.function)
            print(f"[{name}] kept {dest}: running mutmut on the {len(only)} mutants in scope not killed", flush=True)
            if only:
                seconds = run_mutmut(name, dest, only)
        elif not args.report:
            # what the earlier run checked and did not kill (what it did not reach stays not checked)
            only = [
                m["key"]
                for p, o in old.items()
                for m in o["mutants"]
                if m["key"] not in killed_before
                and (m["verdict"] != NOT_CHECKED or args.unchecked and in_scope(m["function"], p, functions))
            ]
            if args.only:  # the others keep their verdicts of --since
                only = [k for k in only if any(fnmatch.fnmatchcase(k, pat) for pat in args.only)]
            for p in (p for p in group["mutate"] if p not in old):  # changed since (or no --since): all its mutants
                only += (
                    [mutant_glob(p, f) for f in functions[p]] if functions and p in functions else [module_of(p) + ".*"]
                )
            what = (
                f"{len(only)} mutants or patterns left by {args.since}"
                if old
                else "the functions in scope"
                if functions
                else "all"
            )
            print(f"[{name}] staging and running mutmut on {', '.join(group['mutate'])}: {what}", flush=True)
            if old and not only:
                continue
            seconds = run_mutmut(name, stage(name, group), only if (old or functions) else None)
        elif not (dest / "mutants").exists():
            continue
        for path in group["mutate"]:
            earlier = {m["key"]: m["verdict"] for o in old.values() for m in o["mutants"]}
            mutants = read_results(dest, path, equivalents, killed_before, (functions or {}).get(path), earlier)
            prev = results["modules"].get(path, {})
            if path in first and first[path].get("sha256") == sha256(path):
                before = before_summary(first[path], path, equivalents)
            else:  # the previous run's "before" column, if it was of today's source
                before = prev.get("before") if prev.get("sha256") == sha256(path) else None
            results["modules"][path] = {
                "group": name,
                "sha256": sha256(path),
                "seconds": round(seconds, 1) if seconds is not None else prev.get("seconds"),
                "summary": summarise(mutants),
                "before": before,
                "mutants": [m.__dict__ for m in mutants],
            }
            s = results["modules"][path]["summary"]
            print(
                f"[{name}] {path}: {s['mutants']} mutants, {s['killed']} killed, {s['survived']} survived, "
                f"{s['equivalent']} equivalent: score {s['score']:.1%}",
                flush=True,
            )
        order = [p for g in groups.values() for p in g["mutate"]]
        results["modules"] = {p: results["modules"][p] for p in order if p in results["modules"]}
        write_report(results)  # after each group: a long run interrupted keeps what it finished


if __name__ == "__main__":
    main()
