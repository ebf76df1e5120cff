"""A live `mlx-rag serve` stopped in the middle of a generation leaves no partial track:
killed outright (SIGKILL), its temporary file is no track and the next server removes it;
stopped (Ctrl-C), it cancels the job and removes the file itself."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

from tests.server.test_live import TOKEN, Server


def call(server: Server, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{server.url}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def generating(server: Server, folder: Path) -> str:
    """Start a long track and return its job id once it is being written."""
    job = call(server, "POST", "/api/music", {"prompt": "a very long piece", "duration": 300})
    deadline = time.monotonic() + 120
    while call(server, "GET", f"/api/jobs/{job['id']}")["progress"] == 0:
        assert time.monotonic() < deadline, "the generation did not start"
        time.sleep(0.05)
    assert [p.name for p in folder.glob(".*.part")], "no temporary file while generating"
    return job["id"]


def test_a_server_killed_mid_generation_leaves_no_partial_track(music_home, tmp_path):
    server = Server(tmp_path / "first.log", env={"MLX_RAG_TOKEN": TOKEN})
    try:
        generating(server, music_home)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
    finally:
        server.stop()
    left = sorted(p.name for p in music_home.iterdir())
    assert left and all(name.startswith(".") and name.endswith(".part") for name in left), left

    again = Server(tmp_path / "second.log", env={"MLX_RAG_TOKEN": TOKEN})
    try:
        assert call(again, "GET", "/api/tracks") == {"tracks": []}
        assert list(music_home.iterdir()) == []  # the dead server's leftover is removed
    finally:
        assert again.stop() == 0


def test_a_server_stopped_mid_generation_cancels_and_cleans_up(music_home, tmp_path):
    server = Server(tmp_path / "server.log", env={"MLX_RAG_TOKEN": TOKEN})
    try:
        generating(server, music_home)
    finally:
        assert server.stop() == 0
    assert list(music_home.iterdir()) == []
    assert "Traceback" not in server.log.read_text()
