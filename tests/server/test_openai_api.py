"""/v1/models, /v1/chat/completions (whole and streamed) and /v1/embeddings with TestClient."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import rag_core
from rag_core.server.chat import StopSequences

from tests.server.conftest import assert_error

QUESTION = [{"role": "user", "content": "Why is the harbour loud at night?"}]


def events(response) -> list:
    """The SSE stream as parsed data items (the final "[DONE]" kept as a string)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n")
    items = []
    for block in response.text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        data = block[len("data: "):]
        items.append(data if data == "[DONE]" else json.loads(data))
    return items


def test_models_lists_llm_and_embedding_models_with_the_configured_ones(library, client):
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    models = {m["id"]: m for m in data["data"]}
    assert {m["kind"] for m in models.values()} == {"llm", "embedding"}
    assert "mlx-community/Qwen2.5-0.5B-Instruct-4bit" in models  # registered by rag_core
    configured = {i for i, m in models.items() if m["configured"]}
    assert configured == {str(library.llm), str(library.embedding)}
    for model in models.values():
        assert model["object"] == "model" and isinstance(model["created"], int)
        assert model["owned_by"] == "rag_core"
    alias = client.get("/v1/models/qwen2.5-0.5b").json()
    assert alias["id"] == "mlx-community/Qwen2.5-0.5B-Instruct-4bit"
    assert client.get(f"/v1/models/{library.llm}").json()["configured"] is True
    assert_error(client.get("/v1/models/no-such-model"), 404, "model", "unknown model")


def test_chat_answers_from_retrieved_passages_with_citations_and_sources(library, client):
    response = client.post("/v1/chat/completions",
                           json={"model": str(library.llm), "messages": QUESTION,
                                 "max_tokens": 3, "k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == str(library.llm)
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "[1][1][1]"}
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 3
    sources = body["sources"]
    assert [s["number"] for s in sources] == [1, 2]
    assert sources[0]["source"].endswith("harbour.md") and "foggy" in sources[0]["text"]
    assert {"lines", "score", "text", "source"} <= set(sources[0])
    assert body["citations"] == [{"number": 1, "source": sources[0]["source"],
                                  "lines": sources[0]["lines"]}]


def test_streamed_chat_is_openai_sse_ending_with_done(library, client):
    response = client.post("/v1/chat/completions", json={
        "messages": QUESTION, "max_tokens": 4, "stream": True,
        "stream_options": {"include_usage": True}})
    items = events(response)
    assert items[-1] == "[DONE]"
    chunks = items[:-1]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    first, *middle, last, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["sources"][0]["source"].endswith("harbour.md")
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == "[1][1][1][1]"
    assert all(c["choices"][0]["finish_reason"] is None for c in [first, *middle])
    assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                  "finish_reason": "length"}
    assert last["citations"][0]["number"] == 1
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4


def test_sampling_parameters_reach_mlx_lm(library, client, monkeypatch):
    import mlx_lm.sample_utils

    samplers, processors = [], []
    real_sampler, real_processors = (mlx_lm.sample_utils.make_sampler,
                                     mlx_lm.sample_utils.make_logits_processors)
    monkeypatch.setattr(mlx_lm.sample_utils, "make_sampler",
                        lambda **kw: samplers.append(kw) or real_sampler(**kw))
    monkeypatch.setattr(mlx_lm.sample_utils, "make_logits_processors",
                        lambda **kw: processors.append(kw) or real_processors(**kw))
    body = {"messages": QUESTION, "max_completion_tokens": 5, "temperature": 0.7, "top_p": 0.9,
            "top_k": 10, "min_p": 0.05, "seed": 3, "repetition_penalty": 1.1,
            "presence_penalty": 0.5, "frequency_penalty": 0.25, "logit_bias": {"7": -100}}
    first = client.post("/v1/chat/completions", json=body).json()
    assert samplers[-1] == {"temp": 0.7, "top_p": 0.9, "min_p": 0.05, "top_k": 10}
    assert processors[-1] == {"logit_bias": {7: -100.0}, "repetition_penalty": 1.1,
                              "presence_penalty": 0.5, "frequency_penalty": 0.25}
    assert first["usage"]["completion_tokens"] == 5
    again = client.post("/v1/chat/completions", json=body).json()
    assert again["choices"][0]["message"] == first["choices"][0]["message"]  # seeded


def test_stop_sequences_cut_the_answer(library, client):
    body = {"messages": QUESTION, "max_tokens": 8, "stop": ["][1]"]}
    whole = client.post("/v1/chat/completions", json=body).json()
    assert whole["choices"][0]["message"]["content"] == "[1"
    assert whole["choices"][0]["finish_reason"] == "stop"
    items = events(client.post("/v1/chat/completions", json={**body, "stream": True}))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in items[:-1])
    assert text == "[1" and items[-2]["choices"][0]["finish_reason"] == "stop"


def test_stop_sequences_hold_back_only_what_may_start_one():
    stop = StopSequences(["END", "xy"])
    assert stop.feed("abcE") == ("abc", False)
    assert stop.feed("N") == ("", False)
    assert stop.feed("Z") == ("ENZ", False)
    assert stop.feed("hello x") == ("hello ", False)
    assert stop.feed("yz") == ("", True)
    assert StopSequences([]).feed("anything") == ("anything", False)


def test_conversation_history_and_system_messages_reach_the_prompt(library, client,
                                                                   monkeypatch):
    import rag_core.answer

    rendered = []
    real = rag_core.answer.render_prompt
    monkeypatch.setattr(rag_core.answer, "render_prompt",
                        lambda tok, messages: rendered.append(messages) or real(tok, messages))
    client.post("/v1/chat/completions", json={"max_tokens": 1, "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Tell me about bread."},
        {"role": "assistant", "content": "Bread needs flour [1]."},
        {"role": "user", "content": [{"type": "text", "text": "And the harbour?"}]},
    ]}).raise_for_status()
    system, *history, question = rendered[-1]
    assert system["role"] == "system" and system["content"].endswith("Answer in French.")
    assert history == [{"role": "user", "content": "Tell me about bread."},
                       {"role": "assistant", "content": "Bread needs flour [1]."}]
    assert question["content"].endswith("Question: And the harbour?")
    assert "harbour.md" in question["content"]  # retrieved for the last user message


def test_a_model_stays_loaded_between_requests(library, client, monkeypatch):
    import mlx_lm

    loads = []
    real = mlx_lm.load
    monkeypatch.setattr(mlx_lm, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    for _ in range(3):
        client.post("/v1/chat/completions",
                    json={"messages": QUESTION, "max_tokens": 1}).raise_for_status()
    assert len(loads) == 1 and rag_core.get_registry().is_loaded(str(library.llm))


def test_embeddings_as_floats_and_base64(library, client):
    from rag_core.embeddings import load

    texts = ["fog in the harbour", "bread and yeast"]
    expected = load(library.embedding).encode(texts)
    floats = client.post("/v1/embeddings", json={"input": texts}).json()
    assert floats["object"] == "list" and floats["model"] == str(library.embedding)
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in floats["data"])
    np.testing.assert_allclose([d["embedding"] for d in floats["data"]], expected, atol=1e-5)
    assert floats["usage"]["prompt_tokens"] == floats["usage"]["total_tokens"] > 4
    packed = client.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64",
                                                 "model": str(library.embedding)}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, expected[0], atol=1e-5)


@pytest.mark.parametrize(("path", "body", "status", "param", "words"), [
    ("/v1/chat/completions", {}, 400, "messages", "must be a non-empty array"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages", "non-empty"),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "hi"}]}, 400,
     "messages", "must end with a user message"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400,
     "messages[0].role", "must be one of"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}]}, 400,
     "messages[0].content", "non-empty"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
     "messages[0].content[0].type", "only text"),
    ("/v1/chat/completions", {"messages": QUESTION, "temperature": -1}, 400, "temperature",
     "temp must be >= 0"),
    ("/v1/chat/completions", {"messages": QUESTION, "top_p": "high"}, 400, "top_p",
     "must be a number"),
    ("/v1/chat/completions", {"messages": QUESTION, "max_tokens": 0}, 400, "max_tokens",
     "max_tokens must be >= 1"),
    ("/v1/chat/completions", {"messages": QUESTION, "seed": 1.5}, 400, "seed", "integer"),
    ("/v1/chat/completions", {"messages": QUESTION, "logit_bias": {"x": 1}}, 400,
     "logit_bias", "token ids"),
    ("/v1/chat/completions", {"messages": QUESTION, "n": 2}, 400, "n", "must be 1"),
    ("/v1/chat/completions", {"messages": QUESTION, "stream": "yes"}, 400, "stream",
     "true or false"),
    ("/v1/chat/completions", {"messages": QUESTION, "stop": ["a"] * 5}, 400, "stop", "at most 4"),
    ("/v1/chat/completions", {"messages": QUESTION, "tools": []}, 400, "tools",
     "not a known field"),
    ("/v1/chat/completions", {"messages": QUESTION, "k": 0}, 400, "k", "at least 1"),
    ("/v1/chat/completions", {"messages": QUESTION, "model": "nope/nope"}, 404, "model",
     "unknown model"),
    ("/v1/chat/completions", {"messages": QUESTION, "model": "all-MiniLM-L6-v2"}, 400, "model",
     "kind 'llm'"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "what is the"}]}, 400,
     "messages", "only stop words"),
    ("/v1/embeddings", {}, 400, "input", "is required"),
    ("/v1/embeddings", {"input": []}, 400, "input", "non-empty array"),
    ("/v1/embeddings", {"input": [[1, 2, 3]]}, 400, "input[0]", "token arrays"),
    ("/v1/embeddings", {"input": ["ok", " "]}, 400, "input[1]", "must not be empty"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}, 400, "encoding_format",
     "float, base64"),
    ("/v1/embeddings", {"input": "x", "dimensions": 3}, 400, "dimensions", "must be 32"),
    ("/v1/embeddings", {"input": "x", "model": str(__file__)}, 404, "model", "unknown model"),
])  # fmt: skip
def test_bad_requests_get_a_json_error_naming_the_field(library, client, path, body, status,
                                                       param, words):
    assert_error(client.post(path, json=body), status, param, words)


def test_malformed_bodies(client):
    for content, words in [(b"{not json", "not valid json"), (b"[1, 2]", "must be a json object"),
                           (b"", "empty")]:
        response = client.post("/v1/chat/completions", content=content,
                               headers={"Content-Type": "application/json"})
        assert_error(response, 400, "body", words)


def test_an_empty_store_is_a_conflict_that_says_what_to_do(library, client):
    library.store.unlink()
    response = client.post("/v1/chat/completions", json={"messages": QUESTION})
    assert_error(response, 409, None, "mlx-rag ingest")


def test_a_model_that_cannot_be_loaded_is_a_503_naming_it(library, client):
    response = client.post("/v1/chat/completions", json={
        "messages": QUESTION, "model": "mlx-community/not-downloaded-4bit"})
    assert_error(response, 503, "model", "mlx-community/not-downloaded-4bit")
