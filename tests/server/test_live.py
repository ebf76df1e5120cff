"""A real `mlx-rag serve` on loopback, driven by the official openai client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TOKEN = "live-test-token-0123456789abcdef"


def mlx_rag() -> str:
    script = Path(sys.executable).with_name("mlx-rag")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package (python3 scripts/dev.py test)")
    return str(script)


class Server:
    """`mlx-rag serve --port 0` in a subprocess; ``url`` once it listens."""

    def __init__(self, log: Path, *args: str, env: dict[str, str] | None = None):
        self.log = log
        self.process = subprocess.Popen(
            [mlx_rag(), "serve", "--port", "0", *args], stdout=subprocess.DEVNULL,
            stderr=log.open("w"), env={**os.environ, **(env or {})})
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if line.startswith("Serving on http://"):
                    return line.split()[2]
            if self.process.poll() is not None:
                pytest.fail(f"the server exited: {self.log.read_text()}")
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the server did not start: {self.log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def server(library, tmp_path):
    server = Server(tmp_path / "server.log", env={"MLX_RAG_TOKEN": TOKEN})
    yield server
    server.stop()


def test_openai_client_against_a_live_server(library, server):
    import openai

    assert server.url.startswith("http://127.0.0.1:")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)

    ids = {m.id: m for m in client.models.list()}
    assert {str(library.llm), str(library.embedding)} <= set(ids)
    assert ids[str(library.llm)].model_extra["kind"] == "llm"

    question = [{"role": "user", "content": "Why do ships sound horns in the harbour?"}]
    answer = client.chat.completions.create(model=str(library.llm), messages=question,
                                            max_tokens=3, temperature=0)
    assert answer.choices[0].message.content == "[1][1][1]"
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 3
    assert answer.model_extra["sources"][0]["source"].endswith("harbour.md")
    assert answer.model_extra["citations"][0]["number"] == 1

    stream = client.chat.completions.create(model=str(library.llm), messages=question,
                                            max_tokens=4, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[1][1][1][1]"
    assert chunks[0].model_extra["sources"] and chunks[-1].choices[0].finish_reason == "length"

    from rag_core.embeddings import load

    texts = ["fog over the harbour", "kneading bread"]
    expected = load(library.embedding).encode(texts)
    embedded = client.embeddings.create(model=str(library.embedding), input=texts)
    assert embedded.model == str(library.embedding)
    np.testing.assert_allclose([d.embedding for d in embedded.data], expected, atol=1e-5)

    with pytest.raises(openai.BadRequestError, match="temp must be >= 0"):
        client.chat.completions.create(model=str(library.llm), messages=question,
                                       temperature=-1)
    with pytest.raises(openai.NotFoundError, match="Unknown model"):
        client.chat.completions.create(model="no/such-model", messages=question)
    stranger = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()

    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log
