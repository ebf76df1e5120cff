"""`--dtype` on the music commands, the `dtype` option of the `music` tool and `[tools.music]
dtype`: float16 by default on a GPU, float32 on the CPU; each dtype cached in the registry under
its own id ("<id>@float16"), recorded in the sidecar and its reproduce command."""

from __future__ import annotations

import json

import mlx.core as mx
import pytest
from musicgen.plugin import models
from musicgen.plugin.models import Precision, choose_precision, split_variant
from musicgen.plugin.smoke import NOTICE, SMOKE_ID
from rag_core import PipelineState, get_registry, get_tool

from tests.plugin.helpers import files_in

LABEL = "[UNTRAINED smoke checkpoint: noise, not music]"


def test_generate_dtype_float16_records_it_and_caches_the_variant(cli, out):
    result = cli("music", "generate", "calm", "-m", SMOKE_ID, "-d", "0.2", "--seed", "2",
                 "--dtype", "float16", "-o", out / "h.wav", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["model"] == SMOKE_ID and record["parameters"]["dtype"] == "float16"
    assert record["untrained"] is True and record["notice"] == NOTICE
    sidecar = json.loads((out / "h.wav.json").read_text())
    assert "--dtype float16" in sidecar["reproduce"]
    registry = get_registry()
    assert registry.is_loaded(f"{SMOKE_ID}@float16") and not registry.is_loaded(SMOKE_ID)
    assert registry.get(f"{SMOKE_ID}@float16").dtype == mx.float16
    assert f"Loading {SMOKE_ID}@float16 ..." in result.stderr
    assert files_in(out) == ["h.wav", "h.wav.json"]


def test_auto_is_the_devices_dtype(out, monkeypatch):
    assert models.default_dtype() == ("float16" if mx.default_device().type == mx.DeviceType.gpu
                                      else "float32")  # fmt: skip
    run = get_tool("music").run
    record = run(PipelineState(), prompt="calm", model=SMOKE_ID, duration=0.2, seed=1,
                 output=str(out / "a.wav"))  # fmt: skip
    assert record["parameters"]["dtype"] == models.default_dtype()
    monkeypatch.setattr(models, "default_dtype", lambda: "float16")  # as on a GPU
    record = run(PipelineState(), prompt="calm", model=SMOKE_ID, duration=0.2, seed=1,
                 output=str(out / "g.wav"))  # fmt: skip
    assert record["parameters"]["dtype"] == "float16"
    assert get_registry().is_loaded(f"{SMOKE_ID}@float16")
    record = run(PipelineState(), prompt="calm", model=SMOKE_ID, duration=0.2, seed=1,
                 dtype="float32", output=str(out / "f.wav"))  # fmt: skip
    assert record["parameters"]["dtype"] == "float32" and get_registry().is_loaded(SMOKE_ID)


def test_variant_ids_parse_and_combine_with_the_options():
    assert split_variant("musicgen-small@q4-bfloat16") == ("musicgen-small", 4, "bfloat16")
    assert split_variant("musicgen-small@float16") == ("musicgen-small", None, "float16")
    assert split_variant("musicgen-small") is None and split_variant("x@float64") is None
    assert choose_precision("m@q8", dtype="float16") == ("m", Precision(8, "float16"))
    assert choose_precision("m@bfloat16", quantize=4) == ("m", Precision(4, "bfloat16"))
    assert Precision(4, "float16").tag == "q4-float16" and Precision(None, "float32").tag == ""
    with pytest.raises(ValueError, match="'m@float16' computes in float16 but dtype is bfloat16"):
        choose_precision("m@float16", dtype="bfloat16")
    with pytest.raises(ValueError, match="'m@q4' has a 4-bit decoder but quantize is 8"):
        choose_precision("m@q4", quantize=8)
    spec = get_registry().spec("musicgen-small@q4-float16")  # an alias, without loading
    assert (spec.kind, spec.plugin) == ("music", "musicgen")


@pytest.mark.parametrize("model", [f"{SMOKE_ID}@float16", f"{SMOKE_ID}@q8-bfloat16"])
def test_every_variant_of_the_smoke_checkpoint_is_labelled_untrained(cli, out, model):
    result = cli("music", "generate", "calm", "-m", model, "-d", "0.2", "-o", out / "t.wav")
    assert result.exit_code == 0, result.output
    assert LABEL in result.stdout and "is an UNTRAINED smoke checkpoint" in result.stderr
    sidecar = json.loads((out / "t.wav.json").read_text())
    assert sidecar["untrained"] is True and sidecar["notice"] == NOTICE
    assert sidecar["parameters"]["dtype"] == split_variant(model)[2]


def test_batch_dtype(cli, out, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "calm", "seed": 2}) + "\n")
    result = cli("music", "batch", jobs, "--out", out, "-m", SMOKE_ID, "-d", "0.2",
                 "--dtype", "bfloat16", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "a.wav.json").read_text())
    assert sidecar["parameters"]["dtype"] == "bfloat16" and sidecar["untrained"] is True
    assert "--dtype bfloat16" in sidecar["reproduce"]
    assert get_registry().is_loaded(f"{SMOKE_ID}@bfloat16")


def test_bad_dtypes_fail_clearly(cli, configure, out):
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, float16, bfloat16"):
        get_tool("music").run(PipelineState(), prompt="calm", model=SMOKE_ID, dtype="half",
                              output=str(out / "x.wav"))  # fmt: skip
    result = cli("music", "generate", "calm", "-m", f"{SMOKE_ID}@float16", "--dtype", "float32",
                 "-o", out / "x.wav")  # fmt: skip
    assert result.exit_code == 1
    assert f"model '{SMOKE_ID}@float16' computes in float16 but dtype is float32" in result.stderr
    configure(f'[tools.music]\nmodel = "{SMOKE_ID}"\ndtype = "half"\n')
    result = cli("music", "generate", "calm", "-o", out / "x.wav")
    assert result.exit_code == 1 and "tools.music.dtype must be one of" in result.stderr
    assert "Traceback" not in result.output and files_in(out) == []
