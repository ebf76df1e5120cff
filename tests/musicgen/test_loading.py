"""Loading checkpoints in every layout the hub uses, and clear errors for damaged ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import musicgen
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten
from musicgen import CheckpointError
from rag_core.errors import ModelUnavailableError
from safetensors.torch import load_file, save_file

from tests.musicgen.checkpoints import (
    PROMPTS,
    assert_generation_matches_reference,
    reference_model,
    write_tiny_musicgen,
)


@pytest.mark.parametrize(
    "layout",
    [
        {"weight_norm": "legacy"},
        {"shards": 3},
        {"dtype": "float16"},
        {"shards": 2, "weight_norm": "legacy", "dtype": "float16"},
    ],
    ids=["weight_g-weight_v", "sharded", "float16-storage", "all-three"],
)
def test_layouts_load_and_match_transformers(tmp_path, layout):
    path = write_tiny_musicgen(tmp_path / "ckpt", seed=1, **layout)
    names = {p.name for p in path.iterdir()}
    if layout.get("shards"):
        assert "model.safetensors.index.json" in names
        assert len([n for n in names if n.startswith("model-")]) == layout["shards"]
    if layout.get("weight_norm") == "legacy":
        keys = json.dumps(sorted(_all_keys(path)))
        assert ".weight_g" in keys and "parametrizations" not in keys
    model = musicgen.load(path)
    assert model.dtype == mx.float32
    assert_generation_matches_reference(model, reference_model(path), path, PROMPTS)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_compute_stays_finite_and_close(tiny_path, tiny_model, dtype):
    model = musicgen.load(tiny_path, dtype=dtype)
    assert model.dtype == getattr(mx, dtype)
    assert model.codec.decoder.parameters() is not None
    states, _ = model.encode_text(PROMPTS)
    expected, _ = tiny_model.encode_text(PROMPTS)
    assert states.dtype == getattr(mx, dtype)
    np.testing.assert_allclose(np.array(states.astype(mx.float32)), np.array(expected), atol=0.1)
    audio = model.generate(PROMPTS, duration=0.2, seed=0)
    assert audio.dtype == mx.float32 and np.isfinite(np.array(audio)).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_are_the_float32_ones_cast_once(tiny_path, tiny_model, dtype):
    """Each weight is cast as it is read, joined ones (q/k/v) included: the result is exactly
    the float32 model's weight cast to ``dtype``, and the heads stay float32, unrounded."""
    model = musicgen.load(tiny_path, dtype=dtype)
    for part in ("text_encoder", "decoder"):
        expected = dict(tree_flatten(getattr(tiny_model, part).parameters()))
        for name, value in tree_flatten(getattr(model, part).parameters()):
            want = mx.float32 if name.startswith("lm_heads.") else getattr(mx, dtype)
            assert value.dtype == want, (part, name, value.dtype)
            assert mx.array_equal(value, expected[name].astype(want)).item(), (part, name)


def test_weights_are_evaluated_a_layer_at_a_time(tiny_path, monkeypatch):
    """One evaluation (a round trip to the device) per layer and a few more, not one per
    submodule."""
    monkeypatch.setenv("MUSICGEN_WARM_UP", "0")  # its passes evaluate on threads of their own
    calls = []
    evaluate = mx.eval
    monkeypatch.setattr(mx, "eval", lambda *args: calls.append(1) or evaluate(*args))
    model = musicgen.load(tiny_path)
    monkeypatch.undo()
    layers = len(model.decoder.layers) + len(model.text_encoder.blocks)
    codebooks = len(model.decoder.lm_heads) + len(model.decoder.embed_tokens)
    assert len(calls) <= layers + codebooks + 10, len(calls)


def _all_keys(path: Path) -> set[str]:
    return {k for f in path.glob("model*.safetensors") for k in load_file(f)}


def _copy(tiny_path: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_path, tmp_path / "copy"))


def _edit_weights(path: Path, edit) -> None:
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def _edit_config(path: Path, edit) -> None:
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


def _drop(key):
    return lambda tensors: tensors.pop(key)


def _truncate(path: Path) -> None:
    file = path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:-1000])


BAD = {
    "missing tensor": (
        lambda p: _edit_weights(p, _drop("decoder.model.decoder.layers.1.fc2.weight")),
        ["model.safetensors", "decoder", "1 missing", "layers.1.fc2.weight"],
    ),
    "missing text tensor": (
        lambda p: _edit_weights(p, _drop("text_encoder.encoder.final_layer_norm.weight")),
        ["text_encoder", "1 missing", "final_layer_norm.weight"],
    ),
    "extra tensor": (
        lambda p: _edit_weights(
            p, lambda t: t.update({"decoder.model.decoder.layers.7.fc1.weight": torch.zeros(2)})
        ),
        ["1 unexpected", "'decoder.model.decoder.layers.7.fc1.weight' (model.safetensors)"],
    ),
    "stray tensor": (
        lambda p: _edit_weights(p, lambda t: t.update({"lm_head.weight": torch.zeros(2)})),
        ["model.safetensors", "unexpected tensors 'lm_head.weight'"],
    ),
    "wrong shape": (
        lambda p: _edit_config(p, lambda c: c["decoder"].update(ffn_dim=64)),
        ["'decoder.model.decoder.layers.0.fc1.weight' (model.safetensors) has shape (48, 24)"],
    ),
    "truncated file": (_truncate, ["model.safetensors is truncated", "Download it again"]),
    "not safetensors": (
        lambda p: (p / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{{{{"),
        ["model.safetensors is not a valid safetensors file"],
    ),
    "wrong model_type": (
        lambda p: _edit_config(p, lambda c: c.update(model_type="bark")),
        ["config.json", "model_type is 'bark', expected 'musicgen'"],
    ),
    "melody model_type": (
        lambda p: _edit_config(p, lambda c: c.update(model_type="musicgen_melody")),
        ["decoder tensors do not match config.json", "'decoder.model.decoder.layers.0.encoder"],
    ),
    "missing section": (
        lambda p: _edit_config(p, lambda c: c.pop("decoder")),
        ["config.json", "'decoder' section is missing"],
    ),
    "bad config value": (
        lambda p: _edit_config(p, lambda c: c["decoder"].update(num_attention_heads=5)),
        ["hidden_size 24 is not divisible by num_attention_heads 5"],
    ),
    "broken config.json": (
        lambda p: (p / "config.json").write_text("{not json"),
        ["config.json is not valid JSON"],
    ),
    "missing config.json": (
        lambda p: (p / "config.json").unlink(),
        ["config.json is missing"],
    ),
    "missing tokenizer": (
        lambda p: (p / "tokenizer.json").unlink(),
        ["tokenizer.json is missing"],
    ),
    "tokenizer of another model": (
        lambda p: _edit_config(p, lambda c: c["text_encoder"].update(vocab_size=20)),
        ["tokenizer.json has", "tokens but the text encoder in config.json embeds only 20"],
    ),
    "no weights": (lambda p: (p / "model.safetensors").unlink(), ["has no weights"]),
    "pickled weights only": (
        lambda p: (p / "model.safetensors").rename(p / "pytorch_model.bin"),
        ["pytorch_model.bin", "never loaded", "python -m musicgen.convert"],
    ),
}


@pytest.mark.parametrize("damage", list(BAD))
def test_bad_checkpoints_say_which_file_and_what(tiny_path, tmp_path, damage):
    path = _copy(tiny_path, tmp_path)
    corrupt, fragments = BAD[damage]
    corrupt(path)
    with pytest.raises(CheckpointError) as error:
        musicgen.load(path)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message
    assert str(path) in message
    assert isinstance(error.value, ModelUnavailableError)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    return write_tiny_musicgen(tmp_path_factory.mktemp("sharded") / "ckpt", shards=2)


def test_missing_shard(sharded, tmp_path):
    path = Path(shutil.copytree(sharded, tmp_path / "copy"))
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002.safetensors is missing"):
        musicgen.load(path)


def test_shard_that_does_not_match_the_index(sharded, tmp_path):
    path = Path(shutil.copytree(sharded, tmp_path / "copy"))
    index = json.loads((path / "model.safetensors.index.json").read_text())
    key = next(k for k, v in index["weight_map"].items() if v.startswith("model-00001"))
    index["weight_map"][key] = "model-00002-of-00002.safetensors"
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not hold the tensors"):
        musicgen.load(path)


def test_not_a_directory_or_repo_id(tmp_path):
    with pytest.raises(ModelUnavailableError, match="neither a local model directory"):
        musicgen.load(tmp_path / "nowhere" / "at" / "all")


def test_hub_download_fetches_only_the_needed_files(tiny_path, monkeypatch):
    calls = []

    def resolve(source, allow_patterns=None, **kwargs):
        calls.append((source, allow_patterns))
        return tiny_path

    monkeypatch.setattr("musicgen.loading.resolve_model_path", resolve)
    model = musicgen.load("facebook/musicgen-small")
    assert model.sample_rate == 800
    (source, patterns), *_ = calls
    assert source == "facebook/musicgen-small"
    for needed in ("config.json", "model.safetensors", "model.safetensors.index.json"):
        assert needed in patterns
    assert "tokenizer.json" in patterns and "model-*-of-*.safetensors" in patterns
    assert not any(p.endswith(".bin") or p in ("*", "*.json") for p in patterns)


def test_offline_and_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        musicgen.load("facebook/musicgen-small")
