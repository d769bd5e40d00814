"""Seeded runs of chosen settings, through the sweep backends, into an append-only results.jsonl.

Tuning and reverse stress tests pick their settings one batch at a time (a generation of trials, a shock
size), so they cannot hand the sweep a grid up front. `PointRuns` runs each (setting, seed) not yet in the
folder on the sweep's backends (inline, a process pool, dask), appends every finished batch to results.jsonl
as it arrives (a kill loses only the runs in flight; a torn last line is rewritten out at the next start), and
returns the rows. Rows carry the sweep's columns (`param:<key>`, seed, run_key, status, metrics), so
`sweep_results.finalize` gathers the folder into results.parquet and risk.csv as for a sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defistress.scenarios.loader import LoadedScenario
from defistress.sim.experiments.sweep import check_arguments, execute, run_key
from defistress.sim.experiments.sweep_folder import RESULTS, ResultsWriter, read_rows, repair_results
from defistress.sim.experiments.sweep_tasks import Item, RunFunction, SweepContext


@dataclass(frozen=True)
class Backend:
    """Where the runs go: the sweep's backends and their knobs (see `defistress sweep --help`)."""

    workers: int = 1
    backend: str = "process"
    scheduler: str | None = None
    batch_size: int = 1
    max_in_flight: int | None = None

    def check(self, seeds: Sequence[int]) -> None:
        check_arguments(list(seeds), self.workers, self.backend, self.scheduler, self.batch_size)


def function_hash(runner: RunFunction) -> str:
    """What stands for the scenario hash in run keys of a scenario-free study: the function's qualified name."""
    name = f"{getattr(runner, '__module__', '?')}.{getattr(runner, '__qualname__', repr(runner))}"
    return "fn:" + hashlib.sha256(name.encode()).hexdigest()[:16]


class PointRuns:
    """The runs of one folder: rows already there (by run key) and a way to run the missing ones."""

    def __init__(
        self,
        out: Path,
        loaded: LoadedScenario | None,
        seeds: Sequence[int],
        backend: Backend,
        runner: RunFunction | None = None,
        on_done: Callable[[int, int], None] | None = None,
    ):
        if loaded is None and runner is None:
            raise ValueError("a scenario or a run function is needed")
        self.out = Path(out)
        self.loaded = loaded
        self.runner = runner
        self.seeds = list(seeds)
        self.backend = backend
        self.on_done = on_done
        self.hash = self.hash_for(loaded, runner)
        self.torn = repair_results(self.out / RESULTS)
        self.rows: dict[str, dict[str, Any]] = {r["run_key"]: r for r in read_rows(self.out / RESULTS)}
        self.ran = 0

    @staticmethod
    def hash_for(loaded: LoadedScenario | None, runner: RunFunction | None) -> str:
        """What run keys are made from: the scenario's hash, or the run function's name."""
        if runner is not None:
            return function_hash(runner)
        assert loaded is not None
        return loaded.hash

    def key(self, params: dict[str, Any], seed: int) -> str:
        return run_key(self.hash, params, seed)

    def missing(self, settings: Sequence[dict[str, Any]]) -> list[Item]:
        items: dict[str, Item] = {}
        for p in settings:
            for s in self.seeds:
                k = self.key(p, s)
                if k not in self.rows and k not in items:
                    items[k] = (p, s, k)
        return list(items.values())

    def run(self, settings: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Every seed's row of each setting (in the order of `seeds`), running those not in the folder yet."""
        todo = self.missing(settings)
        if todo:
            self._execute(todo)
        return [[self.rows[self.key(p, s)] for s in self.seeds] for p in settings]

    def _execute(self, todo: list[Item]) -> None:
        total, done = len(todo), 0
        with ResultsWriter(self.out / RESULTS) as writer:

            def on_result(lines: bytes, seconds: float) -> None:
                nonlocal done
                writer.append(lines)
                for line in lines.splitlines():
                    row = json.loads(line)
                    self.rows[row["run_key"]] = row
                    done += 1
                self.ran += lines.count(b"\n")
                if self.on_done:
                    self.on_done(done, total)

            ctx = SweepContext(uuid.uuid4().hex, self.loaded, self.runner)
            b = self.backend
            execute(ctx, _batches(iter(todo), b.batch_size), on_result, b.workers, b.backend, b.scheduler,
                    b.max_in_flight)  # fmt: skip


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(itertools.islice(items, size)):
        yield batch
