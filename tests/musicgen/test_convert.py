"""`python -m musicgen.convert`: pickled pytorch_model.bin checkpoints to safetensors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import musicgen
import numpy as np
import pytest
import torch
from musicgen.convert import main
from safetensors.torch import load_file

from tests.musicgen.checkpoints import PROMPTS

KEPT = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def pickled_copy(src: Path, dst: Path, shards: int = 1) -> Path:
    """The checkpoint as older repos stored it: pytorch_model.bin, or shards with an index."""
    dst.mkdir()
    for name in KEPT:
        shutil.copyfile(src / name, dst / name)
    tensors = load_file(src / "model.safetensors")
    if shards == 1:
        torch.save(tensors, dst / "pytorch_model.bin")
        return dst
    keys = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: tensors[k] for k in keys[i::shards]}
        torch.save(part, dst / name)
        weight_map.update(dict.fromkeys(part, name))
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return dst


@pytest.mark.parametrize("shards", [1, 3])
def test_converted_checkpoint_loads_and_generates_the_same(tiny_path, tiny_model, tmp_path, shards):
    src = pickled_copy(tiny_path, tmp_path / "bin", shards)
    with pytest.raises(musicgen.CheckpointError, match=r"python -m musicgen\.convert"):
        musicgen.load(src)
    max_gb = "1" if shards == 1 else "0.00005"  # about 54 kB: several output shards
    assert main([str(src), str(tmp_path / "out"), "--max-shard-gb", max_gb]) == 0
    out = tmp_path / "out"
    if shards == 1:
        assert (out / "model.safetensors").is_file()
    else:
        assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
        assert (out / "model.safetensors.index.json").is_file()
    assert all((out / name).is_file() for name in KEPT)
    converted = musicgen.load(out)
    codes = converted.generate_tokens(PROMPTS, duration=0.2, temperature=0)
    expected = tiny_model.generate_tokens(PROMPTS, duration=0.2, temperature=0)
    assert np.array_equal(np.array(codes), np.array(expected))


def test_converter_reports_a_directory_without_bin_files(tiny_path, tmp_path, capsys):
    assert main([str(tiny_path), str(tmp_path / "out")]) == 1
    assert "has no pytorch_model.bin" in capsys.readouterr().err


def test_converter_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "musicgen.convert", str(tmp_path / "missing"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
