"""Sweep backends: per-run overhead of the process pool and of dask, client memory over long dask sweeps, and
the scheduler's and client's cost per task, the inputs of the scaling projection in README.md.

Run: python benchmarks/bench_sweep.py [--runs 2000] [--noop-tasks 20000] [--out benchmarks/results/sweep.json]
     python benchmarks/bench_sweep.py --quick            # 100 runs and 2,000 no-op tasks: a smoke test

Every run is `eth-crash` shrunk to 50 accounts and 10 minutes (50 blocks, the shock at 2 minutes): tiny on
purpose, so the overhead around a run is visible next to the run itself. The dask cases connect to a cluster
started in another process (2 workers of 1 thread on 127.0.0.1) so the client's memory and CPU are its own.

Method: for each backend, two sweeps of different sizes; the slope of wall time against runs is the cost of
one more run at that many workers, so `per-run overhead = workers x slope - compute per run` (compute is
timed inside the workers), and the intercept is the fixed cost (start-up, gathering). CPU seconds of the
client (this process), the scheduler and the workers (/proc) over no-op tasks give the cost per task of each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = ["agents.borrowers.accounts=50", "run.duration=10m", *(f"shocks.{i}.at=2m" for i in range(3))]
TINY += ["shocks.1.until=8m", "shocks.2.until=8m"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve_cluster(workers: int) -> None:
    """Child mode: a LocalCluster on 127.0.0.1; prints its address, stops when stdin closes."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as cluster:
        print(cluster.scheduler_address, os.getpid(), flush=True)
        parent = os.getppid()
        while os.getppid() == parent and not select.select([sys.stdin], [], [], 1.0)[0]:
            pass  # until the benchmark closes our stdin or dies


class Cluster:
    """A dask cluster in a child process; `pid` is the scheduler's (LocalCluster runs it in that process)."""

    def __init__(self, workers: int):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-cluster", str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        address, pid = self.proc.stdout.readline().split()
        self.address, self.pid = address, int(pid)
        from distributed import Client

        self.client = Client(address)
        self.worker_pids = list(self.client.run(os.getpid).values())

    def cpu(self) -> tuple[float, float]:
        return cpu_s(self.pid), sum(cpu_s(p) for p in self.worker_pids)

    def idle_rate(self, seconds: float = 10.0) -> tuple[float, float]:
        """CPU seconds per second the scheduler and the workers spend doing nothing (heartbeats, monitors)."""
        a = self.cpu()
        time.sleep(seconds)
        b = self.cpu()
        return (b[0] - a[0]) / seconds, (b[1] - a[1]) / seconds

    def close(self) -> None:
        self.client.close()
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def descendants(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return [x for k in kids for x in (k, *descendants(k))]


def snapshot(cluster: Cluster | None) -> dict[str, float]:
    """CPU seconds so far of the client, the scheduler and the workers (the pool's: this process's descendants)."""
    if cluster:
        scheduler, workers = cluster.cpu()
    else:
        scheduler, workers = 0.0, 0.0
        for pid in descendants(os.getpid()):
            try:
                workers += cpu_s(pid)
            except OSError:
                continue
    return {"client": self_cpu(), "scheduler": scheduler, "workers": workers}


def sweep_case(
    name: str, runs: int, backend: str, workers: int, cluster: Cluster | None = None, batch: int = 1
) -> dict:
    """One sweep; CPU per run is counted between the first and the last result, so start-up is left out."""
    from defistress.sim.experiments.sweep import sweep

    samples: list[tuple[int, float]] = []
    marks: dict[int, dict[str, float]] = {}
    step = max(1, runs // 20)

    def on_done(done: int, total: int) -> None:
        if done == batch or done == total:
            marks[done] = snapshot(cluster)
        if done % step == 0 or done == total:
            samples.append((done, round(rss_mb(), 1)))

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        t0 = time.perf_counter()
        s = sweep(
            "eth-crash", list(range(runs)), {}, Path(tmp) / "s", TINY, workers=workers, backend=backend,
            on_done=on_done, scheduler=cluster.address if cluster else None, batch_size=batch,
        )  # fmt: skip
        total = time.perf_counter() - t0
    assert s.rows == runs and s.failed == 0, s
    first, last = marks[batch], marks[runs]
    n = runs - batch
    cpu = {k: 1000 * (last[k] - first[k]) / n for k in first}
    run_ms = 1000 * s.compute_s / runs
    case = {
        "case": name,
        "backend": backend,
        "workers": workers,
        "batch": batch,
        "runs": runs,
        "total_s": round(total, 3),
        "runs_wall_s": round(s.wall_s, 3),
        "gather_s": round(s.gather_s, 3),
        "run_cpu_ms": round(run_ms, 3),
        "client_cpu_per_run_ms": round(cpu["client"], 3),
        "scheduler_cpu_per_run_ms": round(cpu["scheduler"], 3),
        "worker_cpu_per_run_ms": round(cpu["workers"], 3),
        "client_handling_per_run_ms": round(1000 * s.client_s / runs, 3),
        "client_rss_mb": samples,
        "client_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if backend == "inline":  # the run happens in the client: its CPU is the run plus the client's share
        case["client_cpu_per_run_ms"] = round(cpu["client"] - run_ms, 3)
    print(json.dumps({k: v for k, v in case.items() if k != "client_rss_mb"}), flush=True)
    return case


def noop_case(backend: str, tasks: int, cluster: Cluster | None = None) -> dict:
    """Empty batches through a backend's window: the cost of a task with no run in it, per process.

    Process pool: its workers are new processes (forked from the fork server), so their CPU when the last
    result arrives is all task handling (plus their short start). Dask: CPU differences over the sweep.
    """
    from defistress.scenarios.loader import load
    from defistress.sim.experiments.sweep_backends import run_process
    from defistress.sim.experiments.sweep_dask import run_dask
    from defistress.sim.experiments.sweep_tasks import SweepContext

    ctx = SweepContext(f"bench-noop-{backend}", load("eth-crash", TINY))
    samples: list[tuple[int, float]] = []
    done = 0
    step = max(1, tasks // 20)
    last: dict[str, float] = {}

    def on_result(rows: list, seconds: float) -> None:
        nonlocal done
        done += 1
        if done % step == 0:
            samples.append((done, round(rss_mb(), 1)))
        if done == tasks:
            last.update(snapshot(cluster))

    first = snapshot(cluster)
    t0 = time.perf_counter()
    if backend == "dask":
        run_dask(ctx, iter([] for _ in range(tasks)), on_result, workers=0, scheduler=cluster.address)
    else:
        run_process(ctx, iter([] for _ in range(tasks)), on_result, workers=2)
    wall = time.perf_counter() - t0
    idle = cluster.idle_rate() if cluster else (0.0, 0.0)
    case = {
        "case": f"{backend} no-op tasks",
        "tasks": tasks,
        "wall_s": round(wall, 3),
        "tasks_per_s": round(tasks / wall, 1),
        "client_cpu_per_task_ms": round(1000 * (last["client"] - first["client"]) / tasks, 4),
        "scheduler_cpu_per_task_ms": round(1000 * (last["scheduler"] - first["scheduler"]) / tasks, 4),
        "worker_cpu_per_task_ms": round(1000 * (last["workers"] - first["workers"]) / tasks, 4),
        "idle_cpu_per_s": {"scheduler": round(idle[0], 4), "workers": round(idle[1], 4)},
        "scheduler_cpu_per_task_ms_less_idle": round(
            1000 * (last["scheduler"] - first["scheduler"] - idle[0] * wall) / tasks, 4
        ),
        "worker_cpu_per_task_ms_less_idle": round(
            1000 * (last["workers"] - first["workers"] - idle[1] * wall) / tasks, 4
        ),
        "client_rss_mb": samples,
    }
    print(json.dumps({k: v for k, v in case.items() if k != "client_rss_mb"}), flush=True)
    return case


def usable_cpus() -> int:
    """Cores this process may run on (the affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def efficiency_case(runs: int, repeats: int = 2) -> dict:
    """Parallel efficiency of the process pool on a sweep of `runs` runs: T1 / (n x Tn), with T the sweep's wall
    time from the first task to the last result (s.wall_s) on 1 worker (which `sweep.execute` runs inline: the
    serial baseline) and on n = the usable cores, measured
    interleaved (1, n, 1, n, ...) after a warm-up sweep, so load from other work hits both alike; the best of
    `repeats` of each is used, and every measurement is kept with the 1-minute load average before it. Wall
    times need a quiet machine; beside them, the share of the workers' and the client's CPU that went into runs
    (`cpu_in_runs_share`) says how much the pool itself costs whatever the load."""
    n = usable_cpus()
    sweep_case("process warm-up (fork server start)", 4, "process", n)
    times: dict[int, list[float]] = {1: [], n: []}
    detail = []
    for _ in range(repeats):
        for w in (1, n):
            load = os.getloadavg()[0]
            c = sweep_case(f"process efficiency, {w} worker(s)", runs, "process", w)
            times[w].append(c["runs_wall_s"])
            spent = c["worker_cpu_per_run_ms"] + c["client_cpu_per_run_ms"]
            detail.append(
                {
                    "workers": w,
                    "runs_wall_s": c["runs_wall_s"],
                    "run_cpu_ms": c["run_cpu_ms"],
                    "worker_cpu_per_run_ms": c["worker_cpu_per_run_ms"],
                    "client_cpu_per_run_ms": c["client_cpu_per_run_ms"],
                    "cpu_in_runs_share": round(c["run_cpu_ms"] / spent, 3) if spent > 0 else None,
                    "load_1min": load,
                }
            )
    t1, tn = min(times[1]), min(times[n])
    case = {
        "case": "process pool parallel efficiency",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "runs": runs,
        "usable_cpus": n,
        "t1_s": t1,
        "tn_s": tn,
        "efficiency": round(t1 / (n * tn), 3) if n > 1 else 1.0,
        # load-proof companion: the share of the sweep's CPU (workers + client) spent inside runs, at n workers
        "cpu_in_runs_share_n": min(d["cpu_in_runs_share"] or 0.0 for d in detail if d["workers"] == n),
        "measurements": detail,
        "note": "wall times on a shared machine: other work on the cores lowers the efficiency seen",
    }
    print(json.dumps(case), flush=True)
    return case


def fit(small: dict, large: dict) -> dict:
    """Wall time = fixed + runs x slope, from two sweep sizes (meaningful on a quiet machine only)."""
    slope = (large["runs_wall_s"] - small["runs_wall_s"]) / (large["runs"] - small["runs"])
    return {
        "backend": large["backend"],
        "workers": large["workers"],
        "batch": large["batch"],
        "wall_per_run_ms": round(1000 * slope, 3),
        "fixed_s": round(small["total_s"] - small["runs"] * slope, 3),
    }


def machine() -> dict:
    import dask
    import numpy

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "dask": dask.__version__,
        "loadavg_before": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2000, help="runs in the large dask sweep (>= 2,000 for the issue)")
    ap.add_argument("--noop-tasks", type=int, default=20000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dask-only", action="store_true", help="only the cases on an existing dask cluster")
    ap.add_argument("--efficiency-runs", type=int, default=200, help="runs of the parallel-efficiency sweep")
    ap.add_argument("--efficiency-only", action="store_true", help="only the process pool's parallel efficiency")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--serve-cluster", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_cluster is not None:
        serve_cluster(a.serve_cluster)
        return 0
    if a.quick:
        a.runs, a.noop_tasks = 200, 2000
    small = max(50, a.runs // 10)
    out = a.out or HERE / "results" / (
        "sweep-quick.json" if a.quick else "sweep-dask.json" if a.dask_only else "sweep.json"
    )
    result: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "scenario": ["eth-crash", *TINY]}
    t0 = time.perf_counter()
    if not a.dask_only:
        result["efficiency"] = efficiency_case(a.efficiency_runs)
    if a.efficiency_only:
        result["machine"]["loadavg_after"] = os.getloadavg()
        out = a.out or HERE / "results" / "sweep-efficiency.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    cases = []
    if not a.dask_only:
        cases.append(sweep_case("inline", small, "inline", 1))
        # first use in a process starts the pool's fork server (it imports the engine once): measured, then warm
        cases.append(sweep_case("process first use (fork server start)", 4, "process", 2))
        cases += [
            sweep_case("process small", small, "process", 2),
            sweep_case("process large", a.runs // 2, "process", 2),
        ]
        cases.append(sweep_case("dask local cluster (started by the sweep)", small, "dask", 2))
    cluster = Cluster(2)
    try:
        cases += [
            sweep_case("dask first use (workers import the engine)", 4, "dask", 2, cluster),
            sweep_case("dask small", small, "dask", 2, cluster),
            sweep_case("dask large", a.runs, "dask", 2, cluster),
            sweep_case("dask large, batch 20", a.runs, "dask", 2, cluster, batch=20),
        ]
        noop = [noop_case("dask", a.noop_tasks, cluster)]
    finally:
        cluster.close()
    if not a.dask_only:
        noop.append(noop_case("process", a.noop_tasks))
    by = {c["case"]: c for c in cases}
    result["cases"] = cases
    result["noop"] = noop
    result["fits"] = [fit(by["dask small"], by["dask large"])]
    if not a.dask_only:
        result["fits"].insert(0, fit(by["process small"], by["process large"]))
        local = by["dask local cluster (started by the sweep)"]
        result["dask_local_fixed_s"] = round(local["total_s"] - by["dask small"]["total_s"], 3)
    result["machine"]["loadavg_after"] = os.getloadavg()
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["fits"], indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
