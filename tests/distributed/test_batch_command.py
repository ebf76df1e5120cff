"""`mlx-rag music batch` in one process: outputs, manifest, resuming, bad lines, failures."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from click.testing import CliRunner
from musicgen.plugin.batch.manifest import read_sidecar
from rag_core.cli import cli

from tests.distributed.conftest import audio_bytes, manifest, write_jobs

JOBS = [
    {"id": "rain", "prompt": "lofi piano, rain", "seed": 1},
    {"prompt": "epic brass with drums", "seed": 2, "duration": 0.3},
    {"text": "A calm night by the sea, with soft rain and a slow piano.", "seed": 3},
    {"prompt": "calm", "seed": 4, "format": "flac"},
    {"prompt": "drums", "seed": 5, "temperature": 0.7},
]


def batch(*args: str):
    result = CliRunner().invoke(cli, ["music", "batch", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def jobs(tmp_path):
    return write_jobs(tmp_path / "jobs.jsonl", JOBS)


def run(jobs, out, checkpoint, *extra):
    return batch(jobs, "--out", out, "--model", checkpoint, "--duration", "0.2",
                 "--prompt-from", "extract", *extra)


def test_every_job_gets_its_audio_its_sidecar_and_a_manifest_line(jobs, tmp_path,
                                                                   tiny_checkpoint):
    out = tmp_path / "out"
    result = run(jobs, out, tiny_checkpoint, "-b", "4")
    assert result.exit_code == 0, result.output
    assert "Done: 5 of 5 jobs finished (5 generated now, 0 already done)" in result.output
    entries = manifest(out)
    assert [e["id"] for e in entries] == ["rain", "job-00002", "job-00003", "job-00004",
                                          "job-00005"]
    assert [e["line"] for e in entries] == [1, 2, 3, 4, 5]
    assert [e["output"] for e in entries][3] == "job-00004.flac"
    # Jobs with equal generation options share a batch; the format is not one of them.
    assert [e["batch_size"] for e in entries] == [3, 1, 3, 3, 1]
    for entry, job in zip(entries, JOBS, strict=True):
        audio, rate = sf.read(out / entry["output"])
        assert rate == 800 and len(audio) == round(entry["duration"] * 800)
        assert entry["duration"] == job.get("duration", 0.2)
        assert entry["seed"] == job["seed"]
        assert set(entry["timings"]) >= {"generate_s", "decode_s", "write_s"}
        sidecar = json.loads((out / entry["sidecar"]).read_text())
        assert sidecar["prompt"] == entry["prompt"] and sidecar["seed"] == job["seed"]
        assert sidecar["batch"]["line"] == entry["line"] and sidecar["batch"]["rank"] == 0
        assert sidecar["reproduce"].startswith("mlx-rag music generate ")
    text_job = json.loads((out / "job-00003.wav.json").read_text())
    assert text_job["prompt_source"]["builder"] == "extract"
    assert "rain" in text_job["prompt"] and "piano" in text_job["prompt"]
    assert sorted(p.name for p in out.iterdir() if p.suffix not in (".wav", ".flac", ".json")) \
        == ["manifest.jsonl"]  # no temporary files, no partial manifests


def test_batching_does_not_change_any_track(jobs, tmp_path, tiny_checkpoint):
    one = run(jobs, tmp_path / "one", tiny_checkpoint, "-b", "1")
    four = run(jobs, tmp_path / "four", tiny_checkpoint, "-b", "4")
    assert one.exit_code == four.exit_code == 0
    assert audio_bytes(tmp_path / "one") == audio_bytes(tmp_path / "four")
    assert len(audio_bytes(tmp_path / "one")) == 5


def test_a_rerun_skips_finished_jobs_and_redoes_changed_or_incomplete_ones(
    jobs, tmp_path, tiny_checkpoint
):
    out = tmp_path / "out"
    assert run(jobs, out, tiny_checkpoint).exit_code == 0
    before = audio_bytes(out)
    again = run(jobs, out, tiny_checkpoint)
    assert again.exit_code == 0
    assert "(0 generated now, 5 already done)" in again.output
    assert audio_bytes(out) == before and len(manifest(out)) == 5

    changed = [dict(JOBS[0], seed=99), *JOBS[1:]]
    write_jobs(jobs, changed)
    (out / "job-00002.wav.json").unlink()  # audio without sidecar: interrupted before the sidecar
    (out / ".job-00004.1a2b3c4d.part.flac").write_bytes(b"left by a killed run")
    (out / ".manifest.jsonl.part").write_bytes(b"left by a killed run of an earlier version")
    result = run(jobs, out, tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert "(2 generated now, 3 already done)" in result.output
    after = audio_bytes(out)
    assert after["rain.wav"] != before["rain.wav"]
    assert after["job-00002.wav"] == before["job-00002.wav"]  # same seed, same track
    assert {k: v for k, v in after.items() if k != "rain.wav"} == {
        k: v for k, v in before.items() if k != "rain.wav"}
    assert [e["seed"] for e in manifest(out)] == [99, 2, 3, 4, 5]
    assert not list(out.glob(".*"))


def test_a_changed_default_is_a_changed_job(jobs, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    assert run(jobs, out, tiny_checkpoint).exit_code == 0
    result = run(jobs, out, tiny_checkpoint, "--normalize", "rms")
    assert "(5 generated now, 0 already done)" in result.output


BAD = [
    {"prompt": "lofi piano", "seed": 1},
    "{not json",
    {"prompt": "calm", "colour": "red"},
    {"prompt": "calm", "duration": -2},
    {"prompt": "calm", "seed": 3},
    {"prompt": "x", "model": "no/such-musicgen-thing-here", "seed": 4},
    {"prompt": "x", "model": "sentence-transformers/all-MiniLM-L6-v2"},
]


def test_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path, tiny_checkpoint):
    jobs = write_jobs(tmp_path / "jobs.jsonl", BAD)
    out = tmp_path / "out"
    result = run(jobs, out, tiny_checkpoint)
    assert result.exit_code == 1, result.output
    assert "Error: 1 job failed. job-00006 (line 6): " in result.output
    assert f"{jobs}:2: not valid JSON" in result.output
    assert f"{jobs}:3: unknown field 'colour'" in result.output
    assert f"{jobs}:4: duration must be > 0 seconds" in result.output
    assert (f"{jobs}:7: Model 'sentence-transformers/all-MiniLM-L6-v2' is of kind 'embedding', "
            "but kind 'music' is needed here") in result.output
    assert "Skipped 4 bad lines: 2, 3, 4, 7." in result.output
    # Line 6 names a hub repo the registry's pattern accepts: it fails when loading (offline).
    assert [e["line"] for e in manifest(out)] == [1, 5]


def test_strict_stops_before_any_work(tmp_path, tiny_checkpoint):
    jobs = write_jobs(tmp_path / "jobs.jsonl", BAD)
    out = tmp_path / "out"
    result = run(jobs, out, tiny_checkpoint, "--strict")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: 4 bad lines in {jobs} (--strict stops before")
    assert f"{jobs}:2: not valid JSON" in result.output
    assert not out.exists() or not list(out.iterdir())


def test_failed_jobs_do_not_stop_the_others_and_fail_the_run(tmp_path, tiny_checkpoint):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {"id": "fine", "prompt": "calm", "seed": 1},
        {"id": "lost", "query": "the harbour at night", "seed": 2},  # the store is empty
    ])
    out = tmp_path / "out"
    result = run(jobs, out, tiny_checkpoint)
    assert result.exit_code == 1
    assert "Error: 1 job failed. lost (line 2): " in result.output
    assert "run the same command again" in result.output
    assert [e["id"] for e in manifest(out)] == ["fine"]
    assert not (out / "lost.wav.json").exists()


def test_query_jobs_build_their_prompt_from_retrieved_passages(tmp_path, tiny_checkpoint):
    from importlib.resources import files

    from rag_core.retrieval import ingest_paths

    ingest_paths([str(files("musicgen.plugin") / "data" / "demo_corpus")], embed=False)
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {"id": "harbour", "query": "fog over the harbour at night", "seed": 1}])
    out = tmp_path / "out"
    result = run(jobs, out, tiny_checkpoint, "-k", "2")
    assert result.exit_code == 0, result.output
    sidecar = read_sidecar_file(out / "harbour.wav.json")
    source = sidecar["prompt_source"]
    assert source["input"] == "retrieved" and len(source["chunk_ids"]) == 2
    assert any("harbour" in s for s in source["sources"])
    assert sidecar["batch"]["source"] == "query"


def read_sidecar_file(path):
    return json.loads(path.read_text())


def test_the_sidecar_check_needs_the_audio_and_the_same_hash(tmp_path, tiny_checkpoint):
    from musicgen.plugin.batch.jobs import Options, read_jobs

    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "prompt": "calm", "seed": 1}])
    out = tmp_path / "out"
    assert run(jobs, out, tiny_checkpoint).exit_code == 0
    job = read_jobs(jobs, Options.of(model=str(tiny_checkpoint), duration=0.2)).jobs[0]
    assert read_sidecar(job, out) is not None
    (out / "a.wav").unlink()
    assert read_sidecar(job, out) is None


def test_the_sidecars_reproduce_command_gives_the_same_track(jobs, tmp_path, tiny_checkpoint):
    import shlex

    out = tmp_path / "out"
    assert run(jobs, out, tiny_checkpoint, "-b", "4").exit_code == 0
    sidecar = json.loads((out / "rain.wav.json").read_text())
    args = shlex.split(sidecar["reproduce"])
    assert args[:3] == ["mlx-rag", "music", "generate"]
    args[args.index("--output") + 1] = str(tmp_path / "again.wav")
    result = CliRunner().invoke(cli, args[1:])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again.wav").read_bytes() == (out / "rain.wav").read_bytes()


def test_config_defaults_apply_but_a_configured_seed_leaves_jobs_their_own(tmp_path,
                                                                          tiny_checkpoint):
    """[tools.music] sets the jobs' defaults (min_p here); its seed is for single tracks: a
    job has its own seed, given or derived."""
    config = tmp_path / "config.toml"
    config.write_text("[tools.music]\nseed = 9\nmin_p = 0.2\n")
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "prompt": "calm"}])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--config", str(config), "music", "batch", str(jobs),
                                      "--out", str(out), "--model", str(tiny_checkpoint),
                                      "--duration", "0.2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "a.wav.json").read_text())
    assert sidecar["parameters"]["min_p"] == 0.2 and sidecar["batch"]["seed_given"] is False
    assert sidecar["seed"] != 9
