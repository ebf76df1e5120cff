"""`mlx-rag ingest`, `search` and `ask --no-llm` through the real CLI group, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rag_core.cli import cli
from rag_core.cli.retrieval import add_commands

from tests.retrieval.test_ingest import write_docs


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result


@pytest.fixture
def store(configure, tiny_bert, tmp_path) -> Path:
    path = tmp_path / "store.sqlite3"
    configure(store=path, embedding=tiny_bert)
    return path


def test_ingest_then_search_text_and_json(store, tmp_path):
    write_docs(tmp_path / "docs")
    result = run("ingest", tmp_path / "docs")
    assert f"Ingested into {store}: 3 added, 0 updated, 0 unchanged" in result.stdout
    assert "0 added, 0 updated, 3 unchanged" in run("ingest", tmp_path / "docs").stdout

    found = json.loads(run("search", "topic1 paragraph", "-k", "2", "--json").stdout)
    assert found["mode"] == "hybrid" and len(found["results"]) == 2
    top = found["results"][0]
    assert set(top) == {"id", "text", "source", "lines", "score"}
    assert Path(top["source"]).name == "doc1.md" and "topic1" in top["text"]
    assert top["lines"][0] >= 1 and top["lines"][1] >= top["lines"][0]

    text = run("search", "topic2", "-k", "1").stdout
    assert text.startswith("1. ") and "doc2.md:" in text and "hybrid score" in text


def test_store_option_overrides_the_config(store, tmp_path):
    (tmp_path / "a.txt").write_text("a lonely sentence about lighthouses")
    other = tmp_path / "elsewhere" / "other.sqlite3"
    run("ingest", tmp_path / "a.txt", "--store", other, "--no-embed")
    assert other.exists() and not store.exists()
    found = json.loads(run("search", "lighthouses", "--store", other, "--json").stdout)
    assert found["mode"] == "bm25" and found["notes"]


def test_without_embedding_model_search_is_bm25_and_says_so_once(configure, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    configure(store=tmp_path / "store.sqlite3")  # default model id: not cached, and offline
    write_docs(tmp_path / "docs", n=2)
    ingest = run("ingest", tmp_path / "docs")
    assert ingest.stderr.count("Note:") == 1 and "only BM25" in ingest.stderr
    assert "(no vectors)" in ingest.stdout
    search = run("search", "topic1")
    assert search.stderr.count("Note:") == 1 and "BM25 only" in search.stderr
    assert "doc1.md" in search.stdout.splitlines()[0]


def test_store_whose_embedding_model_is_gone_falls_back_to_bm25(configure, tiny_bert, tmp_path):
    import shutil

    model = shutil.copytree(tiny_bert, tmp_path / "model")
    configure(store=tmp_path / "store.sqlite3", embedding=model)
    write_docs(tmp_path / "docs", n=2)
    run("ingest", tmp_path / "docs")
    shutil.rmtree(model)
    search = run("search", "topic1", "--json")
    assert json.loads(search.stdout)["mode"] == "bm25"
    assert "Note:" not in search.stderr  # --json keeps notes out of the way
    text = run("search", "topic1")
    assert text.stderr.count("Note:") == 1 and str(model) in text.stderr
    assert "doc1.md" in text.stdout.splitlines()[0]


def test_ask_without_llm_prints_the_passages(store, tmp_path):
    write_docs(tmp_path / "docs")
    ingest = run("ingest", tmp_path / "docs")
    assert ingest.exit_code == 0
    out = run("ask", "what about topic0?", "--no-llm", "-k", "2").stdout
    assert out.startswith("[1] ") and "doc0.md:" in out.splitlines()[0]
    assert "[2] " in out and "topic0" in out


def test_bad_input_exits_non_zero_with_a_message(store, tmp_path):
    search = run("search", "anything", ok=False)
    assert "Error: No store at" in search.stderr and "mlx-rag ingest" in search.stderr

    missing = run("ingest", tmp_path / "nope", ok=False)
    assert "Error: No such file or folder" in missing.stderr and "nope" in missing.stderr

    (tmp_path / "blob.txt").write_bytes(b"\x00\xff\x00 binary")
    binary = run("ingest", tmp_path / "blob.txt", ok=False)
    assert "Warning: skipped" in binary.stderr and "blob.txt" in binary.stderr
    assert "every file was skipped" in binary.stderr

    empty = run("search", "anything", ok=False)  # the failed ingest created an empty store
    assert "is empty: run `mlx-rag ingest" in empty.stderr

    (tmp_path / "good.txt").write_text("some real words")
    mixed = run("ingest", tmp_path / "good.txt", tmp_path / "blob.txt")  # warns, succeeds
    assert "blob.txt" in mixed.stderr and "1 added" in mixed.stdout

    stop_words = run("search", "what is the", ok=False)
    assert "only stop words" in stop_words.stderr
    assert run("search", "words", "-k", "0", ok=False).exit_code == 2  # usage error

    store.write_bytes(b"garbage" * 1000)
    for args in (["search", "words"], ["ingest", tmp_path / "good.txt"], ["ask", "words"]):
        not_a_store = run(*args, ok=False)
        assert "is not an SQLite database, so not an mlx-rag store" in not_a_store.stderr
        assert "corrupt" not in not_a_store.stderr
    assert store.read_bytes() == b"garbage" * 1000


def test_integers_out_of_range_are_usage_errors(store, tmp_path):
    (tmp_path / "a.txt").write_text("words about harbours")
    run("ingest", tmp_path / "a.txt")
    huge = "99999999999999999999"  # past SQLite's 64-bit integers
    for args in (["search", "harbours", "-k", huge], ["search", "harbours", "-k", "10001"],
                 ["ask", "harbours?", "-k", huge], ["ask", "harbours?", "--seed", huge],
                 ["ask", "harbours?", "--seed", "-1"]):
        result = run(*args, ok=False)
        assert result.exit_code == 2 and "is not in the range" in result.stderr, args
        assert "OverflowError" not in result.output and "bug" not in result.output
    assert json.loads(run("search", "harbours", "-k", "10000", "--json").stdout)["results"]


def test_add_commands_on_a_bare_group(store, tmp_path):
    @click.group()
    def group():
        pass

    add_commands(group)
    assert {"ingest", "search", "ask"} <= set(group.commands)
    (tmp_path / "t.txt").write_text("standalone group works")
    runner = CliRunner()
    assert runner.invoke(group, ["ingest", str(tmp_path / "t.txt")]).exit_code == 0
    result = runner.invoke(group, ["search", "standalone", "--json"])
    assert json.loads(result.stdout)["results"][0]["text"] == "standalone group works"
