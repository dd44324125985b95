"""Ray as an ingest engine: each work item is one Ray task on an existing Ray cluster.

The same contract as the local engines (``engine.run``): ``run_ray(fn, items, address)`` yields
``(item, result, error)`` for every item exactly once, in completion order, with ``error`` one line when
the task raised or its worker or node died. ``fn`` and the items travel by pickle, so ``fn`` must be a
module-level function of a package every node has installed (``opendojo``), and every path in the items
must name storage every node sees (a shared filesystem or an object store URL): each task writes its own
shard and index fragment there, exactly as a local worker does, so the dataset is the same.
Closing the generator early (Ctrl-C in the consumer) cancels the tasks not yet finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger(__name__)

TASK_LOST = "not done: its Ray worker or node died; run again"


def _error_of(exc: BaseException) -> str:
    """One line for a failed task: the task's own exception, or that its worker or node was lost."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    lost = (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError, rex.TaskCancelledError)
    if isinstance(exc, lost):
        return TASK_LOST
    return f"{type(exc).__name__}: {exc}"


def run_ray(fn: Callable[[Any], Any], items: Sequence[Any], address: str, cpus_per_task: float = 1.0
            ) -> Iterator[tuple[Any, Any, str | None]]:
    """Run ``fn`` on each item as a Ray task (``cpus_per_task`` CPUs each) on the cluster at ``address``
    (the head's GCS address, ``HOST:6379``, or ``auto`` on a cluster node)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    task = ray.remote(num_cpus=cpus_per_task, max_retries=0)(fn)
    pending = {task.remote(item): item for item in items}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                item = pending.pop(ref)
                try:
                    yield item, ray.get(ref), None
                except Exception as e:  # noqa: BLE001 - reported against its item; the others go on
                    yield item, None, _error_of(e)
    finally:
        for ref in pending:  # only when the consumer stopped early
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
