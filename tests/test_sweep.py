"""Sweeps on one machine (inline and process backends): rows, risk table, the folder's guard, configuration
record and lock, failed points, torn lines, bounded windows, clean exits (issue 15 items 1-3, 8, 14, 15, 18;
issue 17's windows and lazily readable results). The dask backend is in test_sweep_dask.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sweep_support import Counting
from typer.testing import CliRunner

from defistress.scenarios.loader import load
from defistress.sim.cli.app import app
from defistress.sim.experiments import sweep_backends, sweep_folder
from defistress.sim.experiments.runs import run_scenario
from defistress.sim.experiments.sweep import sweep
from defistress.sim.experiments.sweep_folder import SweepLock
from defistress.sim.experiments.sweep_tasks import SweepContext

runner = CliRunner()
BASE = ["agents.borrowers.accounts=200", "run.duration=1h", *(f"shocks.{i}.at=30m" for i in range(3))]
BASE += ["shocks.1.until=50m", "shocks.2.until=50m"]  # the crash inside the hour
SET = [a for s in BASE for a in ("--set", s)]
BONUS = "protocols.lend.assets.ETH.liquidation_bonus"
GRID = {BONUS: [0.05, 0.1]}
HF_MIN = "agents.borrowers.health_factor.min"


def cli(*args: str):
    return runner.invoke(app, ["sweep", "eth-crash", *args])


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def folder_state(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """2 grid points x 3 seeds, run inline."""
    out = tmp_path_factory.mktemp("small") / "sweep"
    s = sweep("eth-crash", [0, 1, 2], GRID, out, BASE, backend="inline")
    assert (s.planned, s.ran, s.rows, s.failed, s.points) == (6, 6, 6, 0, 2)
    return out, pd.read_parquet(out / "results.parquet")


def test_rows_are_the_runs_of_every_grid_point_and_seed(small):
    out, df = small
    assert sorted(zip(df[f"param:{BONUS}"], df["seed"])) == [(b, s) for b in (0.05, 0.1) for s in (0, 1, 2)]
    assert df["run_key"].is_unique and (df["status"] == "ok").all()
    # one row against the same run made directly
    direct = run_scenario(load("eth-crash", [*BASE, f"{BONUS}=0.1"]), 2).metrics
    row = df[(df[f"param:{BONUS}"] == 0.1) & (df["seed"] == 2)].iloc[0]
    assert row["bad_debt_usd"] == direct["bad_debt_usd"] and row["liquidations"] == direct["liquidations"]
    assert row["lend_liquidation_volume_usd"] == direct["protocols"]["lend"]["liquidation_volume_usd"]
    assert df["liquidations"].sum() > 0  # the shock lands inside the hour: the runs are not trivially zero


def test_risk_table_per_grid_point_matches_numpy(small):
    out, df = small
    risk = pd.read_csv(out / "risk.csv")
    assert list(risk[f"param:{BONUS}"]) == [0.05, 0.1] and list(risk["runs"]) == [3, 3]
    assert list(risk["failed"]) == [0, 0]
    for _, r in risk.iterrows():
        x = df.loc[df[f"param:{BONUS}"] == r[f"param:{BONUS}"], "bad_debt_usd"].to_numpy()
        assert r["var95_bad_debt_usd"] == pytest.approx(np.quantile(x, 0.95))
        assert r["mean_bad_debt_usd"] == pytest.approx(x.mean())


def test_results_parquet_reads_lazily_one_row_group_per_grid_point(small):
    out, df = small
    f = pq.ParquetFile(out / "results.parquet")
    assert f.metadata.num_rows == 6 and f.metadata.num_row_groups == 2
    col = f.schema_arrow.get_field_index(f"param:{BONUS}")
    for i, value in enumerate((0.05, 0.1)):
        stats = f.metadata.row_group(i).column(col).statistics
        assert stats.min == stats.max == value
    batches = list(f.iter_batches(batch_size=2, columns=["seed", "bad_debt_usd"]))
    assert sum(b.num_rows for b in batches) == 6
    only = pq.read_table(out / "results.parquet", filters=[(f"param:{BONUS}", "==", 0.1)]).to_pandas()
    assert sorted(only["seed"]) == [0, 1, 2] and (only[f"param:{BONUS}"] == 0.1).all()


def test_process_backend_equals_inline_row_for_row(small, tmp_path):
    _, inline = small
    s = sweep("eth-crash", [0, 1, 2], GRID, tmp_path / "p", BASE, workers=2, backend="process")
    assert s.rows == 6
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p" / "results.parquet"), inline)


def test_results_are_appended_as_runs_complete(tmp_path):
    out, seen = tmp_path / "s", []

    def on_done(done: int, total: int) -> None:
        seen.append((done, total, len(lines(out / "results.jsonl"))))
        assert not (out / "results.parquet").exists()  # only written once the sweep is complete

    sweep("eth-crash", [0, 1, 2], {}, out, BASE, workers=2, on_done=on_done)
    assert seen == [(1, 3, 1), (2, 3, 2), (3, 3, 3)]


def test_process_backend_keeps_a_bounded_window_of_tasks(tmp_path):
    ctx = SweepContext("test-window", load("eth-crash", BASE))
    c = Counting(8)
    sweep_backends.run_process(ctx, c, c.on_result, workers=2, max_in_flight=3)
    assert c.completed == 8 and max(c.outstanding) <= 3
    c = Counting(3)
    sweep_backends.run_inline(ctx, c, c.on_result)
    assert c.outstanding == [1, 1, 1]


# --- the folder: guard, configuration, lock (issue 15 items 1-3, 8, 18) ----------------------------------
def test_out_that_is_a_file_is_refused_before_any_run(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    r = cli("--seeds", "1", *SET, "--out", str(f), "-q")
    assert r.exit_code == 2 and "--out" in r.output and "is a file" in r.output
    assert f.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    r = cli("--seeds", "1", *SET, "--out", str(f / "sub"), "-q")
    assert r.exit_code == 2 and "is a file, so no folder can be made under it" in r.output


def test_non_empty_folder_that_is_not_a_sweep_is_refused_and_left_alone(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    r = cli("--seeds", "1", *SET, "--out", str(d), "-q")
    assert r.exit_code == 2 and "not empty and is not a sweep folder" in r.output
    assert folder_state(d) == {"thesis.tex": b"years of work"}


def test_unwritable_out_is_refused_before_any_run(tmp_path, monkeypatch):
    # the tests may run as root, for whom every folder is writable: the guard's view of access is simulated
    monkeypatch.setattr(sweep_folder.os, "access", lambda p, mode: Path(p) != tmp_path)
    r = cli("--seeds", "1", *SET, "--out", str(tmp_path / "new"), "-q")
    assert r.exit_code == 2 and f"cannot create it, {tmp_path} is not writable" in r.output
    assert not (tmp_path / "new").exists()


def test_out_dot_is_an_empty_folder_and_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("--seeds", "1", *SET, "--out", ".", "-q")
    assert r.exit_code == 0, r.output
    assert {"sweep.json", "results.jsonl", "results.parquet", "risk.csv"} == {p.name for p in tmp_path.iterdir()}


def test_configuration_errors_write_nothing(tmp_path):
    out = tmp_path / "new" / "sweep"
    cases = [
        (["--seeds", "0"], "--seeds"),
        (["--set", "agents.borrowers.accounts=-3"], "agents.borrowers.accounts"),
        (["--grid", "agents.borrowers.no_such_key=1,2"], "every grid point is refused"),
        (["--grid", "novalue="], "no values"),
        (["--backend", "spark"], "--backend"),
        (["--scheduler", "tcp://127.0.0.1:1", "--backend", "process"], "--scheduler: needs --backend dask"),
        (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "--workers"),
    ]
    for args, key in cases:
        r = cli(*SET, *args, "--out", str(out), "-q")
        assert r.exit_code == 2, (args, r.output)
        assert key in r.output, (args, r.output)
        assert "Traceback" not in r.output
        assert list(tmp_path.iterdir()) == [], args  # not even an empty --out folder


def test_seeds_zero_is_refused_from_python_too(tmp_path):
    with pytest.raises(ValueError, match="--seeds: must be at least 1"):
        sweep("eth-crash", [], {}, tmp_path / "s", BASE)
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_with_other_set_values_or_grid_keys_is_refused(small, tmp_path):
    out = tmp_path / "s"
    assert cli("--seeds", "2", *SET, "--grid", f"{BONUS}=0.05", "--out", str(out), "-q").exit_code == 0
    before = folder_state(out)
    r = cli(
        "--seeds", "2", *SET, "--set", "agents.borrowers.accounts=300", "--grid", f"{BONUS}=0.05", "--out", str(out)
    )
    assert r.exit_code == 2 and "another configuration" in r.output and "--set values" in r.output
    r = cli("--seeds", "2", *SET, "--out", str(out), "-q")
    assert r.exit_code == 2 and "--grid keys" in r.output
    assert folder_state(out) == before
    # more seeds and another grid value extend the same sweep; earlier rows are kept, none is run twice
    r = cli("--seeds", "3", *SET, "--grid", f"{BONUS}=0.05,0.1", "--out", str(out), "-q")
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "results.parquet")
    _, ref = small
    pd.testing.assert_frame_equal(df, ref)
    assert len(lines(out / "results.jsonl")) == 6


def test_a_second_sweep_on_a_locked_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "s"
    assert cli("--seeds", "1", *SET, "--out", str(out), "-q").exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom defistress.sim.experiments.sweep_folder import SweepLock\n"
         f"SweepLock({str(out)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = folder_state(out)
        r = cli("--seeds", "2", *SET, "--out", str(out), "-q")
        assert r.exit_code == 2 and f"another sweep (pid {holder.pid}" in r.output
        assert folder_state(out) == before
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((out / ".sweep.lock").read_text())["pid"] == holder.pid  # left behind by the dead owner
    r = cli("--seeds", "2", *SET, "--out", str(out), "-q")
    assert r.exit_code == 0, r.output
    assert not (out / ".sweep.lock").exists() and len(pd.read_parquet(out / "results.parquet")) == 2


def test_lock_in_this_process_blocks_a_second_holder(tmp_path):
    with SweepLock(tmp_path):
        with pytest.raises(sweep_folder.SweepFolderError, match=f"pid {os.getpid()}"):
            SweepLock(tmp_path).acquire()
    assert not (tmp_path / ".sweep.lock").exists()
    SweepLock(tmp_path).acquire().release()


def test_a_torn_line_is_rewritten_out_on_resume(small, tmp_path):
    out = tmp_path / "s"
    sweep("eth-crash", [0, 1], GRID, out, BASE, backend="inline")
    good = lines(out / "results.jsonl")
    with (out / "results.jsonl").open("ab") as f:
        f.write(b'{"scenario": "eth-crash", "seed": 2, "bad_debt_u')  # a kill in the middle of a write
    s = sweep("eth-crash", [0, 1, 2], GRID, out, BASE, backend="inline")
    assert s.torn_lines == 1 and s.skipped == 4 and s.ran == 2
    now = lines(out / "results.jsonl")
    assert now[:4] == good and len(now) == 6 and all(json.loads(x) for x in now)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), small[1])


# --- failed points (issue 15 item 14, issue 17's deterministic failures) ------------------------------
def test_a_point_the_scenario_refuses_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "s"
    r = cli("--seeds", "2", *SET, "--grid", f"{HF_MIN}=0.5,1.05", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "2 failed" in " ".join(r.output.split())  # in the table's title (rich may wrap it)
    df = pd.read_parquet(out / "results.parquet")
    bad, good = df[df[f"param:{HF_MIN}"] == 0.5], df[df[f"param:{HF_MIN}"] == 1.05]
    assert sorted(bad["seed"]) == [0, 1] and (bad["status"] == "failed").all()
    assert bad["error"].str.len().min() > 10 and bad["bad_debt_usd"].isna().all()
    assert (good["status"] == "ok").all() and good["bad_debt_usd"].notna().all()
    risk = pd.read_csv(out / "risk.csv").set_index(f"param:{HF_MIN}")
    assert (risk.loc[0.5, "runs"], risk.loc[0.5, "failed"]) == (0, 2) and np.isnan(risk.loc[0.5, "var95_bad_debt_usd"])
    assert (risk.loc[1.05, "runs"], risk.loc[1.05, "failed"]) == (2, 0)
    # a resume does not run them again; --retry-failed does, and each run keeps one row
    s = sweep("eth-crash", [0, 1], {HF_MIN: [0.5, 1.05]}, out, BASE, backend="inline")
    assert s.ran == 0
    s = sweep("eth-crash", [0, 1], {HF_MIN: [0.5, 1.05]}, out, BASE, backend="inline", retry_failed=True)
    assert s.ran == 2 and s.rows == 4 and s.failed == 2
    assert len(lines(out / "results.jsonl")) == 6


# --- clean exits (issue 15 item 18) ------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [d for c in map(int, out) for d in (c, *descendants(c))]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_the_sweep_cleanly_and_it_resumes(small, tmp_path):
    out = tmp_path / "s"
    args = ["sweep", "eth-crash", "--seeds", "24", *SET, "--workers", "2", "--out", str(out), "-q"]
    p = subprocess.Popen([sys.executable, "-m", "defistress.sim.cli.app", *args], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ((out / "results.jsonl").exists() and len(lines(out / "results.jsonl")) >= 2):
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    children = descendants(p.pid)
    assert len(children) >= 2  # the pool's workers (and its fork server)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 128 + signal.SIGTERM
    assert "Traceback" not in p.stderr.read().decode()
    names = {x.name for x in out.iterdir()}
    assert names == {"sweep.json", "results.jsonl"}  # no lock, no temporary file, nothing that looks complete
    assert 2 <= len(lines(out / "results.jsonl")) < 24
    deadline = time.monotonic() + 30
    while any(alive(c) for c in children):  # the pool's processes are gone with it
        assert time.monotonic() < deadline, [c for c in children if alive(c)]
        time.sleep(0.1)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df["seed"]) == list(range(24)) and df["run_key"].is_unique
