"""SIGTERM and SIGHUP during `music generate` act as Ctrl-C; a SIGKILLed run's leftovers go."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from musicgen.plugin.smoke import SMOKE_ID

from tests.plugin.helpers import (
    MLX_RAG,
    files_in,
    start,
    subprocess_env,
    wait_for_file,
    wait_for_line,
)

LONG = ("music", "generate", "calm piano", "--model", SMOKE_ID, "--duration", "300")


def stop(process: subprocess.Popen, sig: int) -> str:
    """Send ``sig``; the rest of stderr once the process is gone."""
    try:
        process.send_signal(sig)
        return process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_generation_leaves_nothing(mlx_rag_home, out, sig, code):
    process = start(mlx_rag_home, *LONG, "-o", out / "x.wav")
    lines = wait_for_line(process, "Generating")
    time.sleep(0.5)
    stderr = "".join(lines) + stop(process, sig)
    assert process.returncode == code, stderr
    assert stderr.endswith(f"Interrupted by {sig.name}: generation stopped and no audio file "
                           "was written.\n")  # fmt: skip
    assert "Traceback" not in stderr and files_in(out) == []


def test_sigterm_while_streaming_leaves_no_partial_file(mlx_rag_home, out):
    process = start(mlx_rag_home, *LONG, "--stream", "-o", out / "x.wav")
    wait_for_file(out, ".x.*", min_bytes=64_000)  # a second of audio is on disk
    stderr = stop(process, signal.SIGTERM)
    assert process.returncode == 143, stderr
    assert "Interrupted by SIGTERM: generation stopped and no audio file was written." in stderr
    assert files_in(out) == []


def test_a_sigkilled_runs_leftover_is_no_track_and_the_next_run_removes_it(mlx_rag_home, out):
    process = start(mlx_rag_home, *LONG, "--stream", "-o", out / "x.wav")
    leftover = wait_for_file(out, ".x.*", min_bytes=64_000)
    stop(process, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert files_in(out) == [leftover.name]
    assert leftover.name.endswith(".part") and f"-{process.pid}-" in leftover.name
    assert not list(out.glob("*.wav")) and not list(out.glob("*.json"))  # not a track

    # The next run into that folder removes it; a run still writing there keeps its file.
    live = start(mlx_rag_home, *LONG, "--stream", "-o", out / "y.wav")
    try:
        running = wait_for_file(out, ".y.wav.*")
        result = subprocess.run([MLX_RAG, "music", "generate", "calm", "--model", SMOKE_ID,
                                 "-d", "0.1", "-o", out / "z.wav"], capture_output=True,
                                text=True, env=subprocess_env(mlx_rag_home), timeout=120)
        assert result.returncode == 0, result.stderr
        assert not leftover.exists() and running.exists()
        assert sorted(files_in(out)) == sorted([running.name, "z.wav", "z.wav.json"])
    finally:
        stop(live, signal.SIGTERM)
    assert files_in(out) == ["z.wav", "z.wav.json"]
