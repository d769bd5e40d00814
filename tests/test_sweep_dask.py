"""The dask backend (issue 17): equal to the process backend row for row, a worker SIGKILLed mid-sweep, a
killed client resuming against the same cluster, failed runs recorded, a bounded window of tasks, the scenario
sent once per worker, `--scheduler`. One LocalCluster (2 worker processes on 127.0.0.1) serves the module;
the test that kills a worker starts a cluster of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import distributed  # in the dev extra: `make test` installs it
import pandas as pd
import pytest
from sweep_support import Counting
from typer.testing import CliRunner

from defistress.scenarios.loader import load
from defistress.sim.cli.app import app
from defistress.sim.experiments import sweep_dask, sweep_tasks
from defistress.sim.experiments.sweep import sweep
from defistress.sim.experiments.sweep_tasks import SweepContext

pytestmark = pytest.mark.xdist_group("dask")  # one xdist worker runs the module, so the cluster is made once

runner = CliRunner()
BASE = ["agents.borrowers.accounts=400", "run.duration=1h", *(f"shocks.{i}.at=30m" for i in range(3))]
BASE += ["shocks.1.until=50m", "shocks.2.until=50m"]  # the crash inside the hour
SET = [a for s in BASE for a in ("--set", s)]
BONUS = "protocols.lend.assets.ETH.liquidation_bonus"
GRID = {BONUS: [0.05, 0.1]}
SEEDS = list(range(5))


def local_cluster() -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture
def healthy(client):
    """The cluster with both workers up (a previous test may have killed one)."""
    client.wait_for_workers(2, timeout=180)
    return client


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> pd.DataFrame:
    """The same sweep through the local process pool."""
    out = tmp_path_factory.mktemp("baseline") / "sweep"
    sweep("eth-crash", SEEDS, GRID, out, BASE, workers=2, backend="process")
    return pd.read_parquet(out / "results.parquet")


def test_local_cluster_binds_127_0_0_1_and_equals_the_process_backend(baseline, tmp_path):
    seen = {}

    def on_done(done: int, total: int) -> None:
        if not seen:  # inside the sweep: the client it made is the default one
            info = distributed.default_client().scheduler_info()
            seen["addresses"] = [info["address"], *info["workers"]]

    s = sweep("eth-crash", SEEDS, GRID, tmp_path / "s", BASE, workers=2, backend="dask", on_done=on_done)
    assert s.rows == 10 and s.failed == 0
    assert len(seen["addresses"]) == 3 and all(a.startswith("tcp://127.0.0.1:") for a in seen["addresses"])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / "results.parquet"), baseline)
    assert baseline["liquidations"].sum() > 0


def test_existing_cluster_gets_the_scenario_once_per_worker_not_per_run(cluster, healthy, baseline, tmp_path):
    scenario = tmp_path / "mine.toml"
    shutil.copy(load("eth-crash").source, scenario)

    def on_done(done: int, total: int) -> None:
        scenario.unlink(missing_ok=True)  # runs after the first must not need the file

    out = tmp_path / "s"
    s = sweep(
        str(scenario), SEEDS, GRID, out, BASE, backend="dask", scheduler=cluster.scheduler_address, on_done=on_done
    )
    assert s.ran == 10 and s.failed == 0
    df = pd.read_parquet(out / "results.parquet")
    cols = [c for c in baseline.columns if c != "scenario_sha256"]  # the same runs from a file of the same content
    pd.testing.assert_frame_equal(df[cols], baseline[cols])
    installs = healthy.run(lambda: dict(sweep_tasks.INSTALLS))
    assert len(installs) == 2 and all(set(counts.values()) == {1} for counts in installs.values())


def test_a_worker_sigkilled_mid_sweep_loses_nothing(baseline, tmp_path):
    # a cluster of its own: the shared one keeps both workers whatever the nanny's restart takes under load
    with local_cluster() as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        killed = {}

        def on_done(done: int, total: int) -> None:
            if done == 2 and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                assert busy, "tasks should be running when the worker is killed"
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed["pid"] = pids[busy[0]]

        out = tmp_path / "s"
        s = sweep(
            "eth-crash", SEEDS, GRID, out, BASE, backend="dask", scheduler=cluster.scheduler_address, on_done=on_done
        )
        assert killed and killed["pid"] not in client.run(os.getpid).values()  # it is gone
    assert s.rows == 10 and s.failed == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), baseline)
    rows = (out / "results.jsonl").read_text().splitlines()
    assert len(rows) == 10  # every run appended once, the lost tasks ran again elsewhere


def test_a_killed_client_resumes_against_the_same_cluster(cluster, healthy, baseline, tmp_path):
    out = tmp_path / "s"
    grid = ["--grid", f"{BONUS}=0.05,0.1"]
    args = ["sweep", "eth-crash", "--seeds", "5", *SET, *grid, "--scheduler", cluster.scheduler_address]
    args += ["--max-in-flight", "2", "--out", str(out), "-q"]
    p = subprocess.Popen([sys.executable, "-m", "defistress.sim.cli.app", *args])
    deadline = time.monotonic() + 120
    while not ((out / "results.jsonl").exists() and (out / "results.jsonl").read_bytes().count(b"\n") >= 1):
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    at_kill = (out / "results.jsonl").read_bytes().count(b"\n")
    assert 1 <= at_kill < 10 and (out / ".sweep.lock").exists() and not (out / "results.parquet").exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), baseline)
    assert not (out / ".sweep.lock").exists()


def test_failed_runs_are_recorded_and_do_not_block_the_rest(cluster, healthy, tmp_path):
    grid = {"agents.borrowers.health_factor.min": [0.5, 1.05]}
    out = tmp_path / "s"
    s = sweep("eth-crash", [0, 1], grid, out, BASE, backend="dask", scheduler=cluster.scheduler_address)
    assert (s.rows, s.failed) == (4, 2)
    df = pd.read_parquet(out / "results.parquet")
    assert list(df["status"]) == ["failed", "failed", "ok", "ok"] and df["error"].iloc[:2].str.len().min() > 10


def test_the_client_keeps_a_bounded_window_of_tasks(cluster, healthy):
    ctx = SweepContext("window", load("eth-crash", BASE))
    c = Counting(12)
    sweep_dask.run_dask(ctx, c, c.on_result, workers=0, scheduler=cluster.scheduler_address, max_in_flight=3)
    assert c.completed == 12 and max(c.outstanding) <= 3
    c = Counting(12)  # the default window: two per worker thread plus two
    sweep_dask.run_dask(ctx, c, c.on_result, workers=0, scheduler=cluster.scheduler_address)
    assert c.completed == 12 and max(c.outstanding) <= 6
    assert not any(healthy.run(lambda: "window" in sweep_tasks._CONTEXTS).values())  # the plugin is removed


def test_cli_scheduler_option_runs_on_the_cluster(cluster, healthy, baseline, tmp_path):
    out = tmp_path / "s"
    r = runner.invoke(
        app,
        ["sweep", "eth-crash", "--seeds", "5", *SET, "--grid", f"{BONUS}=0.05,0.1", "--scheduler",
         cluster.scheduler_address, "--batch", "3", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "sweep: 10 runs" in r.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), baseline)


def test_an_unreachable_scheduler_is_a_keyed_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_dask, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "s"
    r = runner.invoke(
        app, ["sweep", "eth-crash", "--seeds", "1", *SET, "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)]
    )
    assert r.exit_code == 2 and "--scheduler tcp://127.0.0.1:9: cannot connect" in r.output
    assert not out.exists()
