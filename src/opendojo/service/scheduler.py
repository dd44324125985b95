"""The scheduler: a pure function from what the store holds to what should happen next.

``plan(jobs, limits, slots)`` reads the active jobs (queued, preempted, running) and each tenant's
``max_running``, and answers which jobs to start and which running ones to ask to stop. Order: higher
priority first; among equals, the tenant with the fewest running jobs (fair share); then submission
order. When a waiting job outranks a running one and no slot is free, the lowest-priority running job
(the most recently submitted among equals) is preempted; a job already stopping frees its slot soon and
is counted as free, so one waiting job never preempts two. Nothing here touches the database or a
process, so it is tested and timed alone.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from opendojo.service.schema import PREEMPTED, QUEUED, RUNNING


@dataclass(frozen=True)
class JobView:
    """What the scheduler needs of a job. ``seq`` is the submission order; ``stopping`` a pending stop."""

    id: str
    tenant: int
    priority: int
    seq: int
    state: str
    stopping: bool = False


@dataclass
class Plan:
    start: list[str] = field(default_factory=list)
    preempt: list[str] = field(default_factory=list)


def _tenant_queues(waiting: Iterable[JobView]) -> dict[int, list[tuple[int, int, str]]]:
    queues: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for j in waiting:
        queues[j.tenant].append((-j.priority, j.seq, j.id))
    for q in queues.values():
        heapq.heapify(q)
    return queues


def _next_candidate(queues, running: Mapping[int, int], limits: Mapping[int, int]):
    """The best head among tenants below their limit: (-priority, running of tenant, seq), or None."""
    best = None
    for tenant, q in queues.items():
        if q and running[tenant] < limits.get(tenant, 0):
            neg_prio, seq, job_id = q[0]
            key = (neg_prio, running[tenant], seq)
            if best is None or key < best[0]:
                best = (key, tenant, job_id)
    return best


def plan(jobs: Iterable[JobView], limits: Mapping[int, int], slots: int) -> Plan:
    """Which jobs to start and which to preempt now. ``limits``: tenant id → max running jobs."""
    jobs = list(jobs)
    busy = [j for j in jobs if j.state == RUNNING]
    running: dict[int, int] = defaultdict(int)
    for j in busy:
        running[j.tenant] += 1
    queues = _tenant_queues(j for j in jobs if j.state in (QUEUED, PREEMPTED))
    free = slots - len(busy)
    freeing = sum(j.stopping for j in busy)
    victims = sorted((j for j in busy if not j.stopping), key=lambda j: (j.priority, -j.seq))
    out = Plan()
    while (best := _next_candidate(queues, running, limits)) is not None:
        (neg_prio, _, _), tenant, job_id = best
        if free > 0:
            out.start.append(job_id)
            free -= 1
        elif freeing > 0:
            freeing -= 1  # a stopping job's slot will go to this one on a later pass
        elif victims and victims[0].priority < -neg_prio:
            out.preempt.append(victims.pop(0).id)
        else:
            break
        heapq.heappop(queues[tenant])
        running[tenant] += 1
    return out
