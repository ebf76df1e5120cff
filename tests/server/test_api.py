"""/health, /api/search and /api/run/{pipeline} (a job) with TestClient."""

from __future__ import annotations

import time

import pytest

from tests.server.conftest import assert_error, write_config


def test_health(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["auth"] is False
    assert health["features"][:5] == ["chat", "embeddings", "search", "pipelines", "jobs"]
    assert {p["name"] for p in health["plugins"]} >= {"rag_core", "musicgen"}
    assert health["features"][5:] == ["musicgen"]  # its endpoints and page module
    assert health["page_modules"] == ["/plugins/musicgen/music.js"] and health["jobs"] == {}


def test_search_returns_score_source_lines_and_text(library, client):
    found = client.post("/api/search", json={"query": "flour and yeast", "k": 2}).json()
    assert found["query"] == "flour and yeast" and found["mode"] == "hybrid"
    assert len(found["results"]) == 2
    top = found["results"][0]
    assert top["source"] == str(library.docs / "bread.md")
    assert top["lines"] == [1, 4] and "yeast" in top["text"] and top["score"] > 0
    bm25 = client.post("/api/search", json={"query": "tomatoes", "mode": "bm25"}).json()
    assert bm25["mode"] == "bm25" and bm25["results"][0]["source"].endswith("garden.txt")


@pytest.mark.parametrize(("body", "param", "words"), [
    ({}, "query", "is required"),
    ({"query": 3}, "query", "must be a string"),
    ({"query": "  "}, "query", "must not be empty"),
    ({"query": "bread", "k": "2"}, "k", "must be an integer"),
    ({"query": "bread", "k": 1000}, "k", "at most 100"),
    ({"query": "bread", "mode": "fuzzy"}, "mode", "must be one of auto, hybrid"),
    ({"query": "bread", "limit": 3}, "limit", "not a known field"),
    ({"query": "the of and"}, "query", "only stop words"),
])  # fmt: skip
def test_search_errors_name_the_field(library, client, body, param, words):
    assert_error(client.post("/api/search", json=body), 400, param, words)


def test_search_without_a_store_says_to_ingest(mlx_rag_config, tmp_path, tiny_bert, citing_llm,
                                               client):
    write_config(mlx_rag_config, tmp_path / "none.sqlite3", tiny_bert, citing_llm)
    assert_error(client.post("/api/search", json={"query": "bread"}), 409, None,
                 "run `mlx-rag ingest")


def poll(client, job_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def test_run_a_pipeline_as_a_job(library, client):
    accepted = client.post("/api/run/ask", json={"question": "How is bread made?"})
    assert accepted.status_code == 202
    job = accepted.json()
    assert job["kind"] == "pipeline" and job["status"] in ("queued", "running", "done")
    assert job["info"] == {"pipeline": "ask", "question": "How is bread made?"}
    done = poll(client, job["id"])
    assert done["status"] == "done" and done["progress"] == 1.0
    result = done["result"]
    assert result["pipeline"] == "ask" and result["answer"].startswith("[1]")
    assert [s["name"] for s in result["steps"]] == ["retrieve", "answer"]
    assert result["retrieved"][0]["source"].endswith("bread.md")


def test_run_and_wait(library, client):
    response = client.post("/api/run/ask", json={"question": "harbour fog?", "wait": True})
    assert response.status_code == 200 and response.json()["status"] == "done"


def test_a_failing_step_fails_the_job_with_its_message(library, client, tmp_path):
    write_config(library.config, library.store, library.embedding, tmp_path / "no-such-llm")
    done = poll(client, client.post("/api/run/ask", json={"question": "bread?"}).json()["id"])
    assert done["status"] == "failed" and "no-such-llm" in done["error"]


def test_run_errors(library, client):
    assert_error(client.post("/api/run/nope", json={"question": "x"}), 404, "pipeline",
                 "no pipeline named 'nope' (configured: ask, music)")
    assert_error(client.post("/api/run/ask", json={}), 400, "question", "is required")
    assert_error(client.post("/api/run/ask", json={"question": "x", "wait": 1}), 400, "wait")
    write_config(library.config, library.store, library.embedding, library.llm,
                 '[pipelines.odd]\nsteps = [{tool = "retrieve", depth = 3}]\n')
    assert_error(client.post("/api/run/odd", json={"question": "x"}), 400, "pipeline",
                 "cannot take these options")


def test_pipeline_progress_and_cancel_between_steps(library, client, monkeypatch):
    import rag_core.builtin

    real = rag_core.builtin.retrieve_tool
    reached = []

    def slow_retrieve(state, **options):
        reached.append(state.question)
        state.progress(1, 2)
        time.sleep(0.3)
        state.progress(2, 2)  # the job was cancelled meanwhile: the run stops here
        return real(state, **options)

    monkeypatch.setattr(rag_core.builtin, "retrieve_tool", slow_retrieve)
    monkeypatch.setattr(rag_core.builtin, "register_tools",
                        _tools_with(slow_retrieve, rag_core.builtin))
    write_config(library.config, library.store, library.embedding, library.llm)
    job = client.post("/api/run/ask", json={"question": "bread?"}).json()
    deadline = time.monotonic() + 10
    while not reached and time.monotonic() < deadline:
        time.sleep(0.01)
    running = client.get(f"/api/jobs/{job['id']}").json()
    assert running["status"] == "running" and running["progress"] == 0.25  # step 1 of 2, half
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 202
    finished = poll(client, job["id"])
    assert finished["status"] == "cancelled" and finished["result"] is None


def _tools_with(retrieve, builtin):
    from rag_core import Tool, hookimpl

    @hookimpl
    def register_tools(register):
        register(Tool("retrieve", retrieve, "slow retrieve"))
        register(Tool("answer", builtin.answer_tool, "answer"))

    return register_tools


def test_the_answer_step_takes_turns_on_the_models_lane(library, client):
    import rag_core

    with rag_core.model_lane(str(library.llm)):  # e.g. a chat answer in progress
        job = client.post("/api/run/ask", json={"question": "bread?"}).json()
        deadline = time.monotonic() + 10
        while client.get(f"/api/jobs/{job['id']}").json()["progress"] < 0.5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        waiting = client.get(f"/api/jobs/{job['id']}").json()
        assert waiting["status"] == "running" and waiting["progress"] == 0.5  # at the answer
    assert poll(client, job["id"])["status"] == "done"
