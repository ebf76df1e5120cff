"""Planning: batches of equal options, a balanced split, and the same plan on every rank."""

from __future__ import annotations

import pytest
from musicgen.plugin.batch.jobs import Options, parse_job
from musicgen.plugin.batch.plan import Agreement, PlanError, assign, build_plan, make_batches


def job(line, duration=1.0, **options):
    return parse_job(f'{{"prompt": "p{line}", "seed": {line}, "duration": {duration}}}', line,
                     Options.of(**options))


def ids(batches):
    return [[j.line for j in b.jobs] for b in batches]


def test_only_jobs_with_equal_options_share_a_batch_in_file_order():
    jobs = [job(1), job(2, 2.0), job(3), job(4, top_k=5), job(5), job(6, 2.0)]
    assert ids(make_batches(jobs, 8)) == [[1, 3, 5], [2, 6], [4]]
    assert ids(make_batches(jobs, 2)) == [[1, 3], [5], [2, 6], [4]]
    assert ids(make_batches(jobs, 1)) == [[1], [3], [5], [2], [6], [4]]


def test_groups_are_cut_evenly_and_split_until_every_rank_has_work():
    jobs = [job(i) for i in range(1, 11)]
    assert ids(make_batches(jobs, 4)) == [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert [len(b.jobs) for b in make_batches(jobs, 16, ranks=2)] == [5, 5]
    assert [len(b.jobs) for b in make_batches(jobs, 16, ranks=4)] == [3, 2, 3, 2]
    assert len(make_batches(jobs[:2], 16, ranks=4)) == 2  # never an empty batch
    with pytest.raises(ValueError, match="at least 1"):
        make_batches(jobs, 0)


def test_the_split_balances_seconds_of_audio():
    jobs = [job(1, 8.0), job(2, 1.0), job(3, 1.0), job(4, 2.0), job(5, 4.0)]
    batches = make_batches(jobs, 1)
    owner = assign(batches, 2)
    pairs = list(zip(batches, owner, strict=True))
    load = [sum(b.cost for b, r in pairs if r == rank) for rank in range(2)]
    assert load == [8.0, 8.0]


def test_every_job_lands_in_exactly_one_share_and_done_jobs_in_none():
    jobs = [job(i, 1.0 + i % 3) for i in range(1, 14)]
    done_by = [3] * 13
    done_by[2] = 1
    done_by[7] = 0
    plan = build_plan(jobs, done_by, size=3, batch_size=4)
    shares = [[j.line for b in plan.share(r) for j in b.jobs] for r in range(3)]
    flat = sorted(line for share in shares for line in share)
    assert flat == [i for i in range(1, 14) if i not in (3, 8)]
    assert all(shares)
    assert [j.line for j in plan.reported_by(1)] == [3]
    assert [j.line for j in plan.reported_by(0)] == [8]
    again = build_plan(list(jobs), list(done_by), size=3, batch_size=4)
    assert again.digest() == plan.digest()
    assert build_plan(jobs, done_by, size=2, batch_size=4).digest() != plan.digest()


def test_a_single_process_agrees_with_itself_and_reports_its_own_failure():
    agreement = Agreement()
    assert (agreement.rank, agreement.size) == (0, 1)
    plan = build_plan([job(1)], [1], 1, 4)
    agreement.agree(plan)
    assert agreement.sum([1, 2]) == [1, 2]
    assert agreement.gather_bytes(b"abc") == [b"abc"]
    agreement.check(None)
    with pytest.raises(PlanError, match="boom"):
        agreement.check(PlanError("boom"))
