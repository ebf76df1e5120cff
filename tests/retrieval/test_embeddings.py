"""MLX sentence embeddings: parity with transformers on the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from rag_core.embeddings import Pooling, load
from rag_core.errors import ModelUnavailableError

TEXTS = [
    "hello world",
    "MLX is an array framework for machine learning on Apple silicon.",
    "Ünïcödé façade — naïve café, 東京 and emoji 🎵!",
    "x",
    "The quick brown fox jumps over the lazy dog " * 40,  # past max_seq_length: truncated
]


def test_parity_with_transformers_on_real_minilm(minilm):
    import torch
    from transformers import AutoTokenizer, BertModel

    ours = load(minilm).encode(TEXTS, batch_size=4)  # the first batch mixes lengths: padding
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    model = BertModel.from_pretrained(minilm).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    reference = torch.nn.functional.normalize(pooled, dim=-1).numpy()

    assert ours.shape == reference.shape == (len(TEXTS), 384)
    cosine = (ours * reference).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    max_abs = np.abs(ours - reference).max(axis=1)
    print(f"\nparity: min cosine {cosine.min():.8f}, max abs error {max_abs.max():.2e}")
    assert (cosine >= 0.9999).all(), cosine
    assert (max_abs <= 1e-4).all(), max_abs


def test_cpu_batches_run_at_once_and_give_the_same_vectors(minilm, monkeypatch):
    import threading

    from rag_core.embeddings import sentence_transformer

    embedder, texts = load(minilm), TEXTS * 6  # 30 texts: 8 batches of 4
    monkeypatch.setattr(sentence_transformer, "cpu_workers", lambda: 1)
    one_at_a_time = embedder.encode(texts, batch_size=4)
    threads, embed = set(), embedder._embed

    def embed_and_note(batch):
        threads.add(threading.current_thread().name)
        return embed(batch)

    monkeypatch.setattr(embedder, "_embed", embed_and_note)
    monkeypatch.setattr(sentence_transformer, "cpu_workers", lambda: 3)
    at_once = embedder.encode(texts, batch_size=4)
    # The BLAS runs on one thread meanwhile, so its sums may round differently in the last bit.
    np.testing.assert_allclose(at_once, one_at_a_time, rtol=0, atol=1e-6)
    assert len(threads) == 3 and all(name.startswith("embed") for name in threads)


def test_batches_group_texts_by_token_count(minilm, monkeypatch):
    """Each batch holds texts of neighbouring token counts (little padding), whatever their
    length in characters, and the vectors come back in the callers' order."""
    from rag_core.embeddings import sentence_transformer

    monkeypatch.setattr(sentence_transformer, "cpu_workers", lambda: 1)  # batches in order
    embedder = load(minilm)
    texts = ["🎵" * 12, "a b c d e f g h i j k", "word", "🎵 🎵", "alphabet soup " * 5, "x y z"]
    sizes, embed = [], embedder._embed
    monkeypatch.setattr(embedder, "_embed", lambda batch: sizes.append(
        [len(e.ids) for e in batch]) or embed(batch))  # fmt: skip
    vectors = embedder.encode(texts, batch_size=2)
    flat = [n for batch in sizes for n in batch]
    assert flat == sorted(flat) and len(sizes) == 3
    one_by_one = np.stack([embedder.encode(text) for text in texts])
    np.testing.assert_allclose(vectors, one_by_one, rtol=0, atol=1e-5)


def test_default_batch_is_smaller_on_the_cpu(minilm, monkeypatch):
    from rag_core.embeddings import sentence_transformer

    embedder = load(minilm)
    sizes, embed = [], embedder._embed
    monkeypatch.setattr(embedder, "_embed", lambda batch: sizes.append(len(batch)) or embed(batch))
    monkeypatch.setattr(sentence_transformer, "cpu_workers", lambda: 1)
    embedder.encode(["short text"] * 40)
    expected = sentence_transformer.CPU_BATCH if mx.default_device() == mx.cpu else 32
    assert max(sizes) == expected


def test_tokenization_matches_transformers(minilm):
    from transformers import AutoTokenizer

    embedder = load(minilm)
    ids, mask = embedder.tokenize(TEXTS)
    expected = AutoTokenizer.from_pretrained(minilm)(
        TEXTS, padding=True, truncation=True, max_length=256, return_tensors="np"
    )
    assert embedder.max_tokens == 256  # from sentence_bert_config.json
    np.testing.assert_array_equal(np.array(ids), expected["input_ids"])
    np.testing.assert_array_equal(np.array(mask), expected["attention_mask"])


def test_pooling_reads_sentence_transformers_config(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]))  # fmt: skip
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    assert Pooling.from_dir(tmp_path) == Pooling(mode="cls", normalize=False)

    hidden = mx.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = mx.array([[1, 1, 0]])  # the last position is padding and must not count
    assert np.allclose(Pooling("cls")(hidden, mask), [[1.0, 2.0]])
    assert np.allclose(Pooling("mean")(hidden, mask), [[2.0, 3.0]])
    assert np.allclose(Pooling("max")(hidden, mask), [[3.0, 4.0]])
    assert np.allclose(Pooling("lasttoken")(hidden, mask), [[3.0, 4.0]])
    unit = Pooling("mean", normalize=True)(hidden, mask)
    assert np.allclose(np.linalg.norm(np.array(unit), axis=-1), 1.0)


def test_unsupported_pooling_mode_is_a_clear_error(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"path": "p", "type": "sentence_transformers.models.Pooling"}]
    ))  # fmt: skip
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text('{"pooling_mode_weightedmean_tokens": true}')
    with pytest.raises(ValueError, match="weightedmean"):
        Pooling.from_dir(tmp_path)


def test_missing_weights_are_a_clear_error(tiny_bert, tmp_path):
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((tiny_bert / name).read_bytes())
    with pytest.raises(ModelUnavailableError, match="safetensors"):
        load(tmp_path)


def test_gelu_on_the_cpu_equals_the_compiled_kernel():
    # NumPy in place, a block at a time, in float32: the same results as MLX's kernel.
    from rag_core.embeddings import ops

    values = mx.concatenate([mx.random.normal((70_000,)) * 3,
                             mx.array([0.0, 10.0, -10.0, 4.5, -4.5, 1e-8, -1e-8])])  # fmt: skip
    want = np.array(ops._gelu(values))
    got = ops.gelu(mx.array(np.array(values)))  # a fresh array: its buffer is reused
    assert got.dtype == mx.float32 and got.shape == values.shape
    np.testing.assert_array_equal(np.array(got), want)
    strided = mx.array(np.array(values))[::2]  # not contiguous: MLX's kernel instead
    np.testing.assert_array_equal(np.array(ops.gelu(strided)), want[::2])
