"""`mlx-rag music generate | from-text | demo` end to end, in process and as real processes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import musicgen.plugin.cli
import numpy as np
import pytest
from musicgen.plugin.demo import DEFAULT_QUESTION
from musicgen.plugin.models import default_dtype
from musicgen.plugin.smoke import NOTICE, SMOKE_ID

from tests.plugin.helpers import MLX_RAG, files_in, read_audio, subprocess_env


def test_generate_with_every_option(cli, tiny, out):
    result = cli("music", "generate", "Lofi piano,  rain", "--model", tiny, "--duration", "0.5",
                 "--seed", "3", "--guidance-scale", "2", "--top-k", "10", "--top-p", "0.5",
                 "--temperature", "0.7", "--output", out / "song.flac", "--normalize", "clip",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["prompt"] == "Lofi piano, rain" and record["prompt_source"]["builder"] == "given"
    assert record["parameters"] == {"duration": 0.5, "guidance_scale": 2.0, "top_k": 10,
                                    "top_p": 0.5, "min_p": 0.0, "temperature": 0.7, "seed": 3,
                                    "extend_stride": None, "normalize": "clip",
                                    "dtype": default_dtype()}
    assert (record["seed"], record["format"]) == (3, "flac")
    assert f"Loading {tiny} ..." in result.stderr and "Generating 0.5 s" in result.stderr
    assert read_audio(out / "song.flac")[0].shape == (400, 1)
    assert files_in(out) == ["song.flac", "song.flac.json"]


def test_timings_name_every_phase_of_a_track(cli, tiny, out, monkeypatch):
    monkeypatch.setenv("MLX_RAG_TIMINGS", "1")
    result = cli("music", "generate", "calm", "-m", tiny, "-d", "0.2", "-o", out / "a.wav")
    assert result.exit_code == 0, result.output
    line = result.stderr.splitlines()[-1]
    assert line.startswith("Timings: ") and line.endswith(" s since the process started")
    names = re.findall(r"([\w. -]+?) [\d.]+ s(?:, |;)", line[len("Timings: "):])
    assert names == ["start-up", "plugins", "checks", "load.files", "load.modules", "load.codec",
                     "load.text_encoder", "load.decoder", "load.warm_up", "load", "generate",
                     "decode", "normalize", "write audio", "sidecar"]  # fmt: skip


def test_generate_prints_where_the_files_are(cli, tiny, out):
    result = cli("music", "generate", "calm", "-m", tiny, "-d", "0.2", "-o", f"{out}/",
                 "--format", "ogg")  # fmt: skip
    assert result.exit_code == 0, result.output
    wrote, sidecar = result.stdout.splitlines()
    path = Path(wrote.split()[1])
    assert path.parent == out and path.suffix == ".ogg" and path.is_file()
    assert "(0.2 s, 800 Hz, mono;" in wrote and "UNTRAINED" not in wrote
    assert sidecar == f"Sidecar: {path}.json"


def test_config_tools_music_supplies_defaults(cli, configure, tiny, out):
    configure(f'[tools.music]\nmodel = "{tiny}"\nduration = 0.3\nseed = 9\n'
              f'output = "{out}/"\n')  # fmt: skip
    record = json.loads(cli("music", "generate", "calm", "--json").stdout)
    assert (record["model"], record["duration"], record["seed"]) == (str(tiny), 0.3, 9)
    assert Path(record["path"]).parent == out
    record = json.loads(cli("music", "generate", "calm", "--seed", "1", "--json").stdout)
    assert record["seed"] == 1  # the command line wins
    configure("[tools.music]\nlength = 3\n")
    result = cli("music", "generate", "calm")
    assert result.exit_code == 1
    assert "'tools.music.length' is not a known key (the music tool's options:" in result.stderr


def test_from_text_file_and_stdin(cli, tiny, out, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("A festival with a brass band: trumpets, joyful dancing, fast marches.")
    result = cli("music", "from-text", story, "-m", tiny, "-d", "0.2", "-o", out / "a.wav",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["prompt"].startswith("joyful, energetic march with brass")
    assert record["prompt_source"] | {"notes": []} == {  # the prompt itself only once
        "builder": "extract", "input": "text", "chunk_ids": [], "sources": [str(story)],
        "llm": None, "notes": []}  # fmt: skip
    assert "Music prompt (extracted from the cues of" in result.stderr
    result = cli("music", "from-text", "-", "--prompt-only", input="Quiet rain on a piano.")
    assert result.exit_code == 0 and result.stdout.startswith("calm ambient with piano")
    assert files_in(out) == ["a.wav", "a.wav.json"]
    result = cli("music", "from-text", "-", input="   \n")
    assert result.exit_code == 2 and "<stdin> has no text to make music from" in result.stderr
    result = cli("music", "from-text", tmp_path / "missing.txt")
    assert result.exit_code == 2 and "No such file or directory" in result.stderr


FAULTS = [
    (["--model", "no-such-model"], "Error: Unknown model 'no-such-model'"),
    (["--model", "/no/such/dir"], "Error: Unknown model '/no/such/dir'"),
    (["--model", "facebook/musicgen-small"],
     "Error: Model 'facebook/musicgen-small' is not available: HF_HUB_OFFLINE is set"),
    (["--duration", "0"], "Error: duration must be > 0 seconds"),
    (["--duration", "abc"], "'abc' is not a valid float"),
    (["--top-p", "1.5"], "Error: top_p must be in [0, 1]"),
    (["--top-k", "-2"], "Error: top_k must be an integer >= 0"),
    (["--temperature", "-1"], "Error: temperature must be >= 0"),
    (["--seed", "-1"], "Error: seed must be None or an integer in [0, 2**64)"),
    (["--min-p", "2"], "Error: min_p must be in [0, 1]"),
    (["--extend-stride", "40"], "Error: extend_stride must be between 0 and 30 seconds"),
    (["--dtype", "float64"], "'float64' is not one of 'auto', 'float32', 'float16'"),
    (["--output", "song.mp3"], "must end in .wav, .flac or .ogg"),
    (["--normalize", "loud"], "'loud' is not one of"),
]


@pytest.mark.parametrize(("args", "message"), FAULTS, ids=[" ".join(a) for a, _ in FAULTS])
def test_bad_input_is_one_clear_line_and_no_file(cli, tiny, out, args, message):
    result = cli("music", "generate", "calm", "-m", tiny, "-o", f"{out}/", *args)
    assert result.exit_code in (1, 2) and message in result.stderr
    assert "Traceback" not in result.output and files_in(out) == []


def test_existing_output_needs_overwrite_and_unwritable_output_fails(cli, tiny, out):
    (out / "x.wav").write_bytes(b"keep")
    args = ("music", "generate", "calm", "-m", tiny, "-d", "0.1", "-o", out / "x.wav")
    result = cli(*args)
    assert result.exit_code == 1 and "x.wav already exists: pass --overwrite" in result.stderr
    assert (out / "x.wav").read_bytes() == b"keep"
    assert cli(*args, "--overwrite").exit_code == 0 and read_audio(out / "x.wav")[1] == 800
    result = cli("music", "generate", "calm", "-m", tiny, "-o", out / "x.wav" / "y.wav")
    assert result.exit_code == 1 and "x.wav is a file, not a folder" in result.stderr


def test_duration_cap_is_the_librarys(cli, tiny, out):
    """The CLI (through the tool) takes any duration the library generates (long-form, in
    windows), and refuses longer ones with the library's cap."""
    from musicgen.longform import LONGFORM_MAX_DURATION

    (out / "x.wav").write_bytes(b"keep")
    args = ("music", "generate", "calm", "-m", tiny, "-o", out / "x.wav")
    result = cli(*args, "-d", LONGFORM_MAX_DURATION)  # the duration passes; the output does not
    assert result.exit_code == 1 and "x.wav already exists" in result.stderr
    result = cli(*args, "-d", LONGFORM_MAX_DURATION + 1)
    assert result.exit_code == 1
    assert f"longer than the {LONGFORM_MAX_DURATION:.0f} s supported" in result.stderr


def test_progress_bar_counts_generation_steps(capsys):
    with musicgen.plugin.cli.progress_bar("generating", enabled=True) as on_step:
        for done in range(1, 61):
            time.sleep(0.15 if done == 30 else 0)  # tqdm redraws at most every 0.1 s
            on_step(done, 60)
    err = capsys.readouterr().err
    assert "generating:  50%|" in err and "| 30/60 [" in err
    with musicgen.plugin.cli.progress_bar("generating") as on_step:  # not a terminal: no bar
        on_step(1, 60)
    assert capsys.readouterr().err == ""


def test_ctrl_c_during_generation(cli, tiny, out, monkeypatch):
    import contextlib

    @contextlib.contextmanager
    def interrupting_bar(description, enabled=None):
        def on_step(done, total):
            if done == 3:
                raise KeyboardInterrupt

        yield on_step

    monkeypatch.setattr(musicgen.plugin.cli, "progress_bar", interrupting_bar)
    result = cli("music", "generate", "calm", "-m", tiny, "-d", "2", "-o", out / "x.wav")
    assert result.exit_code == 130
    assert result.stderr.endswith("Interrupted: generation stopped and no audio file was "
                                  "written.\n")  # fmt: skip
    assert "Traceback" not in result.output and files_in(out) == []


def test_demo_falls_back_to_the_labelled_smoke_checkpoint(cli, mlx_rag_home):
    result = cli("music", "demo", "--duration", "0.5", "--seed", "1")
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "The music model 'facebook/musicgen-small' cannot be loaded" in err
    assert "run `mlx-rag models pull facebook/musicgen-small`" in err and "HF_HOME" in err
    assert f"Continuing with '{SMOKE_ID}', an UNTRAINED smoke checkpoint" in err
    assert err.index("cannot be loaded") < err.index("Generating 0.5 s of music")
    assert "Reminder: this track comes from the UNTRAINED smoke checkpoint" in err
    lines = result.stdout.splitlines()
    assert lines[0] == f"Question: {DEFAULT_QUESTION}"
    assert lines[2].startswith("  [1] harbour-at-night.md:")
    assert lines[-3].startswith("Music prompt (extracted from the cues of 3 retrieved passage")
    assert "[UNTRAINED smoke checkpoint: noise, not music]" in lines[-2]
    wav = Path(lines[-2].split()[1])
    assert wav.parent == mlx_rag_home / "music" and wav.suffix == ".wav"
    sidecar = json.loads(wav.with_name(wav.name + ".json").read_text())
    assert sidecar["untrained"] is True and sidecar["notice"] == NOTICE
    assert sidecar["model"] == SMOKE_ID and sidecar["prompt_source"]["input"] == "retrieved"
    assert "--model musicgen-smoke" in sidecar["reproduce"]
    assert read_audio(wav) [1] == 32000 and (mlx_rag_home / "demo" / "store.sqlite3").is_file()


def test_the_demo_store_holds_this_installs_corpus_only(cli, mlx_rag_home, tmp_path):
    """The sample corpus of another checkout, ingested into the demo's store earlier, would
    come back as duplicate passages: the demo removes it (a --store of the user's keeps all)."""
    from musicgen.plugin.demo import corpus_dir, demo_store
    from rag_core.retrieval import ingest_paths

    other = Path(shutil.copytree(corpus_dir(), tmp_path / "other-checkout"))
    ingest_paths([other], store=demo_store(), embed=False)
    result = cli("music", "demo", "--smoke", "-d", "0.2", "-o", tmp_path / "d.wav")
    assert result.exit_code == 0, result.output
    assert f"{len(list(other.iterdir()))} pruned" in result.stderr
    passages = [line for line in result.stdout.splitlines() if line.startswith("  [")]
    assert len(passages) == len(set(passages)) == 3, passages
    mine = tmp_path / "mine.sqlite3"
    ingest_paths([other], store=mine, embed=False)
    kept = cli("music", "demo", "--smoke", "-d", "0.2", "-o", tmp_path / "e.wav", "--store", mine)
    assert kept.exit_code == 0 and "pruned" not in kept.stderr


def test_demo_with_a_local_model_and_a_question(cli, tiny, out, tmp_path):
    store = tmp_path / "demo.sqlite3"
    result = cli("music", "demo", "-q", "Which songs have an oud and hand drums?", "--store",
                 store, "-m", tiny, "-d", "0.2", "-o", out / "d.wav", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fallback"] is False and report["store"] == str(store)
    assert Path(report["retrieved"][0]["source"]).name == "desert-caravan.md"
    assert "with oud, hand drums and flute, medium tempo" in report["music"]["prompt"]
    assert report["music"]["untrained"] is False and "cannot be loaded" not in result.stderr
    assert files_in(out) == ["d.wav", "d.wav.json"]
    smoke = cli("music", "demo", "--smoke", "-d", "0.2", "-o", out / "s.wav", "--store", store)
    assert smoke.exit_code == 0 and "Using the smoke checkpoint as asked" in smoke.stderr


def test_demo_as_a_real_process(mlx_rag_home):
    started = time.perf_counter()
    process = subprocess.run([MLX_RAG, "music", "demo", "-d", "1"], capture_output=True,
                             text=True, env=subprocess_env(mlx_rag_home), timeout=120)  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert "UNTRAINED smoke checkpoint" in process.stderr and "Traceback" not in process.stderr
    wav = Path(process.stdout.splitlines()[-2].split()[1])
    audio, rate = read_audio(wav)
    assert rate == 32000 and audio.shape == (32000, 1) and np.abs(audio).max() > 0.5
    assert time.perf_counter() - started < 60


def test_sigint_to_a_real_process_mid_generation(mlx_rag_home, out):
    process = subprocess.Popen(
        [MLX_RAG, "music", "generate", "calm piano", "--model", SMOKE_ID, "--duration", "300",
         "-o", out / "x.wav"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env(mlx_rag_home),
    )  # fmt: skip
    try:
        lines = []
        for line in process.stderr:  # wait until generation has started
            lines.append(line)
            if line.startswith("Generating"):
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    stderr = "".join(lines) + rest
    assert process.returncode == 130, stderr
    assert "Interrupted: generation stopped and no audio file was written." in stderr
    assert "Traceback" not in stderr and files_in(out) == []
