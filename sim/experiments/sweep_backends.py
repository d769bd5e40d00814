"""Where sweep batches run: in this process, or in a local process pool, with a bounded window of tasks in flight.

Each backend pulls batches from an iterator only as slots free up, so the client never holds more than
`max_in_flight` pending tasks whatever the sweep's size, and hands every finished batch to `on_result` at
once (the sweep appends it to results.jsonl). The dask backend lives in `sweep_dask.py`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from defistress.sim.experiments.sweep_tasks import Item, SweepContext, install, run_batch, uninstall

#: receives a finished batch's rows as JSON lines and the worker CPU seconds spent in its runs
OnResult = Callable[[bytes, float], None]


def default_window(slots: int) -> int:
    """Tasks kept in flight for `slots` parallel workers: one running and one queued per slot, plus slack."""
    return 2 * max(1, slots) + 2


def run_inline(ctx: SweepContext, batches: Iterator[list[Item]], on_result: OnResult) -> None:
    install(ctx)
    try:
        for batch in batches:
            on_result(*run_batch(ctx.id, batch))
    finally:
        uninstall(ctx.id)


class WorkerDied(RuntimeError):
    """A worker process of the local pool died (killed, out of memory); finished runs are kept."""


def run_process(
    ctx: SweepContext,
    batches: Iterator[list[Item]],
    on_result: OnResult,
    workers: int,
    max_in_flight: int | None = None,
) -> None:
    """A local process pool; each worker receives the scenario once through the pool's initializer."""
    window = max_in_flight or default_window(workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_init_worker, initargs=(ctx,))
    pending: set[Future] = set()
    try:
        for batch in batches:
            pending.add(pool.submit(run_batch, ctx.id, batch))
            if len(pending) >= window:
                pending = _collect(pending, on_result)
        while pending:
            pending = _collect(pending, on_result)
    except BrokenProcessPool as exc:
        _stop(pool)
        raise WorkerDied(
            f"a worker process died ({exc}); the runs already finished are kept, run the same command to resume"
        ) from None
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _init_worker(ctx: SweepContext) -> None:
    """A pool worker leaves Ctrl-C to the sweep, which stops the pool (no traceback from every worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install(ctx)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported the engine once.

    Not the global default: importing mesa sets it to "spawn" (mesa.batchrunner), which makes every worker
    import numpy, pandas, scipy and the engine again (seconds each); and not plain "fork", which is unsafe in a
    process that runs threads (a progress bar, a dask client).
    """
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(["defistress.sim.experiments.runs"])
    return mp


def _collect(pending: set[Future], on_result: OnResult) -> set[Future]:
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    for f in done:
        on_result(*f.result())
    return rest


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting for runs in flight (an interrupted sweep stops now)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
