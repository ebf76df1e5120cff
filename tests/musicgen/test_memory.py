"""Batch sizes from free device memory (musicgen.memory) and `music batch`'s default size."""

from __future__ import annotations

import json

import mlx.core as mx
from click.testing import CliRunner
from musicgen import memory
from rag_core.cli import cli


def test_a_row_costs_its_cache_and_its_codec_window(tiny_model):
    short, long = memory.bytes_per_row(tiny_model, 0.5), memory.bytes_per_row(tiny_model, 10)
    assert 0 < short < long
    assert memory.bytes_per_row(tiny_model, 600) == memory.bytes_per_row(tiny_model, 30)
    config = tiny_model.config.decoder
    positions = 500 + config.num_codebooks
    cache = config.num_hidden_layers * 4 * config.hidden_size * positions * 4  # float32
    assert long > cache


def test_the_batch_size_is_what_fits_in_free_memory(tiny_model, monkeypatch):
    row = memory.bytes_per_row(tiny_model, 10)
    monkeypatch.setattr(memory, "free_memory", lambda: int(row * 40 / memory.MARGIN) + 1)
    assert memory.batch_size_for(tiny_model, 10, jobs=1000) == 40
    assert memory.batch_size_for(tiny_model, 10, jobs=7) == 7  # no more rows than jobs
    monkeypatch.setattr(memory, "free_memory", lambda: row * 100_000)
    assert memory.batch_size_for(tiny_model, 10, jobs=1000) == memory.MAX_BATCH
    monkeypatch.setattr(memory, "free_memory", lambda: 0)
    assert memory.batch_size_for(tiny_model, 10, jobs=5) == 1  # always at least one
    monkeypatch.setattr(memory, "free_memory", lambda: None)  # a CPU
    assert memory.batch_size_for(tiny_model, 10, jobs=50) == memory.UNKNOWN_MEMORY_BATCH


def test_free_memory_is_unknown_on_the_cpu():
    if mx.default_device() == mx.cpu:
        assert memory.free_memory() is None
    else:
        assert memory.free_memory() > 0


def test_music_batch_picks_its_batch_size_from_free_memory(tiny_path, tiny_model, tmp_path,
                                                          monkeypatch):
    row = memory.bytes_per_row(tiny_model, 0.1)
    monkeypatch.setattr(memory, "free_memory", lambda: int(row * 2 / memory.MARGIN) + 1)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"prompt": f"calm {i}", "seed": i}) + "\n"
                            for i in range(5)))  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["music", "batch", str(jobs), "--out", str(out), "--model",
                                      str(tiny_path), "--duration", "0.1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["batch_size"] for e in entries) == [1, 2, 2, 2, 2]  # 2 rows fit: 2 + 2 + 1
