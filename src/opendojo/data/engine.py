"""Engines that run a plain function over work items: in this process, or in a pool of processes.

An engine's contract is ``run(fn, items) -> iterator of (item, result, error)``: every item comes back
exactly once, with ``error`` (one line) set when its worker died or ``fn`` raised. ``fn`` and the items
must be picklable and ``fn`` must leave nothing behind when it fails, so an engine can run anywhere
(a Ray-task engine fits the same contract).

Why ``concurrent.futures.ProcessPoolExecutor`` and not ``multiprocessing.Pool``: when a worker is
killed (SIGKILL, the OOM killer) ``Pool.imap_unordered`` waits forever for the lost task, and so does
``Pool.join``. The executor notices the dead process and fails every unfinished future with
``BrokenProcessPool``; each worker reports the items it starts, so the items that were in flight are
reported as failed and the others run again in a fresh pool.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)

WORKER_DIED = "not done: an ingest worker died (killed by a signal or the out-of-memory killer); run again"
STOP_GRACE_S = 5.0  # seconds a worker gets to remove its temporaries after SIGTERM


class _Terminated(BaseException):
    """Raised in a busy worker on SIGTERM, so that its ``finally`` blocks remove its temporary files."""


_busy = False  # in a worker: True while it runs an item


def _on_sigterm(signum: int, frame: object) -> None:
    if _busy:
        raise _Terminated(f"signal {signum}")
    os._exit(128 + signum)  # idle: nothing to clean up


def _call(fn: Callable[[Any], Any], item: Any, number: int) -> Any:
    """Run one item in a worker, first telling the parent it has started (so that after a crash the
    parent knows which items were in flight); after a SIGTERM has unwound it, exit at once."""
    global _busy
    _started.put(number)  # SimpleQueue: written to the pipe before fn runs, even if we are killed next
    _busy = True
    try:
        return fn(item)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        _busy = False


_started = None  # in a worker: the parent's queue of item numbers that have started


def _worker_setup(started) -> None:
    global _started
    _started = started
    # Ctrl-C goes to the whole process group: the parent alone decides, then stops workers with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)


def run_inline(fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any, str | None]]:
    """Run ``fn`` on each item in this process, in order."""
    for item in items:
        yield item, fn(item), None


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop the workers, giving each a moment to clean up."""
    processes = list(getattr(pool, "_processes", {}).values())  # the executor offers no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(STOP_GRACE_S)
        if p.is_alive():
            p.kill()
            p.join(STOP_GRACE_S)


def _drain(queue) -> set[int]:
    out = set()
    while not queue.empty():
        out.add(queue.get())
    return out


def _pool_round(fn: Callable[[Any], Any], items: Sequence[Any], numbers: list[int], workers: int,
                lost: list[int]) -> Iterator[tuple[Any, Any, str | None]]:
    """One pool over ``numbers``; the items a dead worker took down are appended to ``lost`` instead of
    being yielded. Returns the set of item numbers that had started (read after the round)."""
    ctx = mp.get_context("spawn")
    started = ctx.SimpleQueue()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_setup, initargs=(started,))
    clean = False
    try:
        pending: dict[Future, int] = {pool.submit(_call, fn, items[i], i): i for i in numbers}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                try:
                    yield items[i], fut.result(), None
                except BrokenProcessPool:
                    lost.append(i)
                except Exception as e:  # noqa: BLE001 - reported against its item; the others go on
                    yield items[i], None, f"{e.__class__.__name__}: {e}"
        clean = not lost
    finally:
        if clean:
            pool.shutdown(wait=True)
        else:
            _stop(pool)
    return _drain(started)


def run_pool(fn: Callable[[Any], Any], items: Sequence[Any], workers: int
             ) -> Iterator[tuple[Any, Any, str | None]]:
    """Run ``fn`` on each item in ``workers`` spawned processes; results in completion order. When a
    worker dies, the items in flight fail (``WORKER_DIED``) and the items not yet started run in a
    fresh pool. The generator's ``close()`` (or an interrupt in the consumer) cancels the rest and
    stops every worker."""
    numbers = list(range(len(items)))
    while numbers:
        lost: list[int] = []
        began = yield from _pool_round(fn, items, numbers, workers, lost)
        in_flight = [i for i in lost if i in began] or lost  # nothing started: do not retry for ever
        for i in in_flight:
            yield items[i], None, WORKER_DIED
        numbers = [i for i in lost if i not in in_flight]
        if numbers:
            log.warning("an ingest worker died; %d items not started yet run in a fresh pool", len(numbers))


def run(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 1
        ) -> Iterator[tuple[Any, Any, str | None]]:
    """``run_inline`` for one worker or one item, else ``run_pool``."""
    if workers <= 1 or len(items) <= 1:
        return run_inline(fn, items)
    return run_pool(fn, items, min(workers, len(items)))
