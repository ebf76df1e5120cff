"""The `music` tool: sidecar contents, seeds, inputs, and every fault leaving no file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rag_core
from musicgen import GenerationOptions
from musicgen.plugin.models import default_dtype
from musicgen.plugin.options import TrackOptions
from musicgen.plugin.outputs import OutputExistsError
from musicgen.plugin.prompt import MusicPrompt
from musicgen.plugin.tool import run
from musicgen.plugin.track import make_track
from rag_core import PipelineState
from rag_core.errors import ModelNotFoundError, ModelUnavailableError, PipelineError, RagError

from tests.plugin.helpers import files_in, read_audio

CHUNKS = [
    {"id": 7, "text": "A slow, melancholic waltz on an accordion.", "source": "/c/harbour.md",
     "lines": [1, 3], "score": 2.0},
    {"id": 2, "text": "Neon rain and a synthwave beat.", "source": "/c/neon.md",
     "lines": [4, 6], "score": 1.0},
]  # fmt: skip


def state(**fields) -> PipelineState:
    return PipelineState(question=fields.pop("question", "What fits a foggy night?"), **fields)


def test_result_record_and_sidecar(tiny, tmp_path):
    out = tmp_path / "out" / "track.wav"
    record = run(state(retrieved=CHUNKS), model=str(tiny), duration=0.5, seed=11,
                 guidance_scale=2.5, top_k=20, top_p=0.9, temperature=0.8, output=str(out),
                 normalize="rms")  # fmt: skip
    assert record["path"] == str(out.resolve())
    assert record["sidecar"] == str((out.parent / "track.wav.json").resolve())
    assert record["prompt"].startswith("melancholic waltz with accordion, slow tempo")
    assert record["prompt_source"]["builder"] == "extract"
    assert record["prompt_source"]["input"] == "retrieved"
    assert record["prompt_source"]["chunk_ids"] == [7, 2]
    assert record["prompt_source"]["sources"] == ["/c/harbour.md", "/c/neon.md"]
    assert record["model"] == str(tiny) and record["untrained"] is False
    assert record["seed"] == 11
    assert record["parameters"] == {"duration": 0.5, "guidance_scale": 2.5, "top_k": 20,
                                    "top_p": 0.9, "min_p": 0.0, "temperature": 0.8, "seed": 11,
                                    "extend_stride": None, "normalize": "rms",
                                    "dtype": default_dtype()}
    assert (record["duration"], record["sample_rate"], record["channels"]) == (0.5, 800, 1)
    assert set(record["timings"]) == {"load_s", "generate_s", "decode_s", "write_s", "total_s"}
    audio, rate = read_audio(out)
    assert rate == 800 and audio.shape == (400, 1) and np.abs(audio).max() > 0
    sidecar = json.loads((out.parent / "track.wav.json").read_text())
    assert {k: sidecar[k] for k in record} == record  # the record, plus:
    assert sidecar["sidecar_version"] == 2 and sidecar["created"].endswith("+00:00")
    assert set(sidecar["generator"]) == {"musicgen", "rag_core", "mlx", "python"}
    assert sidecar["reproduce"].startswith("mlx-rag music generate 'melancholic waltz")
    assert ("--duration 0.5 --guidance-scale 2.5 --top-k 20 --top-p 0.9 --min-p 0 "
            "--temperature 0.8 --seed 11 --normalize rms --dtype") in sidecar["reproduce"]
    assert files_in(out.parent) == ["track.wav", "track.wav.json"]  # no temporary files left
    assert os.stat(out).st_mode & 0o044  # the usual permissions, not a private temp file's


def test_same_seed_same_audio_and_the_sidecar_reproduces_it(tiny, tmp_path, cli):
    options = {"model": str(tiny), "duration": 0.5, "prompt": "lofi piano, rain"}
    a = run(state(), seed=5, output=str(tmp_path / "a.wav"), **options)
    b = run(state(), seed=5, output=str(tmp_path / "b.wav"), **options)
    c = run(state(), seed=6, output=str(tmp_path / "c.wav"), **options)
    audio_a, audio_b, audio_c = (read_audio(Path(r["path"]))[0] for r in (a, b, c))
    assert np.array_equal(audio_a, audio_b)
    assert not np.array_equal(audio_a, audio_c)
    unseeded = run(state(), output=str(tmp_path / "d.wav"), **options)
    assert isinstance(unseeded["seed"], int)  # a random seed is recorded
    import shlex

    command = shlex.split(json.loads(Path(a["sidecar"]).read_text())["reproduce"])
    assert command[:3] == ["mlx-rag", "music", "generate"]
    again = tmp_path / "again"
    again.mkdir()
    command[command.index("--output") + 1] = str(again / "a.wav")
    result = cli(*command[1:])
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_audio(again / "a.wav")[0], audio_a)


def test_inputs_auto_answer_retrieved_question_and_text(tiny, tmp_path):
    def prompt_source(st, **options):
        record = run(st, model=str(tiny), duration=0.1, seed=0, prompt_from="extract",
                     output=str(tmp_path) + "/", **options)  # fmt: skip
        return record["prompt_source"]["input"], record["prompt"]

    assert prompt_source(state(answer="Epic brass [1].", retrieved=CHUNKS))[0] == "answer"
    assert prompt_source(state(retrieved=CHUNKS))[0] == "retrieved"
    assert prompt_source(state(question="a calm lullaby"))[0] == "question"
    source, _ = prompt_source(state(retrieved=CHUNKS), input="question")
    assert source == "question"
    assert prompt_source(state(), text="stormy thunder")[1].startswith("dramatic orchestral")
    with pytest.raises(PipelineError, match="put an answer step before it"):
        run(state(retrieved=CHUNKS), input="answer", model=str(tiny))
    with pytest.raises(PipelineError, match="The answer step returned an empty answer"):
        run(state(answer="", outputs={"answer": {"answer": ""}}), input="answer", model=str(tiny))
    with pytest.raises(PipelineError, match="no passages were retrieved"):
        run(state(), input="retrieved", model=str(tiny))
    with pytest.raises(ValueError, match="input must be one of auto, answer, retrieved"):
        run(state(), input="chunks", model=str(tiny))


BAD_OPTIONS = [
    ({"duration": 0}, "duration must be > 0"),
    ({"duration": -3.0}, "duration must be > 0"),
    ({"duration": "long"}, "duration must be a number"),
    ({"duration": 1e6}, "longer than the 3600 s supported"),
    ({"top_k": -1}, "top_k must be an integer >= 0"),
    ({"top_p": 1.5}, r"top_p must be in \[0, 1\]"),
    ({"temperature": -0.1}, "temperature must be >= 0"),
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
    ({"seed": -1}, "seed must be None or an integer"),
    ({"normalize": "loud"}, "normalize must be one of loudness, peak, rms, clip, none"),
    ({"format": "mp3"}, "format must be one of wav, flac, ogg"),
    ({"output": "song.mp3"}, "must end in .wav, .flac or .ogg"),
    ({"output": "song.wav", "format": "flac"}, "is a .wav file but format is 'flac'"),
    ({"overwrite": "yes"}, "overwrite must be true or false"),
    ({"prompt": "  "}, "prompt must be a non-empty string"),
    ({"prompt_from": "gpt"}, "prompt_from must be one of"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS,
                         ids=[next(iter(o)) + "=" + repr(o[next(iter(o))]) for o, _ in BAD_OPTIONS])
def test_bad_values_fail_before_any_model_is_loaded(options, message, out):
    # facebook/musicgen-small cannot load offline: a ValueError proves nothing was loaded.
    options = {"model": "facebook/musicgen-small", "output": str(out / "x.wav"), **options}
    with pytest.raises(ValueError, match=message):
        run(state(retrieved=CHUNKS), **options)
    assert files_in(out) == []
    assert rag_core.get_registry().loaded() == []


def test_unknown_model_unreachable_hub_and_wrong_kind(out):
    with pytest.raises(ModelNotFoundError, match=r"Unknown model 'no-such-model'.*musicgen-small"):
        run(state(), prompt="x", model="no-such-model", output=str(out) + "/")
    with pytest.raises(ModelNotFoundError, match="Unknown model '/no/such/dir'"):
        run(state(), prompt="x", model="/no/such/dir", output=str(out) + "/")
    with pytest.raises(ModelUnavailableError, match=r"not in the local cache.*models pull "
                       "facebook/musicgen-small"):  # fmt: skip
        run(state(), prompt="x", model="facebook/musicgen-small", output=str(out) + "/")
    with pytest.raises(RagError, match="kind 'llm', but kind 'music' is needed"):
        run(state(), prompt="x", model="mlx-community/Qwen2.5-0.5B-Instruct-4bit",
            output=str(out) + "/")
    assert files_in(out) == []


def test_existing_output_is_refused_unless_overwrite(tiny, out):
    track = out / "track.wav"
    track.write_bytes(b"precious")
    options = {"prompt": "calm", "model": str(tiny), "duration": 0.1, "output": str(track)}
    with pytest.raises(OutputExistsError, match="already exists: pass --overwrite"):
        run(state(), **options)
    assert track.read_bytes() == b"precious" and files_in(out) == ["track.wav"]
    run(state(), overwrite=True, **options)
    assert read_audio(track)[1] == 800 and files_in(out) == ["track.wav", "track.wav.json"]


def test_unwritable_output_fails_at_once(tiny, out):
    blocker = out / "a-file"
    blocker.write_text("")
    with pytest.raises(RagError, match="a-file is a file, not a folder"):
        run(state(), prompt="calm", model=str(tiny), output=str(blocker / "sub" / "x.wav"))
    if os.geteuid() != 0:  # root may write anywhere
        locked = out / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(RagError, match="Permission denied"):
            run(state(), prompt="calm", model=str(tiny), output=str(locked / "x.wav"))
    assert files_in(out) == ["a-file"]


def test_interrupt_during_generation_leaves_no_file(tiny, out):
    seen = []

    def on_step(done: int, total: int) -> None:
        seen.append(done)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_track(MusicPrompt("calm piano", "given"), GenerationOptions(duration=2.0),
                   TrackOptions(model=str(tiny), output=out / "x.wav"), on_step=on_step)
    assert seen == [1, 2, 3, 4, 5] and files_in(out) == []


def test_a_failing_write_leaves_no_file(tiny, out, monkeypatch):
    import musicgen.audio

    def broken(path, *args, **kwargs):
        Path(path).write_bytes(b"half a wav")
        raise musicgen.audio.AudioError(f"could not write {path}: disk full")

    monkeypatch.setattr(musicgen.audio, "save_audio", broken)
    with pytest.raises(RagError, match="disk full"):
        run(state(), prompt="calm", model=str(tiny), duration=0.1, output=str(out / "x.wav"))
    assert files_in(out) == []


def test_default_output_is_the_music_folder_in_the_data_dir(tiny, mlx_rag_home):
    record = run(state(), prompt="Lofi piano, rain!", model=str(tiny), duration=0.1,
                 format="flac")  # fmt: skip
    path = Path(record["path"])
    assert path.parent == (mlx_rag_home / "music").resolve()
    assert path.name.endswith("-lofi-piano-rain.flac") and record["format"] == "flac"



def test_tool_takes_long_form_durations(tiny, out):
    """Up to the library's long-form cap: 1200 s passes every check (the existing output is
    what stops it), 3601 s does not."""
    from musicgen.longform import LONGFORM_MAX_DURATION

    (out / "x.wav").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        run(state(), prompt="calm", model=str(tiny), duration=1200.0, output=str(out / "x.wav"))
    with pytest.raises(ValueError, match=f"longer than the {LONGFORM_MAX_DURATION:.0f} s"):
        run(state(), prompt="calm", model=str(tiny), duration=LONGFORM_MAX_DURATION + 1)
