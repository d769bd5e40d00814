"""The dask.distributed backend: a local cluster on 127.0.0.1, or an existing one given by its scheduler address.

- The parsed scenario reaches each worker once, inside a worker plugin registered with the scheduler; the
  plugin's setup also imports the engine, so no task pays for imports. A worker that joins later (a
  restarted or an added one) gets the plugin from the scheduler before it runs tasks.
- The client keeps at most `max_in_flight` tasks submitted (by default two per worker thread plus two,
  re-read from the scheduler every few seconds as workers come and go) and releases each future when its
  rows are appended, so its memory does not grow with the sweep's size.
- A worker that dies mid-task (SIGKILL, out of memory) is handled by the scheduler: its tasks run again
  elsewhere. A task that kills every worker it lands on ends as `KilledWorker` after the scheduler's
  allowed failures, and its runs are recorded as failed with that error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator
from contextlib import ExitStack
from typing import Any

from distributed import Client, Future, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from defistress.sim.experiments.sweep_backends import OnResult, default_window
from defistress.sim.experiments.sweep_tasks import (
    Item,
    SweepContext,
    encode_rows,
    failed_row,
    install,
    run_batch,
    uninstall,
)

#: seconds between re-reads of the cluster's worker threads (the window follows the cluster's size)
REFRESH_S = 5.0
#: seconds to wait for the scheduler given by --scheduler
CONNECT_TIMEOUT_S = 20


class SchedulerUnreachable(ValueError):
    """`--scheduler ADDRESS` could not be reached."""


class ScenarioPlugin(WorkerPlugin):
    """Installs one sweep's parsed scenario in each worker (and in workers that join later)."""

    def __init__(self, ctx: SweepContext):
        self.ctx = ctx
        self.name = plugin_name(ctx)

    def setup(self, worker: Any) -> None:
        install(self.ctx)

    def teardown(self, worker: Any) -> None:
        uninstall(self.ctx.id)


def plugin_name(ctx: SweepContext) -> str:
    return f"defistress-sweep-{ctx.id}"


def local_cluster(workers: int) -> LocalCluster:
    """Worker processes with one thread each; scheduler, workers and the HTTP endpoint listen on 127.0.0.1 only."""
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )


def connect(scheduler: str) -> Client:
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerUnreachable(f"--scheduler {scheduler}: cannot connect ({exc})") from None


def slots(client: Client) -> int:
    return int(sum(client.nthreads().values()))


def run_dask(
    ctx: SweepContext,
    batches: Iterator[list[Item]],
    on_result: OnResult,
    workers: int,
    scheduler: str | None = None,
    max_in_flight: int | None = None,
) -> None:
    with ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(connect(scheduler))
        else:
            cluster = stack.enter_context(local_cluster(workers))
            client = stack.enter_context(Client(cluster))
        client.register_plugin(ScenarioPlugin(ctx), name=plugin_name(ctx))
        stack.callback(_unregister, client, plugin_name(ctx))
        _drive(client, ctx, batches, on_result, max_in_flight)


def _unregister(client: Client, name: str) -> None:
    try:
        client.unregister_worker_plugin(name)
    except Exception:  # the cluster may be gone already (interrupted sweep); nothing to clean then
        pass


def _drive(
    client: Client,
    ctx: SweepContext,
    batches: Iterator[list[Item]],
    on_result: OnResult,
    max_in_flight: int | None,
) -> None:
    """Submit batches as slots free up; hand each finished batch to on_result and release its future."""
    window = max_in_flight or default_window(slots(client))
    refreshed = time.monotonic()
    inflight: dict[Hashable, tuple[Future, list[Item]]] = {}
    futures = as_completed()
    exhausted = False

    def top_up() -> None:
        nonlocal exhausted
        while not exhausted and len(inflight) < window:
            batch = next(batches, None)
            if batch is None:
                exhausted = True
                return
            fut = client.submit(run_batch, ctx.id, batch, pure=False)
            inflight[fut.key] = (fut, batch)
            futures.add(fut)

    try:
        top_up()
        for fut in futures:
            batch = inflight.pop(fut.key)[1]
            try:
                lines, seconds = fut.result()
            except Exception as exc:  # KilledWorker after the scheduler's retries, or a task error
                lines, seconds = encode_rows([failed_row(p, s, k, exc) for p, s, k in batch]), 0.0
            fut.release()
            on_result(lines, seconds)
            if max_in_flight is None and time.monotonic() - refreshed > REFRESH_S:
                window, refreshed = default_window(slots(client)), time.monotonic()
            top_up()
    finally:
        if inflight:  # interrupted: drop what is queued on the cluster
            try:
                client.cancel([f for f, _ in inflight.values()], force=True)
            except Exception:  # the connection may be what failed
                pass
