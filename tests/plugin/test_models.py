"""What the plugin registers: models with sizes, patterns, the tool and the command; the exact
checkpoint layout those sizes and the smoke checkpoint come from; the smoke checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import rag_core
from musicgen.plugin.layout import checkpoint_shapes, parameter_count
from musicgen.plugin.models import float32_bytes, hub_config, is_musicgen_repo
from musicgen.plugin.smoke import (
    SMOKE_ID,
    VERSION,
    ensure_smoke_checkpoint,
    is_smoke_checkpoint,
    smoke_size_bytes,
    write_smoke_checkpoint,
)
from rag_core.errors import ModelNotFoundError

from tests.musicgen import checkpoints as ref


def test_plugin_registers_models_patterns_tool_and_command(cli):
    result = cli("plugins", "list", "--json")
    record = next(r for r in json.loads(result.stdout) if r["name"] == "musicgen")
    assert record["status"] == "enabled", record["error"]
    assert record["models"] == ["facebook/musicgen-small", "facebook/musicgen-medium",
                                "facebook/musicgen-large", SMOKE_ID]
    assert record["patterns"] == ["musicgen-dir", "musicgen-hub", "musicgen-variant"]
    assert record["tools"] == ["music"] and record["commands"] == ["music"]
    registry = rag_core.get_registry()
    small = registry.spec("musicgen-small")  # alias
    assert (small.id, small.kind, small.plugin) == ("facebook/musicgen-small", "music", "musicgen")
    assert "config.json" in small.allow_patterns and "model.safetensors" in small.allow_patterns


def test_hub_model_sizes_come_from_their_exact_layouts():
    small = hub_config(1024, 24, 16)
    reference = ref.musicgen_config(ref.SMALL_T5, ref.SMALL_ENCODEC, ref.SMALL_DECODER).to_dict()
    assert parameter_count(small) == parameter_count(reference) == 588_990_022
    sizes = {s.id: s.size_bytes for s in rag_core.get_registry().specs("music")}
    assert sizes["facebook/musicgen-small"] == 4 * 588_990_022  # 2.36 GB, as on the hub
    assert sizes["facebook/musicgen-small"] < sizes["facebook/musicgen-medium"]
    assert sizes["facebook/musicgen-medium"] < sizes["facebook/musicgen-large"]
    assert sizes["facebook/musicgen-large"] == float32_bytes(hub_config(2048, 48, 32))
    assert sizes[SMOKE_ID] == smoke_size_bytes() < 10 * 2**20


@pytest.mark.parametrize(
    "variant",
    [{}, {"audio_channels": 2}, {"gated": True, "shortcut": True},
     {"time_group_norm": True, "lstm": 2, "same_width": True}],
    ids=["tiny", "stereo", "gated-t5+conv-shortcut", "group-norm+2-lstm+no-projection"],
)  # fmt: skip
def test_layout_matches_transformers_state_dict(variant):
    from transformers import MusicgenForConditionalGeneration

    t5 = dict(ref.TINY_T5, feed_forward_proj="gated-gelu" if variant.get("gated") else "relu")
    codec = dict(ref.TINY_ENCODEC, use_conv_shortcut=bool(variant.get("shortcut")),
                 num_lstm_layers=variant.get("lstm", 1))  # fmt: skip
    if variant.get("time_group_norm"):
        codec["norm_type"] = "time_group_norm"
    decoder = dict(ref.TINY_DECODER)
    if variant.get("same_width"):
        decoder["hidden_size"] = t5["d_model"]
    config = ref.musicgen_config(t5, codec, decoder, variant.get("audio_channels", 1))
    state = MusicgenForConditionalGeneration(config).state_dict()
    expected = {
        k.replace(".parametrizations.weight.original0", ".weight_g").replace(
            ".parametrizations.weight.original1", ".weight_v"): tuple(v.shape)
        for k, v in state.items() if not k.startswith("text_encoder.encoder.embed_tokens")
    }  # fmt: skip
    assert checkpoint_shapes(config.to_dict()) == expected


def test_smoke_checkpoint_has_the_exact_hub_layout(tmp_path):
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    path = write_smoke_checkpoint(tmp_path / "smoke")
    assert {p.name for p in path.iterdir()} >= {"config.json", "model.safetensors",
                                               "tokenizer.json", "tokenizer_config.json"}
    assert is_smoke_checkpoint(path) and not is_smoke_checkpoint(tmp_path)
    model, info = MusicgenForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    text = "Calm piano at night, 80 bpm; rain & wind!"
    ids = AutoTokenizer.from_pretrained(path)(text)["input_ids"]
    import musicgen

    mine = musicgen.load(path)
    assert mine.tokenizer([text])[0].tolist() == [ids]
    # weight_g is |v| per output channel, so transformers' folded weight equals weight_v
    conv = model.audio_encoder.decoder.layers[0].conv
    with torch.no_grad():
        assert torch.allclose(conv.weight, conv.parametrizations.weight.original1, atol=1e-6)


def test_smoke_checkpoint_is_reproducible_and_built_once(tmp_path, mlx_rag_home):
    a = write_smoke_checkpoint(tmp_path / "a", seed=0)
    b = write_smoke_checkpoint(tmp_path / "b", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    path = ensure_smoke_checkpoint()
    assert path == mlx_rag_home / "models" / SMOKE_ID and is_smoke_checkpoint(path)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_smoke_checkpoint() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    config = json.loads((path / "config.json").read_text())
    config["mlx_rag_smoke"]["version"] = VERSION - 1
    (path / "config.json").write_text(json.dumps(config))
    ensure_smoke_checkpoint()  # an outdated smoke dir is rebuilt in place
    assert json.loads((path / "config.json").read_text())["mlx_rag_smoke"]["version"] == VERSION
    assert [p.name for p in path.parent.iterdir()] == [SMOKE_ID]  # no temp dirs left


def test_smoke_model_loads_through_the_registry_and_makes_sound():
    model = rag_core.get_registry().get(SMOKE_ID)
    assert model.sample_rate == 32000 and model.frame_rate == 50
    audio = np.array(model.generate("calm piano", duration=0.5, seed=0))
    assert audio.shape == (1, 1, 16000) and np.isfinite(audio).all() and audio.std() > 0
    again = np.array(model.generate("calm piano", duration=0.5, seed=0))
    assert np.array_equal(audio, again)
    assert mx.array(audio).dtype == mx.float32


def test_local_musicgen_folder_is_matched_by_the_pattern(tiny, tmp_path):
    registry = rag_core.get_registry()
    spec = registry.spec(str(tiny))
    assert (spec.kind, spec.plugin, spec.id) == ("music", "musicgen", str(Path(tiny).resolve()))
    other = tmp_path / "not-musicgen"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelNotFoundError, match="no registered pattern recognises it"):
        registry.spec(str(other))


def test_hub_pattern_takes_musicgen_repos():
    assert is_musicgen_repo("facebook/musicgen-stereo-small")
    assert is_musicgen_repo("facebook/musicgen-melody")  # supported since issue 7
    assert not is_musicgen_repo("facebook/encodec_32khz") and not is_musicgen_repo("musicgen")
    spec = rag_core.get_registry().spec("someone/my-musicgen-finetune")
    assert (spec.kind, spec.plugin) == ("music", "musicgen")


def test_pulling_the_smoke_model_builds_it_locally(cli, mlx_rag_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # proves no download is attempted
    path = mlx_rag_home / "models" / SMOKE_ID
    assert not path.exists()
    result = cli("models", "pull", SMOKE_ID)
    assert result.exit_code == 0, result.output
    assert f"Built {SMOKE_ID} locally at {path}" in result.output
    assert is_smoke_checkpoint(path)
