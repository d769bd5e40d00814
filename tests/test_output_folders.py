"""Nothing lost (issue 15 items 1-3, 16, 17's `--out .`, 18's folder modes and SIGTERM): a command writes into a
folder only if it is new, empty or its own kind of folder; everything else is refused before any block is
simulated, with exit 2, the option and path named, and the place left exactly as it was.

The commands are the issue's reproductions on a shrunk eth-crash (S below)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defistress.sim.cli.app import app
from defistress.sim.experiments import outdir
from defistress.sim.experiments.outdir import MARKER, OutputFolderError, check_out, staged

runner = CliRunner()
S = ["--set", "agents.borrowers.accounts=300", "--set", "run.duration=1h", "--set", "shocks.0.at=30m"]
S += ["--set", "shocks.1.at=1h", "--set", "shocks.2.at=1h"]
PM = [  # inter-protocol-pm, tiny
    "--set",
    "run.duration=30m",
    *sum([["--set", f"agents.{a}=20"] for a in ("hedged.accounts", "borrowers.accounts")], []),
    *sum(
        [
            ["--set", f"agents.{a}.params.accounts={n}"]
            for a, n in (("traders", 20), ("writers", 20), ("delta-hedgers", 10), ("protection-buyers", 20))
        ],
        [],
    ),
    *sum([["--set", f"shocks.{i}.at=10m"] for i in range(3)], []),
]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` (relative name -> bytes), to show a place is untouched."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def run(*args: str):
    return runner.invoke(app, list(args))


# --- item 1: a folder holding a user's file is never written into ------------------------------------
def test_run_refuses_a_folder_holding_a_users_file_and_leaves_it_as_it_was(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "thesis.txt").write_text("four years of work")
    before = snapshot(d)
    r = run("run", "eth-crash", *S, "--out", str(d), "--quiet")
    assert r.exit_code == 2
    assert "--out" in r.stderr and str(d) in r.stderr and "not a defistress run folder" in r.stderr
    assert snapshot(d) == before and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_an_earlier_run_is_replaced_only_with_force(tmp_path):
    d = tmp_path / "d"
    assert run("run", "eth-crash", *S, "--out", str(d), "--quiet", "--no-report").exit_code == 0
    first = snapshot(d)
    assert json.loads((d / MARKER).read_text())["kind"] == "run"
    r = run("run", "eth-crash", *S, "--seed", "2", "--out", str(d), "--quiet", "--no-report")
    assert r.exit_code == 2 and "--force" in r.stderr and snapshot(d) == first
    r = run("run", "eth-crash", *S, "--seed", "2", "--out", str(d), "--quiet", "--no-report", "--force")
    assert r.exit_code == 0, r.output
    assert json.loads((d / "summary.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary or .old folder left


def test_an_empty_folder_is_used(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    assert run("run", "eth-crash", *S, "--out", str(d), "--quiet", "--no-report").exit_code == 0
    assert (d / "summary.json").is_file()


# --- item 2: a file, and the same for compare (sweep: see its owner's tests) --------------------------
def test_run_refuses_an_out_that_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("keep me")
    r = run("run", "eth-crash", *S, "--out", str(f), "--quiet")
    assert r.exit_code == 2 and "is a file" in r.stderr
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("what", ["file", "folder"])
def test_compare_refuses_a_users_file_or_folder(tmp_path, what):
    target = tmp_path / "c"
    if what == "file":
        target.write_text("keep me")
    else:
        target.mkdir()
        (target / "notes.md").write_text("keep me")
    before = snapshot(target)
    r = run("compare", "inter-protocol-pm", *PM, "--out", str(target), "--quiet")
    assert r.exit_code == 2 and "--out" in r.stderr and str(target) in r.stderr
    assert snapshot(target) == before


def test_compare_refuses_a_folder_of_another_configuration_unless_force(tmp_path):
    c = tmp_path / "c"
    outdir.make_folder(c, "compare", {"scenario": "inter-protocol-pm", "scenario_sha256": "0" * 64})
    (c / "silo-seed1").mkdir()
    r = run("compare", "inter-protocol-pm", *PM, "--out", str(c), "--quiet")
    assert r.exit_code == 2 and "different configuration" in r.stderr and "--force" in r.stderr
    assert (c / "silo-seed1").is_dir()


@pytest.mark.parametrize(
    "argv",
    [
        ["margin", "compare", "scenarios/portfolios/example_books.toml", "--models", "aave-v3"],
        ["schema"],
        ["graph", "calm"],
    ],
)
def test_every_command_that_writes_refuses_a_users_folder_or_file(tmp_path, argv):
    root = Path(__file__).resolve().parents[1]
    argv = [str(root / a) if a.endswith(".toml") else a for a in argv]
    target = tmp_path / ("x.json" if argv[0] == "schema" else "x.png" if argv[0] == "graph" else "x")
    if argv[0] in ("schema", "graph"):
        target.write_text("keep me")  # an existing file is replaced only with --force
    else:
        target.mkdir()
        (target / "mine.txt").write_text("keep me")
    before = snapshot(target)
    r = run(*argv, "--out", str(target))
    assert r.exit_code == 2, r.output
    assert str(target) in r.stderr and snapshot(target) == before


# --- item 3: --out problems are found before the run ---------------------------------------------------
@pytest.mark.parametrize("case", ["under-a-file", "dot"])
def test_out_problems_are_found_before_the_run_starts(tmp_path, case, monkeypatch):
    import defistress.sim.engine.model as model_module

    def no_run(*a, **k):
        raise AssertionError("the run started although --out is unusable")

    monkeypatch.setattr(model_module.StressModel, "run", no_run)
    if case == "under-a-file":
        (tmp_path / "file").write_text("x")
        out, words = str(tmp_path / "file" / "run"), "is a file"
    else:
        monkeypatch.chdir(tmp_path)
        out, words = ".", "not '.' or '..'"
    r = run("run", "eth-crash", *S, "--out", out, "--quiet")
    assert r.exit_code == 2 and words in r.stderr and "--out" in r.stderr


def test_an_unwritable_place_is_refused_before_the_run(tmp_path, monkeypatch):
    """Unwritable as seen by os.access (tests may run as root, who can write anywhere)."""
    import defistress.sim.engine.model as model_module

    monkeypatch.setattr(outdir.os, "access", lambda p, mode: False)
    monkeypatch.setattr(model_module.StressModel, "run", lambda *a, **k: pytest.fail("the run started"))
    with pytest.raises(OutputFolderError, match="is not writable"):
        check_out(tmp_path / "run", "run")
    r = run("run", "eth-crash", *S, "--out", str(tmp_path / "run"), "--quiet")
    assert r.exit_code == 2 and "is not writable" in r.stderr and not (tmp_path / "run").exists()


# --- item 16: graph and schema outputs ----------------------------------------------------------------
def test_graph_refuses_an_unknown_image_type_and_a_path_under_a_file(tmp_path):
    r = run("graph", "calm", "--out", str(tmp_path / "net.xyz"))
    assert r.exit_code == 2 and "'.xyz'" in r.stderr and ".png" in r.stderr
    (tmp_path / "file").write_text("x")
    r = run("graph", "calm", "--out", str(tmp_path / "file" / "x.png"))
    assert r.exit_code == 2 and "is a file" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_schema_out_creates_missing_folders(tmp_path):
    f = tmp_path / "missing" / "dir" / "x.json"
    r = run("schema", "--out", str(f))
    assert r.exit_code == 0, r.output
    assert json.loads(f.read_text())["title"] == "Scenario"


# --- item 18: modes follow the umask ------------------------------------------------------------------
def test_run_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        d = tmp_path / "d"
        assert run("run", "calm", "--set", "run.duration=1h", "--out", str(d), "--quiet", "--no-report").exit_code == 0
        assert (d.stat().st_mode & 0o777) == 0o755
        assert ((d / "summary.json").stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        e = tmp_path / "e"
        assert run("run", "calm", "--set", "run.duration=1h", "--out", str(e), "--quiet", "--no-report").exit_code == 0
        assert (e.stat().st_mode & 0o777) == 0o700
    finally:
        os.umask(old)


def test_a_failed_write_removes_its_temporary_folder(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), staged(tmp_path / "run", "run") as tmp:
        (tmp / "half.json").write_text("{")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_writing_leaves_no_temporary_folder(tmp_path):
    """A child process writes a run folder slowly; SIGTERM mid-write must leave neither the folder nor a
    hidden temporary one behind."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from defistress.sim.experiments.outdir import staged\n"
        "with staged(Path(sys.argv[1]) / 'run', 'run') as tmp:\n"
        "    (tmp / 'summary.json').write_text('{}')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        assert any(tmp_path.iterdir())  # the temporary folder exists while writing
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if p.poll() is None:
            p.kill()
    for _ in range(50):
        if not any(tmp_path.iterdir()):
            break
        time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []
