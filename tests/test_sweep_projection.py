"""The scaling projection's arithmetic (benchmarks/sweep_projection.py), against figures worked by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_projection.py"
spec = importlib.util.spec_from_file_location("sweep_projection", PATH)
proj = importlib.util.module_from_spec(spec)
sys.modules["sweep_projection"] = proj  # dataclasses look their module up there
spec.loader.exec_module(proj)

# 1 s runs; a task costs the scheduler 1 ms and the client 2 ms, each row 0.2 ms more on the client
C = proj.Costs(run_s=1.0, worker_task_s=0.0, scheduler_task_s=0.001, client_task_s=0.002, client_row_s=0.0002)


def test_ten_workers_are_the_bottleneck_and_run_at_full_efficiency():
    p = proj.project(C, 10, 1)
    # workers: 10 tasks/s; scheduler 1,000/s; client 1 / 2.2 ms = 454.5/s
    assert p.bottleneck == "workers" and p.runs_per_s == pytest.approx(10) and p.efficiency == pytest.approx(1)
    assert p.scheduler_utilisation == pytest.approx(0.01) and p.client_utilisation == pytest.approx(10 * 0.0022)


def test_a_thousand_workers_saturate_the_client_without_batching():
    p = proj.project(C, 1000, 1)
    assert p.bottleneck == "client" and p.runs_per_s == pytest.approx(1 / 0.0022)
    assert p.efficiency == pytest.approx(1 / 0.0022 / 1000) and p.client_utilisation == pytest.approx(1)
    assert p.scheduler_utilisation == pytest.approx(0.4545, abs=1e-4)


def test_recommended_batch_is_the_smallest_keeping_scheduler_and_client_at_half_load():
    # batch 5: workers 200 tasks/s, client 1 / 3 ms = 333/s -> 0.6; batch 10: 100/s vs 250/s -> 0.4
    p = proj.recommended_batch(C, 1000)
    assert p.batch == 10 and p.bottleneck == "workers" and p.efficiency == pytest.approx(1)
    assert p.client_utilisation == pytest.approx(0.4) and p.scheduler_utilisation == pytest.approx(0.1)
    assert proj.recommended_batch(C, 10).batch == 1


def test_client_costs_split_into_per_task_and_per_row_parts():
    sweep = {
        "cases": [
            {"case": "dask large", "batch": 1, "client_cpu_per_run_ms": 4.0},
            {"case": "dask large, batch 20", "batch": 20, "client_cpu_per_run_ms": 1.15},
        ],
        "noop": [
            {
                "case": "dask no-op tasks",
                "worker_cpu_per_task_ms_less_idle": 0.5,
                "scheduler_cpu_per_task_ms_less_idle": 0.8,
            }
        ],
    }
    c = proj.costs_from(sweep, run_s=2.0)
    # 4 = task + row and 1.15 = task / 20 + row give task = 3 ms, row = 1 ms
    assert c.client_task_s == pytest.approx(0.003) and c.client_row_s == pytest.approx(0.001)
    assert (c.worker_task_s, c.scheduler_task_s, c.run_s) == pytest.approx((0.0005, 0.0008, 2.0))
