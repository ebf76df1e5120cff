"""The job queue: statuses, one job at a time per key, cancellation, results and errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from rag_core import JobCancelled, JobContext, JobQueue
from rag_core.errors import RagError
from rag_core.jobs import JobNotFoundError, JobStateError

TIMEOUT = 10


@pytest.fixture
def queue():
    queue = JobQueue()
    yield queue
    queue.shutdown(timeout=TIMEOUT)


class Gate:
    """A job that reports progress and then waits until the test opens the gate."""

    def __init__(self):
        self.started = threading.Event()
        self.open = threading.Event()
        self.log: list[str] = []

    def work(self, name: str, result: dict | None = None):
        def run(ctx: JobContext) -> dict:
            self.log.append(f"start {name}")
            self.started.set()
            ctx.progress(1, 4)
            assert self.open.wait(TIMEOUT)
            ctx.progress(2, 4)
            self.log.append(f"end {name}")
            return result or {"name": name}

        return run


def test_a_job_runs_and_reports_its_result(queue):
    job = queue.submit(lambda ctx: {"answer": 42}, kind="demo", key="m", info={"q": "?"})
    assert job.status in ("queued", "running", "done") and len(job.id) == 16
    finished = queue.wait(job.id, TIMEOUT)
    record = finished.to_dict()
    assert record["status"] == "done" and record["result"] == {"answer": 42}
    assert record["progress"] == 1.0 and record["error"] is None and record["info"] == {"q": "?"}
    assert record["started"] >= record["created"] and record["finished"] >= record["started"]
    assert queue.get(job.id) is finished and queue.jobs() == [finished]


def test_jobs_with_one_key_run_one_at_a_time_in_order(queue):
    gate = Gate()
    first = queue.submit(gate.work("a"), kind="demo", key="model-1")
    second = queue.submit(gate.work("b"), kind="demo", key="model-1")
    assert gate.started.wait(TIMEOUT)
    time.sleep(0.05)
    assert (first.status, second.status) == ("running", "queued")
    assert first.progress == 0.25
    gate.open.set()
    queue.wait(second.id, TIMEOUT)
    assert gate.log == ["start a", "end a", "start b", "end b"]
    assert [j.id for j in queue.jobs()] == [second.id, first.id]  # newest first


def test_jobs_with_other_keys_run_side_by_side(queue):
    gate = Gate()
    blocked = queue.submit(gate.work("slow"), kind="demo", key="model-1")
    assert gate.started.wait(TIMEOUT)
    other = queue.wait(queue.submit(lambda ctx: {}, kind="demo", key="model-2").id, TIMEOUT)
    assert other.status == "done" and blocked.status == "running"
    gate.open.set()
    assert queue.wait(blocked.id, TIMEOUT).status == "done"


def test_a_lane_is_shared_with_the_jobs_of_its_key(queue):
    order = []
    with queue.lane("model-1"):
        job = queue.submit(lambda ctx: order.append("job"), kind="demo", key="model-1")
        time.sleep(0.1)
        assert job.status == "running" and order == []  # waits for the lane
        order.append("holder")
    queue.wait(job.id, TIMEOUT)
    assert order == ["holder", "job"]
    with queue.lane("model-1"), queue.lane("model-1"):  # re-entrant in one thread
        pass


def test_cancel_a_queued_job(queue):
    gate = Gate()
    running = queue.submit(gate.work("a"), kind="demo", key="k")
    queued = queue.submit(gate.work("b"), kind="demo", key="k")
    assert gate.started.wait(TIMEOUT)
    assert queue.cancel(queued.id).status == "cancelled"
    assert queue.cancel(queued.id).status == "cancelled"  # again: no-op
    gate.open.set()
    queue.wait(running.id, TIMEOUT)
    assert "start b" not in gate.log and queued.result is None


def test_cancel_stops_a_running_job_at_its_next_report_and_leaves_no_partial_file(
        queue, tmp_path: Path):
    out = tmp_path / "tracks" / "track.wav"
    out.parent.mkdir()
    started, cancelled = threading.Event(), threading.Event()

    def render(ctx: JobContext) -> dict:
        part = out.with_name(".track.part.wav")
        try:
            with part.open("wb") as f:
                for step in range(1000):
                    f.write(b"x" * 10)
                    f.flush()
                    ctx.progress(step + 1, 1000)
                    started.set()
                    cancelled.wait(0.05)
            part.rename(out)
        finally:
            part.unlink(missing_ok=True)
        return {"path": str(out)}

    job = queue.submit(render, kind="music", key="musicgen")
    assert started.wait(TIMEOUT)
    assert queue.cancel(job.id).status == "running" and job.cancel_requested
    cancelled.set()
    finished = queue.wait(job.id, TIMEOUT)
    assert finished.status == "cancelled" and finished.result is None
    assert 0 < finished.progress < 1
    assert list(out.parent.iterdir()) == []  # neither the track nor its partial file


def test_cancelled_is_not_swallowed_by_except_exception(queue):
    def stubborn(ctx: JobContext) -> dict:
        ctx._job.cancel_requested = True
        try:
            ctx.progress(0.5)
        except Exception:  # a library catching broadly must not eat the cancellation
            return {"swallowed": True}
        return {}

    assert queue.wait(queue.submit(stubborn, kind="d", key="k").id, TIMEOUT).status == "cancelled"
    assert issubclass(JobCancelled, BaseException) and not issubclass(JobCancelled, Exception)


def test_a_finished_job_cannot_be_cancelled(queue):
    job = queue.wait(queue.submit(lambda ctx: {}, kind="d", key="k").id, TIMEOUT)
    with pytest.raises(JobStateError, match="already finished"):
        queue.cancel(job.id)


@pytest.mark.parametrize(("work", "error"), [
    (lambda ctx: (_ for _ in ()).throw(ValueError("duration must be > 0")),
     "duration must be > 0"),
    (lambda ctx: 1 / 0, "ZeroDivisionError: division by zero"),
    (lambda ctx: ["not", "a", "dict"], "must return a dict"),
    (lambda ctx: {"path": Path("x")}, "must be JSON-able"),
])
def test_failures_keep_their_message(queue, work, error):
    job = queue.wait(queue.submit(work, kind="d", key="k").id, TIMEOUT)
    assert job.status == "failed" and error in job.error and job.result is None


def test_unknown_ids_and_forgetting_old_jobs():
    queue = JobQueue(keep=2)
    ids = [queue.wait(queue.submit(lambda ctx: {}, kind="d", key="k").id, TIMEOUT).id
           for _ in range(4)]
    with pytest.raises(JobNotFoundError, match="No job with id"):
        queue.get(ids[0])
    assert [j.id for j in queue.jobs()] == ids[:1:-1]
    queue.shutdown()


def test_shutdown_cancels_everything_and_refuses_new_jobs():
    queue, gate = JobQueue(), Gate()
    running = queue.submit(gate.work("a"), kind="d", key="k")
    queued = queue.submit(gate.work("b"), kind="d", key="k")
    assert gate.started.wait(TIMEOUT)
    threading.Timer(0.1, gate.open.set).start()
    queue.shutdown(timeout=TIMEOUT)
    assert (running.status, queued.status) == ("cancelled", "cancelled")
    with pytest.raises(RagError, match="shut down"):
        queue.submit(lambda ctx: {}, kind="d", key="k")
