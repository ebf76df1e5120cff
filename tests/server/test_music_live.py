"""A live `mlx-rag serve` stopped in the middle of a generation leaves no partial track:
killed outright (SIGKILL), its temporary file is no track and the next server removes it;
stopped (Ctrl-C), it cancels the job and removes the file itself."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("wait", [0.0, 0.0, 0.05, 0.3])
def test_a_server_stopped_mid_generation_cancels_and_cleans_up(music_home, tmp_path, wait):
    """Stopped at once or a little later: the job thread may still be ending (MLX's thread-local
    destructors take the GIL) when the process ends, which must not abort it."""
    server = Server(tmp_path / "server.log", env={"MLX_RAG_TOKEN": TOKEN})
    try:
        generating(server, music_home)
        time.sleep(wait)
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert list(music_home.iterdir()) == []
    assert "Traceback" not in server.log.read_text()


def test_the_docs_example_makes_music_from_an_answer(music_library, tmp_path, monkeypatch):
    """docs/server.md's Python example, run as written against a live server (its server,
    token, LLM, answer length and duration swapped for the test's)."""
    import runpy

    doc = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    start = doc.index("```python\nimport json\nimport time\nimport urllib.request")
    code = doc[start + len("```python\n"): doc.index("```\n", start + 10)]
    server = Server(tmp_path / "server.log", env={"MLX_RAG_TOKEN": TOKEN})
    try:
        code = (code.replace('"http://127.0.0.1:8321", "unused"', f'"{server.url}", "{TOKEN}"')
                .replace('"qwen2.5-0.5b"', f'"{music_library.llm}"')
                .replace('"duration": 10', '"duration": 1')
                .replace("max_tokens=200", "max_tokens=8"))
        script = tmp_path / "example.py"
        script.write_text(code)
        monkeypatch.chdir(tmp_path)
        runpy.run_path(str(script))
        tracks = call(server, "GET", "/api/tracks")["tracks"]
    finally:
        assert server.stop() == 0
    (track,) = tracks
    assert (tmp_path / track["id"]).read_bytes()[:4] == b"RIFF"
    assert track["sidecar"]["rag"]["question"] == "What music suits a foggy harbour at night?"
    assert track["seed"] == 7
