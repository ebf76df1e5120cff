"""Chunking: sizes in model tokens or characters, overlap, breaks, and line ranges."""

from __future__ import annotations

import re

import pytest
from rag_core.chunking import Chunker
from rag_core.embeddings import load

TEXT = "\n".join(
    f"Line {n}: the quick brown fox jumps over the lazy dog, number {n}."
    + ("\n" if n % 7 == 0 else "")  # some blank lines: paragraph breaks
    for n in range(1, 80)
)


def check_chunks(text: str, chunks, size: int, measure) -> None:
    lines = text.split("\n")
    for chunk in chunks:
        assert measure(chunk.text) <= size
        # The chunk's line range holds exactly its text.
        source = "\n".join(lines[chunk.line_start - 1 : chunk.line_end])
        assert chunk.text.strip() and chunk.text in source
        assert chunk.text.split("\n")[0] in lines[chunk.line_start - 1]
        assert chunk.text.split("\n")[-1] in lines[chunk.line_end - 1]
    # Every word of the text is in some chunk, in order, and consecutive chunks overlap.
    covered = " ".join(c.text for c in chunks).split()
    assert set(text.split()) <= set(covered)
    starts = [text.index(c.text) for c in chunks]
    ends = [s + len(c.text) for s, c in zip(starts, chunks, strict=True)]
    assert starts == sorted(starts)
    assert all(ends[i] > starts[i + 1] for i in range(len(chunks) - 1))


def test_character_chunks():
    chunker = Chunker(300, 60)
    chunks = chunker.split(TEXT)
    assert len(chunks) > 10
    check_chunks(TEXT, chunks, 300, len)
    assert chunker.signature == "chars:300:60"


def test_token_chunks_fit_the_model(tiny_bert):
    embedder = load(tiny_bert)
    chunker = Chunker(48, 8, embedder.token_spans, "tokens:tiny")
    chunks = chunker.split(TEXT)
    check_chunks(TEXT, chunks, 48, lambda t: len(embedder.token_spans(t)))
    # Chunks prefer to end at a line end rather than mid-line.
    assert sum(c.text.endswith(".") for c in chunks[:-1]) >= len(chunks) - 2


def test_paragraph_breaks_are_preferred():
    text = "alpha beta gamma delta epsilon zeta.\n\n" + "eta " * 20
    first = Chunker(60, 10).split(text)[0]  # would fit "... zeta.\n\neta eta eta eta eta"
    assert first.text == "alpha beta gamma delta epsilon zeta."
    assert (first.line_start, first.line_end) == (1, 1)


def test_edge_cases():
    assert Chunker(10, 2).split("") == []
    assert Chunker(10, 2).split("  \n\n ") == []
    [long] = Chunker(10, 2).split("x" * 50)  # one word longer than a chunk stays whole
    assert long.text == "x" * 50
    words = Chunker(10, 0).split("aa bb cc dd ee ff gg")
    assert [c.text for c in words] == ["aa bb cc", "dd ee ff", "gg"]
    with pytest.raises(ValueError, match="overlap"):
        Chunker(10, 10)


def test_line_ranges_on_crlf_and_unicode():
    text = "première ligne\r\ndeuxième ligne\r\n\r\ntroisième 東京 ligne\r\n"
    chunks = Chunker(20, 0).split(text)
    assert [(c.line_start, c.line_end) for c in chunks] == [(1, 1), (2, 2), (4, 4)]
    assert all(not re.search(r"\s$", c.text) for c in chunks)
