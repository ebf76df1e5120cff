"""Batch generation: a JSONL file of jobs -> audio files, sidecars and a manifest.

Runs alone or as one rank of MLX's distributed runtime (``mlx.launch``, ``mx.distributed``);
``mlx-rag music batch JOBS --out DIR`` is the command, ``run_batch`` the library call.
"""

from musicgen.plugin.batch.jobs import (
    BadLine,
    Job,
    JobList,
    JobsError,
    Options,
    parse_job,
    read_jobs,
)
from musicgen.plugin.batch.manifest import MANIFEST
from musicgen.plugin.batch.plan import Agreement, Batch, Plan, PlanError, build_plan, make_batches
from musicgen.plugin.batch.runner import Settings, Summary, run_batch

__all__ = [
    "MANIFEST",
    "Agreement",
    "BadLine",
    "Batch",
    "Job",
    "JobList",
    "JobsError",
    "Options",
    "Plan",
    "PlanError",
    "Settings",
    "Summary",
    "build_plan",
    "make_batches",
    "parse_job",
    "read_jobs",
    "run_batch",
]
