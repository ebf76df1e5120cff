"""Background jobs: long work (a music track, a pipeline) that runs while its requester waits.

    queue = rag_core.get_jobs()
    job = queue.submit(work, kind="music", key=model_id)   # work(ctx) -> dict
    queue.get(job.id).to_dict()                               # status, progress, result, error
    queue.cancel(job.id)

Jobs with the same ``key`` (a model id) run one at a time, in the order they came; jobs with
different keys run side by side. ``lane(key)`` is the lock a job holds while it runs, so other
work on the same model (a chat answer, a pipeline step) takes turns with the jobs.

A job reports progress with ``ctx.progress(done, total)``. Once the job is cancelled, that call
raises ``JobCancelled``, a BaseException, so it passes ``except Exception`` handlers and unwinds
through the job's ``finally`` blocks and context managers: write outputs to a temporary file and
rename it into place at the end, and a cancelled job leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rag_core.errors import RagError

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
log = logging.getLogger(__name__)


class JobCancelled(BaseException):  # a signal like KeyboardInterrupt, not an error
    """Raised inside a cancelled job at its next progress report; the queue marks it cancelled."""


class JobNotFoundError(RagError):
    """No job has this id (or it finished long ago and was forgotten)."""


class JobStateError(RagError):
    """The job cannot do what was asked in its current state (e.g. cancel a finished job)."""


@dataclass
class Job:
    """One job's public state. ``result`` is the work's dict once done, ``error`` why it failed."""

    id: str
    kind: str
    key: str
    info: dict = field(default_factory=dict)  # what was asked (e.g. the prompt), for listings
    status: str = "queued"
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    cancel_requested: bool = False
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "status": self.status,
            "progress": round(self.progress, 4), "result": self.result, "error": self.error,
            "cancel_requested": self.cancel_requested, "info": self.info, "created": self.created,
            "started": self.started, "finished": self.finished,
        }  # fmt: skip


class JobContext:
    """What a job's work function receives: its id, and progress reports that may cancel it."""

    def __init__(self, job: Job, queue: JobQueue):
        self._job = job
        self._queue = queue

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def cancelled(self) -> bool:
        return self._job.cancel_requested

    def check(self) -> None:
        """Raise JobCancelled if the job was cancelled."""
        if self._job.cancel_requested:
            raise JobCancelled(self._job.id)

    def progress(self, done: float, total: float = 1.0) -> None:
        """Report ``done`` of ``total`` (e.g. steps); raises JobCancelled if the job was cancelled.

        Fits callbacks such as ``on_step(done, total)`` as is.
        """
        self.check()
        fraction = done / total if total else 0.0
        self._job.progress = min(max(float(fraction), 0.0), 1.0)


Work = Callable[[JobContext], "dict | None"]


class JobQueue:
    """Jobs by id; one worker thread per busy key; finished jobs kept up to ``keep`` of them."""

    def __init__(self, keep: int = 256):
        self.keep = keep
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._work: dict[str, Work] = {}
        self._pending: dict[str, deque[Job]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._lanes: dict[str, threading.RLock] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False

    # ---- submitting and looking up ----

    def submit(self, work: Work, *, kind: str, key: str, info: dict | None = None) -> Job:
        """Queue ``work(ctx) -> dict`` to run after the jobs already queued under ``key``."""
        if not callable(work):
            raise TypeError("submit() needs a callable work(ctx) -> dict.")
        job = Job(secrets.token_hex(8), kind, key, dict(info or {}))
        with self._lock:
            if self._closed:
                raise RagError("The job queue is shut down; no new jobs are accepted.")
            self._jobs[job.id] = job
            self._work[job.id] = work
            self._pending.setdefault(key, deque()).append(job)
            if key not in self._workers:
                worker = threading.Thread(target=self._serve, args=(key,), daemon=True,
                                          name=f"job-lane {key}")
                self._workers[key] = worker
                worker.start()
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFoundError if there is none."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"No job with id '{job_id}' (finished jobs are kept for a "
                                   f"while: the last {self.keep}).")
        return job

    def jobs(self, kind: str | None = None) -> list[Job]:
        """All known jobs (optionally of one kind), newest first."""
        with self._lock:
            found = list(self._jobs.values())
        return [j for j in reversed(found) if kind in (None, j.kind)]

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job has finished (or ``timeout`` seconds passed); return it."""
        job = self.get(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while job.status not in FINISHED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
        return job

    # ---- cancelling ----

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its next progress report.

        Cancelling a cancelled job is a no-op; a done or failed one is a JobStateError.
        """
        job = self.get(job_id)
        with self._changed:
            if job.status == "queued":
                self._pending[job.key].remove(job)
                self._finish(job, "cancelled")
            elif job.status == "running":
                job.cancel_requested = True
            elif job.status in ("done", "failed"):
                raise JobStateError(f"Job '{job_id}' has already finished ({job.status}); "
                                    "there is nothing to cancel.")
        return job

    def shutdown(self, timeout: float = 30.0) -> None:
        """Refuse new jobs, cancel the queued and running ones, and wait up to ``timeout`` s."""
        with self._changed:
            self._closed = True
            for job in list(self._jobs.values()):
                if job.status == "queued":
                    self._pending[job.key].remove(job)
                    self._finish(job, "cancelled")
                elif job.status == "running":
                    job.cancel_requested = True
            workers = list(self._workers.values())
        deadline = time.monotonic() + timeout
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(deadline - time.monotonic(), 0))

    # ---- lanes ----

    @contextmanager
    def lane(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lane: one holder at a time per key (re-entrant within a thread)."""
        with self._lock:
            lock = self._lanes.setdefault(key, threading.RLock())
        with lock:
            yield

    # ---- the workers ----

    def _serve(self, key: str) -> None:
        """Run ``key``'s jobs one after another until none is left."""
        while True:
            with self._lock:
                pending = self._pending.get(key)
                if not pending:
                    self._pending.pop(key, None)
                    del self._workers[key]
                    return
                job = pending.popleft()
                work = self._work.pop(job.id)
                job.status, job.started = "running", time.time()
            with self.lane(key):
                self._run(job, work)

    def _run(self, job: Job, work: Work) -> None:
        status, result, error = "done", None, None
        try:
            result = work(JobContext(job, self))
            result = _json_record(result)
        except JobCancelled:
            status = "cancelled"
        except (RagError, ValueError) as exc:
            status, error = "failed", str(exc)
        except BaseException as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        with self._changed:
            if status == "done":
                job.result, job.progress = result, 1.0
            job.error = error
            self._finish(job, status)

    def _finish(self, job: Job, status: str) -> None:
        """Set a final status (with the lock held), wake waiters, forget the oldest finished."""
        self._work.pop(job.id, None)
        job.finished = time.time()
        job.status = status
        self._changed.notify_all()
        finished = [j for j in self._jobs.values() if j.status in FINISHED]
        for old in finished[: max(len(finished) - self.keep, 0)]:
            del self._jobs[old.id]


def _json_record(result: Any) -> dict:
    """The work's result, checked to be a JSON-able dict (None counts as {})."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"a job must return a dict (its result record), got "
                        f"{type(result).__name__}")
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a job's result must be JSON-able: {exc}") from None
    return result
