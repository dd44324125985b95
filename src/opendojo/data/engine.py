"""Engines that run a plain function over work items: in this process, or in a pool of processes.

An engine's contract is ``run(fn, items) -> iterator of (item, result, error)``: every item comes back
exactly once, with ``error`` (one line) set when its worker died or ``fn`` raised. ``fn`` and the items
must be picklable and ``fn`` must leave nothing behind when it fails, so an engine can run anywhere
(a Ray-task engine fits the same contract).

Why ``concurrent.futures.ProcessPoolExecutor`` and not ``multiprocessing.Pool``: when a worker is
killed (SIGKILL, the OOM killer) ``Pool.imap_unordered`` waits forever for the lost task, and so does
``Pool.join``. The executor notices the dead process and fails every unfinished future with
``BrokenProcessPool``, so the run ends and the files concerned are reported.
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


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """Run one item in a worker; after a SIGTERM has unwound it (temporaries removed), exit at once."""
    global _busy
    _busy = True
    try:
        return fn(item)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        _busy = False


def _worker_setup() -> None:
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


def run_pool(fn: Callable[[Any], Any], items: Sequence[Any], workers: int
             ) -> Iterator[tuple[Any, Any, str | None]]:
    """Run ``fn`` on each item in ``workers`` spawned processes; results in completion order. A dead
    worker fails the items not yet finished (``WORKER_DIED``); the generator's ``close()`` (or an
    interrupt in the consumer) cancels the rest and stops every worker."""
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_setup)
    finished = False
    try:
        pending: dict[Future, Any] = {pool.submit(_call, fn, item): item for item in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                try:
                    yield item, fut.result(), None
                except BrokenProcessPool:
                    yield item, None, WORKER_DIED
                except Exception as e:  # noqa: BLE001 - reported against its item; the others go on
                    yield item, None, f"{e.__class__.__name__}: {e}"
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop(pool)


def run(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 1
        ) -> Iterator[tuple[Any, Any, str | None]]:
    """``run_inline`` for one worker or one item, else ``run_pool``."""
    if workers <= 1 or len(items) <= 1:
        return run_inline(fn, items)
    return run_pool(fn, items, min(workers, len(items)))
