"""The scheduler alone: a pure function of the jobs and limits, so every rule is pinned here."""

from __future__ import annotations

from opendojo.service.scheduler import JobView, plan


def q(job_id, tenant, priority=0, seq=None, state="queued", stopping=False):
    return JobView(job_id, tenant, priority, seq if seq is not None else int(job_id[1:]), state, stopping)


def test_higher_priority_first_then_submission_order():
    jobs = [q("j1", 1), q("j2", 1, priority=5), q("j3", 1)]
    assert plan(jobs, {1: 9}, slots=2).start == ["j2", "j1"]


def test_fair_share_prefers_the_tenant_with_least_running():
    jobs = [q("j1", 1, state="running"), q("j2", 1), q("j3", 1), q("j4", 2)]
    assert plan(jobs, {1: 9, 2: 9}, slots=3).start == ["j4", "j2"]


def test_max_running_per_tenant_is_respected():
    jobs = [q("j1", 1, state="running"), q("j2", 1), q("j3", 2)]
    assert plan(jobs, {1: 1, 2: 1}, slots=4).start == ["j3"]


def test_disabled_tenant_without_limit_never_starts():
    assert plan([q("j1", 7)], {}, slots=4).start == []


def test_higher_priority_waiting_job_preempts_the_lowest_running():
    jobs = [q("j1", 1, 0, state="running"), q("j2", 2, 3, state="running"), q("j3", 3, 5)]
    out = plan(jobs, {1: 9, 2: 9, 3: 9}, slots=2)
    assert out.start == [] and out.preempt == ["j1"]


def test_equal_priority_never_preempts():
    jobs = [q("j1", 1, 2, state="running"), q("j2", 2, 2)]
    assert plan(jobs, {1: 9, 2: 9}, slots=1).preempt == []


def test_a_stopping_job_counts_as_freeing_its_slot():
    jobs = [q("j1", 1, 0, state="running", stopping=True), q("j2", 1, 0, state="running"), q("j3", 2, 5)]
    out = plan(jobs, {1: 9, 2: 9}, slots=2)
    assert out.preempt == [] and out.start == []


def test_preempted_jobs_are_queued_again_in_their_place():
    jobs = [q("j1", 1, state="preempted"), q("j2", 1)]
    assert plan(jobs, {1: 9}, slots=1).start == ["j1"]
