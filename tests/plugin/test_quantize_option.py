"""`--quantize 4|8` on the music commands, the `quantize` option of the `music` tool and
`[tools.music] quantize`: a quantized decoder, cached in the registry under "<id>@q4|8"."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.nn as nn
import pytest
from musicgen.errors import InvalidArgumentError
from musicgen.plugin.models import Precision, default_dtype, variant_id
from musicgen.plugin.smoke import SMOKE_ID
from rag_core import PipelineState, get_registry, get_tool

from tests.plugin.helpers import files_in, read_audio


def loaded_as(bits: int) -> str:
    """The registry id the smoke checkpoint with a ``bits``-bit decoder is cached under, in
    this device's default dtype ("musicgen-smoke@q4" on the CPU)."""
    return variant_id(SMOKE_ID, Precision(bits, default_dtype()))


def quantized_bits(model) -> set[int]:
    """The bit widths of the decoder's quantized layers (empty: none is quantized)."""
    return {m.bits for _, m in model.decoder.named_modules() if isinstance(m, nn.QuantizedLinear)}


def test_generate_quantize_4_writes_audio_and_caches_the_quantized_model(cli, out):
    result = cli("music", "generate", "calm piano", "-m", SMOKE_ID, "-d", "0.2", "--seed", "5",
                 "--quantize", "4", "-o", out / "q.wav", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["model"], record["quantize"], record["parameters"]["quantize"]) == (
        SMOKE_ID, 4, 4)
    assert read_audio(out / "q.wav")[0].shape[0] > 0
    sidecar = json.loads((out / "q.wav.json").read_text())
    assert sidecar["quantize"] == 4 and sidecar["parameters"]["quantize"] == 4
    assert "--quantize 4" in sidecar["reproduce"]
    assert files_in(out) == ["q.wav", "q.wav.json"]

    registry = get_registry()
    assert registry.is_loaded(loaded_as(4)) and not registry.is_loaded(SMOKE_ID)
    assert quantized_bits(registry.get(loaded_as(4))) == {4}
    assert quantized_bits(registry.get(SMOKE_ID)) == set()  # a model of its own, unquantized


def test_the_tool_option_and_the_config_quantize_8(cli, configure, out):
    state = PipelineState(question="a stormy sea")
    record = get_tool("music").run(state, prompt="stormy sea", model=SMOKE_ID, duration=0.2,
                                   seed=1, quantize=8, output=str(out / "t.wav"))  # fmt: skip
    assert record["quantize"] == 8 and (out / "t.wav").is_file()
    assert quantized_bits(get_registry().get(loaded_as(8))) == {8}

    configure(f'[tools.music]\nmodel = "{SMOKE_ID}"\nquantize = 8\nduration = 0.2\n')
    result = cli("music", "generate", "calm", "-o", out / "c.wav", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quantize"] == 8


def test_without_quantize_the_record_says_none(cli, out):
    result = cli("music", "generate", "calm", "-m", SMOKE_ID, "-d", "0.2", "-o", out / "f.wav",
                 "--json")  # fmt: skip
    record = json.loads(result.stdout)
    assert record["quantize"] is None and "quantize" not in record["parameters"]
    assert "--quantize" not in json.loads((out / "f.wav.json").read_text())["reproduce"]


def test_aliases_and_folders_resolve_to_one_canonical_quantized_id(tiny):
    registry = get_registry()
    def quantized_id(model: str, bits: int) -> str:
        return variant_id(model, Precision(bits, "float32"))

    assert quantized_id("musicgen-small", 4) == "facebook/musicgen-small@q4"
    spec = registry.spec("musicgen-small@q4")  # the alias, quantized, without loading anything
    assert (spec.kind, spec.plugin) == ("music", "musicgen")
    assert quantized_id(str(tiny), 8) == f"{Path(tiny).resolve()}@q8"
    assert registry.spec(f"{tiny}@q8").kind == "music"
    for unknown in ("nothing-here@q4", f"{SMOKE_ID}@q3", f"{SMOKE_ID}@q4@q4"):
        with pytest.raises(Exception, match="Unknown model"):
            registry.spec(unknown)


def test_bad_values_fail_clearly(cli, configure, out):
    result = cli("music", "generate", "calm", "-m", SMOKE_ID, "--quantize", "3")
    assert result.exit_code == 2 and "'3' is not one of '4', '8'" in result.output
    with pytest.raises(InvalidArgumentError, match="quantize must be 4 or 8"):
        get_tool("music").run(PipelineState(), prompt="calm", model=SMOKE_ID, quantize="4",
                              output=str(out / "x.wav"))  # fmt: skip
    configure(f'[tools.music]\nmodel = "{SMOKE_ID}"\nquantize = "x"\n')
    result = cli("music", "generate", "calm", "-o", out / "x.wav")
    assert result.exit_code == 1
    assert "tools.music.quantize must be 4 or 8" in result.stderr and "'x'" in result.stderr
    assert "Traceback" not in result.output and files_in(out) == []


def test_batch_quantize(cli, out, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "calm", "seed": 2}) + "\n")
    result = cli("music", "batch", jobs, "--out", out, "-m", SMOKE_ID, "-d", "0.2",
                 "--quantize", "8", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    assert (sidecar["model"], sidecar["quantize"]) == (SMOKE_ID, 8)  # the model as asked for
    assert "--quantize 8" in sidecar["reproduce"]
    assert get_registry().is_loaded(loaded_as(8))
