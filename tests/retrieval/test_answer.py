"""`ask` and the `answer` tool with tiny mlx-lm models written locally (mlx-lm's own classes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rag_core
from rag_core.answer import citations
from rag_core.errors import PipelineError

from tests.retrieval.test_cli import run
from tests.retrieval.test_ingest import write_docs


@pytest.fixture
def ingested(configure, tiny_bert, tmp_path):
    """A store with three documents, and a function to point [llm] model at a directory."""
    store = tmp_path / "store.sqlite3"
    configure(store=store, embedding=tiny_bert)
    write_docs(tmp_path / "docs")
    run("ingest", tmp_path / "docs")

    def use_llm(llm_dir: Path) -> None:
        configure(store=store, embedding=tiny_bert, llm=llm_dir)

    return use_llm


def test_local_mlx_lm_dir_loads_through_the_registry_pattern(ingested, tiny_llm):
    ingested(tiny_llm)
    spec = rag_core.get_registry().spec(str(tiny_llm))
    assert (spec.kind, spec.plugin) == ("llm", "rag_core")
    result = run("ask", "what about topic1?", "--max-tokens", "6")
    streamed, _, tail = result.stdout.partition("\n\n")
    assert streamed.strip()  # the random model's tokens were streamed
    assert "The answer cites no passage. Retrieved:" in tail and "[1] " in tail


def test_citations_map_to_sources(ingested, citing_llm, tmp_path):
    ingested(citing_llm)  # a model that always says "[1]"
    out = run("ask", "what about topic2?", "-k", "2", "--max-tokens", "3").stdout
    assert out.startswith("[1][1][1]")
    sources = out.split("Sources:\n", 1)[1].splitlines()
    assert len(sources) == 1 and sources[0].startswith("[1] ") and "doc2.md:" in sources[0]

    record = json.loads(run("ask", "topic2?", "-k", "2", "--max-tokens", "2", "--json").stdout)
    assert record["answer"] == "[1][1]" and record["model"] == str(citing_llm)
    assert record["citations"] == [{
        "number": 1, "source": record["passages"][0]["source"],
        "lines": record["passages"][0]["lines"],
    }]  # fmt: skip


def test_sampling_options_reach_make_sampler(ingested, tiny_llm, monkeypatch):
    ingested(tiny_llm)
    import mlx_lm.sample_utils

    calls = []
    real = mlx_lm.sample_utils.make_sampler

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(mlx_lm.sample_utils, "make_sampler", spy)
    args = ["ask", "topic0?", "--max-tokens", "8", "--temp", "0.8", "--top-p", "0.9",
            "--top-k", "20", "--min-p", "0.05", "--json"]
    first = json.loads(run(*args, "--seed", "7").stdout)["answer"]
    assert calls[-1] == {"temp": 0.8, "top_p": 0.9, "min_p": 0.05, "top_k": 20}
    assert json.loads(run(*args, "--seed", "7").stdout)["answer"] == first  # seeded
    assert run("ask", "topic0?", "--top-p", "2", ok=False).exit_code == 2


def test_top_k_past_the_vocabulary_keeps_every_token(ingested, tiny_llm):
    ingested(tiny_llm)  # mlx-lm refuses top_k >= vocabulary size (and overflows on huge ones)
    args = ["ask", "topic0?", "--max-tokens", "4", "--temp", "1", "--seed", "3", "--json"]
    unfiltered = json.loads(run(*args).stdout)["answer"]
    for top_k in ("5000", "99999999999999999999"):
        assert json.loads(run(*args, "--top-k", top_k).stdout)["answer"] == unfiltered


def test_pipeline_integers_out_of_range_are_clear_errors(ingested, citing_llm):
    ingested(citing_llm)
    with pytest.raises(PipelineError, match="k must be between 1 and 10000, got 1000000"):
        rag_core.run_pipeline([{"tool": "retrieve", "k": 10**20}], "topic1?")
    with pytest.raises(PipelineError, match=r"seed must be in \[0, 2\*\*64 - 1\]"):
        rag_core.run_pipeline([{"tool": "retrieve"}, {"tool": "answer", "seed": -1}], "q?")


def test_pipeline_retrieve_then_answer(ingested, citing_llm):
    ingested(citing_llm)
    state = rag_core.run_pipeline(
        [{"tool": "retrieve", "k": 2}, {"tool": "answer", "max_tokens": 2}], "topic1?"
    )
    assert len(state.retrieved) == 2
    assert set(state.retrieved[0]) == {"id", "text", "source", "lines", "score"}
    assert state.answer == "[1][1]"
    assert state.outputs["answer"]["citations"][0]["source"] == state.retrieved[0]["source"]
    assert state.outputs["retrieve"]["mode"] == "hybrid"

    result = run("run", "ask", "topic1?", "--json")  # the default "ask" pipeline from config
    assert json.loads(result.stdout)["answer"].startswith("[1]")


def test_answer_step_needs_passages_and_valid_options(ingested, citing_llm):
    ingested(citing_llm)
    with pytest.raises(PipelineError, match="retrieve step before it"):
        rag_core.run_pipeline([{"tool": "answer"}], "question?")
    with pytest.raises(PipelineError, match="cannot take these options"):
        rag_core.run_pipeline([{"tool": "retrieve", "top": 3}], "question?")
    with pytest.raises(PipelineError, match="k must be a positive integer"):
        rag_core.run_pipeline([{"tool": "retrieve", "k": 0}], "question?")
    with pytest.raises(PipelineError, match="temp must be >= 0"):
        rag_core.run_pipeline([{"tool": "retrieve"}, {"tool": "answer", "temp": -1}], "q?")


def test_unavailable_llm_says_how_to_get_it(ingested, configure, tiny_bert, tmp_path,
                                           monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    configure(store=tmp_path / "store.sqlite3", embedding=tiny_bert)  # default [llm] model
    result = run("ask", "topic1?", ok=False)
    assert "mlx-rag models pull mlx-community/Qwen2.5-0.5B-Instruct-4bit" in result.stderr
    assert "--no-llm" in result.stderr
    assert run("ask", "topic1?", "--no-llm").stdout.startswith("[1] ")


def test_wrong_kind_of_model_is_refused(ingested, tiny_bert):
    ingested(tiny_bert)  # an embedding model configured as the LLM
    result = run("ask", "topic1?", ok=False)
    assert "is of kind 'embedding', but kind 'llm' is needed" in result.stderr


def test_citation_parsing():
    passages = [{"source": f"/doc{i}", "lines": [i, i + 1], "text": ""} for i in range(1, 4)]
    found = citations("See [2] and [1, 3]; also [2][9] and [x].", passages)
    assert [(c.number, c.source, c.lines) for c in found] == [
        (2, "/doc2", [2, 3]), (1, "/doc1", [1, 2]), (3, "/doc3", [3, 4]),
    ]  # fmt: skip


def test_mlx_lm_dir_pattern_is_cheap(tiny_llm, tmp_path):
    """Registry patterns are asked about every local model dir, so this one must not import
    mlx-lm (which imports transformers); it still knows mlx-lm's remapped model types."""
    import subprocess
    import sys

    for model_type in ("mistral", "musicgen"):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        (folder / "model.safetensors").write_bytes(b"")
    code = (
        "import sys; from rag_core.answer import is_mlx_lm_dir as match; "
        f"print(match({str(tiny_llm)!r}), match({str(tmp_path / 'mistral')!r}), "
        f"match({str(tmp_path / 'musicgen')!r}), 'mlx_lm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False", "False"]
