"""Scaling projection of the dask sweep backend to 10, 100 and 1,000 workers, from measured costs.

Run: python benchmarks/sweep_projection.py [SWEEP_JSON]   (default results/sweep.json; with results/model.json)

Model (one client, one scheduler, W single-threaded workers, B runs per task):
- a worker finishes a task every `B * run_s + worker_task_s` seconds, so the workers could deliver
  `W / (B * run_s + worker_task_s)` tasks per second;
- the scheduler's event loop is one thread: it handles at most `1 / scheduler_task_s` tasks per second;
- the client is one thread: each task costs it `client_task_s` and each run (row) `client_row_s`, so it
  handles at most `1 / (client_task_s + B * client_row_s)` tasks per second.
The sweep runs at the smallest of the three; the efficiency is that rate over the workers' ideal rate
`W / run_s` runs per second. A component above half of its capacity (utilisation > 0.5) is where queues
start to grow, so the recommended batch is the smallest that keeps both the scheduler and the client at
or below 0.5.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCHES = (1, 2, 5, 10, 20, 50, 100, 200, 500)
WORKERS = (10, 100, 1000)
#: utilisation of the scheduler or the client above which the design calls for batching
TARGET = 0.5


@dataclass(frozen=True)
class Costs:
    """Measured CPU seconds (see bench_sweep.py)."""

    run_s: float  #: one run, in a worker
    worker_task_s: float  #: a worker's handling of one task (receive, run the function, send the result)
    scheduler_task_s: float  #: the scheduler's handling of one task
    client_task_s: float  #: the client's handling of one task (submit, result, release)
    client_row_s: float  #: the client's handling of one row (JSON, append)


@dataclass(frozen=True)
class Projection:
    workers: int
    batch: int
    runs_per_s: float
    efficiency: float
    scheduler_utilisation: float
    client_utilisation: float
    bottleneck: str


def project(c: Costs, workers: int, batch: int) -> Projection:
    worker_rate = workers / (batch * c.run_s + c.worker_task_s)  # tasks per second the workers could do
    scheduler_rate = 1 / c.scheduler_task_s
    client_rate = 1 / (c.client_task_s + batch * c.client_row_s)
    rates = {"workers": worker_rate, "scheduler": scheduler_rate, "client": client_rate}
    bottleneck = min(rates, key=lambda k: rates[k])
    tasks = rates[bottleneck]
    return Projection(
        workers=workers,
        batch=batch,
        runs_per_s=tasks * batch,
        efficiency=tasks * batch / (workers / c.run_s),
        scheduler_utilisation=tasks / scheduler_rate,
        client_utilisation=tasks / client_rate,
        bottleneck=bottleneck,
    )


def recommended_batch(c: Costs, workers: int) -> Projection:
    """The smallest batch that keeps scheduler and client at or below TARGET utilisation (else the largest)."""
    for b in BATCHES:
        p = project(c, workers, b)
        if p.scheduler_utilisation <= TARGET and p.client_utilisation <= TARGET:
            return p
    return project(c, workers, BATCHES[-1])


def costs_from(sweep: dict, run_s: float) -> Costs:
    """Costs from bench_sweep.py's JSON, for runs of `run_s` CPU seconds.

    The client's cost per run at batch 1 and at batch 20 gives its per-task and per-row parts:
    per_run(B) = client_task_s / B + client_row_s.
    """
    cases = {c["case"]: c for c in sweep["cases"]}
    noop = next(n for n in sweep["noop"] if n["case"] == "dask no-op tasks")
    b1, b20 = cases["dask large"], cases["dask large, batch 20"]
    per1, per20 = b1["client_cpu_per_run_ms"] / 1000, b20["client_cpu_per_run_ms"] / 1000
    task = max(0.0, (per1 - per20) / (1 - 1 / b20["batch"]))
    row = max(0.0, per1 - task)
    return Costs(
        run_s=run_s,
        worker_task_s=max(0.0, noop["worker_cpu_per_task_ms_less_idle"] / 1000),
        scheduler_task_s=max(1e-6, noop["scheduler_cpu_per_task_ms_less_idle"] / 1000),
        client_task_s=task,
        client_row_s=row,
    )


def table(c: Costs, label: str) -> list[str]:
    out = [
        f"{label}: run {c.run_s:g} s CPU",
        "",
        "| workers | batch | runs/s | efficiency | scheduler | client | bottleneck |",
    ]
    out.append("|---:|---:|---:|---:|---:|---:|---|")
    for w in WORKERS:
        rows = {1: project(c, w, 1), recommended_batch(c, w).batch: recommended_batch(c, w)}
        for b, p in sorted(rows.items()):
            out.append(
                f"| {w:,} | {b} | {p.runs_per_s:,.1f} | {p.efficiency:.0%} | {p.scheduler_utilisation:.2f} "
                f"| {p.client_utilisation:.2f} | {p.bottleneck} |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    source = Path(argv[0]) if argv else HERE / "results" / "sweep.json"
    sweep = json.loads(source.read_text())
    model = json.loads((HERE / "results" / "model.json").read_text())
    tiny = next(c for c in sweep["cases"] if c["case"] == "dask large")["run_cpu_ms"] / 1000
    day = next(c for c in model["cases"] if c["model"] == "vectorised" and c["accounts"] == 10_000)["cpu_s"]
    out = {"costs": {}, "projections": {}}
    for label, run_s in (("tiny run (50 accounts, 10 minutes)", tiny), ("eth-crash day, 10,000 accounts", day)):
        c = costs_from(sweep, run_s)
        out["costs"][label] = asdict(c)
        out["projections"][label] = [asdict(project(c, w, b)) for w in WORKERS for b in BATCHES]
        print("\n".join(table(c, label)) + "\n")
    (HERE / "results" / "sweep-projection.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
