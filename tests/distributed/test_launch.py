"""`mlx-rag music batch` under `mlx.launch -n 2 --backend ring` on this machine (loopback).

Two ranks must do every job exactly once and write the same tracks as one process; a run
killed midway (one rank SIGKILLed, the launcher then stops the other) and run again must end
with every job done once and nothing missing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rag_core.cli import cli

from tests.distributed.conftest import audio_bytes, manifest, write_jobs

LAUNCH = Path(sys.executable).with_name("mlx.launch")
MLX_RAG = [sys.executable, "-c", "from rag_core.cli import main; main()"]
JOBS = [
    {"id": f"track-{i:02d}", "prompt": prompt, "seed": 100 + i, "duration": duration}
    for i, (prompt, duration) in enumerate([
        ("lofi piano, rain", 0.8), ("epic brass with drums", 0.8), ("calm", 0.8),
        ("the rain with a calm piano", 0.4), ("drums", 0.8), ("a calm piano", 0.4),
        ("epic", 0.8), ("brass", 0.8), ("rain music", 0.4), ("lofi", 0.8),
    ])
]
JOBS[7]["temperature"] = 0.8
JOBS[9]["format"] = "flac"

pytestmark = pytest.mark.skipif(not LAUNCH.is_file(), reason="mlx.launch is not installed")


def free_ports(count: int) -> int:
    """A port p such that p .. p + count - 1 are free on 127.0.0.1 (ring backend ranks)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + count > 65535:
            continue
        try:
            sockets = [socket.socket() for _ in range(count)]
            for offset, s in enumerate(sockets):
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


def launch_args(jobs: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [str(LAUNCH), "-n", "2", "--backend", "ring", "--hosts", "127.0.0.1",
            "--starting-port", str(free_ports(2)), "--", *MLX_RAG, "music", "batch",
            str(jobs), "--out", str(out), "--model", str(checkpoint), *extra]


def launch(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(launch_args(*args, **kwargs), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_checkpoint) -> dict[str, bytes]:
    """The tracks of one process running all jobs (batch size 4)."""
    folder = tmp_path_factory.mktemp("reference")
    jobs = write_jobs(folder / "jobs.jsonl", JOBS)
    result = CliRunner().invoke(cli, ["music", "batch", str(jobs), "--out", str(folder / "out"),
                                      "--model", str(tiny_checkpoint), "-b", "4"])
    assert result.exit_code == 0, result.output
    return audio_bytes(folder / "out")


def check_complete(out: Path, reference: dict[str, bytes]) -> list[dict]:
    """Every job once in the manifest, in file order; the tracks equal the reference."""
    entries = manifest(out)
    assert [e["id"] for e in entries] == [job["id"] for job in JOBS]
    assert audio_bytes(out) == reference
    for entry in entries:
        sidecar = json.loads((out / entry["sidecar"]).read_text())
        assert sidecar["batch"]["rank"] == entry["rank"]
        assert sidecar["batch"]["ranks"] == 2
        assert sidecar["batch"]["device"] == "cpu"  # one device here: each rank keeps it
    assert sorted(p.name for p in out.iterdir() if p.suffix not in (".wav", ".flac", ".json")) \
        == ["manifest.jsonl"]  # no temporary files or partial manifests
    return entries


def test_two_ranks_share_the_jobs_and_write_what_one_process_writes(tmp_path, tiny_checkpoint,
                                                                   reference):
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    out = tmp_path / "out"
    result = launch(jobs, out, tiny_checkpoint, "-b", "4")
    assert "Traceback" not in result.stderr, result.stderr
    assert "Done: 10 of 10 jobs finished (10 generated now, 0 already done)" in result.stdout, (
        result.stdout + result.stderr)
    assert "on 2 processes" in result.stdout
    assert result.stdout.count("Done:") == 1  # only rank 0 reports
    entries = check_complete(out, reference)
    ranks = [e["rank"] for e in entries]
    assert set(ranks) == {0, 1}
    audio = {0: 0.0, 1: 0.0}
    for entry in entries:
        audio[entry["rank"]] += entry["duration"]
    assert abs(audio[0] - audio[1]) <= 0.8  # the split balances seconds of audio


def rank_pid(group: int, rank: int) -> int | None:
    """The pid of the process of ``rank`` that mlx.launch started in process group ``group``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ProcessLookupError):
            continue
        if f"MLX_RANK={rank}".encode() in environ and b"rag_core.cli" in cmdline:
            return int(entry.name)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank through /proc")
def test_a_run_killed_midway_finishes_on_rerun_without_duplicates(tmp_path, tiny_checkpoint,
                                                                   reference):
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    out = tmp_path / "out"
    args = launch_args(jobs, out, tiny_checkpoint, "-b", "1")
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        victim = None
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.01)
            victim = rank_pid(run.pid, 1)
        assert victim is not None, "rank 1 did not start"
        while not list(out.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)  # the launcher then stops rank 0
        output = run.communicate(timeout=60)[0].decode()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert "Node with rank 1 exited with code -9" in output, output
    finished = len(list(out.glob("*.json")))
    assert 0 < finished < len(JOBS), f"the kill came too late to test anything ({finished})"
    assert not (out / "manifest.jsonl").exists()

    result = launch(jobs, out, tiny_checkpoint, "-b", "1")
    assert f"({len(JOBS) - finished} generated now, {finished} already done)" in result.stdout, (
        result.stdout + result.stderr)
    check_complete(out, reference)


AGREE = """
from musicgen.plugin.batch.jobs import Options, parse_job
from musicgen.plugin.batch.plan import Agreement, PlanError, build_plan

a = Agreement()
def plan(seed):
    return build_plan([parse_job('{"prompt": "p", "seed": %d}' % seed, 1, Options())], [a.size],
                      a.size, 4)
try:
    a.agree(plan(1 + a.rank))
except PlanError as exc:
    print(f"rank {a.rank} refused: {exc}", flush=True)
a.agree(plan(1))
print(f"rank {a.rank} agreed", flush=True)
try:
    a.check(ValueError("cannot read the jobs") if a.rank == 1 else None)
except Exception as exc:
    print(f"rank {a.rank} stopped: {exc}", flush=True)
print(f"rank {a.rank} gathered {a.gather_bytes(b'x' * (a.rank + 1))}", flush=True)
"""


def test_ranks_agree_through_mx_distributed_or_all_stop():
    command = [str(LAUNCH), "-n", "2", "--backend", "ring", "--hosts", "127.0.0.1",
               "--starting-port", str(free_ports(2)), "--", sys.executable, "-c", AGREE]
    output = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    for rank in (0, 1):
        assert (f"rank {rank} refused: rank 1 planned a different run than rank 0: every rank "
                "must read the same jobs file") in output, output
        assert f"rank {rank} agreed" in output
        assert f"rank {rank} gathered [b'x', b'xx']" in output
    assert "rank 0 stopped: rank 1 failed before the run started; see its message." in output
    assert "rank 1 stopped: cannot read the jobs" in output
