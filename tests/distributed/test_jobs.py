"""Reading a jobs file: defaults, seeds, ids, and bad lines reported with their line numbers."""

from __future__ import annotations

import json

import pytest
from musicgen.plugin.batch.jobs import JobsError, Options, derived_seed, parse_job, read_jobs


def write_lines(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_jobs_take_defaults_and_their_own_values(tmp_path):
    path = write_lines(tmp_path / "jobs.jsonl", [
        {"prompt": "lofi piano", "seed": 3},
        "",
        {"id": "storm", "text": "A storm at sea.", "duration": 2, "top_k": 10, "format": "flac"},
        {"query": "What about rain?", "model": "other/model", "temperature": 0.5},
    ])
    result = read_jobs(path, Options.of(model="m", duration=1.5))
    assert result.bad == []
    first, storm, query = result.jobs
    assert (first.line, first.id, first.source, first.seed) == (1, "job-00001", "prompt", 3)
    assert first.options == Options.of(model="m", duration=1.5)
    assert (storm.line, storm.id, storm.source, storm.input) == (3, "storm", "text",
                                                                 "A storm at sea.")
    assert storm.options.generation.duration == 2.0
    assert isinstance(storm.options.generation.duration, float)
    assert storm.audio_name == "storm.flac" and storm.sidecar_name == "storm.flac.json"
    assert not storm.seed_given and storm.seed == derived_seed("storm", "text", "A storm at sea.")
    assert query.options.model == "other/model" and query.source == "query"
    assert first.batch_key != storm.batch_key


def test_a_job_without_a_seed_gets_a_stable_one_that_differs_between_jobs(tmp_path):
    lines = [{"id": "a", "prompt": "calm"}, {"id": "b", "prompt": "calm"}]
    first = read_jobs(write_lines(tmp_path / "j1.jsonl", lines)).jobs
    again = read_jobs(write_lines(tmp_path / "j2.jsonl", lines)).jobs
    assert [j.seed for j in first] == [j.seed for j in again]
    assert first[0].seed != first[1].seed
    assert first[0].digest == again[0].digest


def test_the_digest_changes_with_any_parameter():
    base = parse_job('{"id": "a", "prompt": "calm", "seed": 1}', 1, Options())
    for change in ('"seed": 2', '"duration": 3', '"top_p": 0.9', '"format": "ogg"',
                   '"temperature": 0.7', '"guidance_scale": 1', '"model": "x/y"', '"min_p": 0.1',
                   '"extend_stride": 10', '"top_k": 0'):
        other = parse_job('{"id": "a", "prompt": "calm", ' + change + "}", 1, Options())
        assert other.digest != base.digest, change
    assert parse_job('{"id": "a", "prompt": "calm", "seed": 1}', 7, Options()).digest == base.digest
    for run_options in ({"normalize": "rms"}, {"quantize": 4}, {"dtype": "float16"}):
        other = parse_job('{"id": "a", "prompt": "calm", "seed": 1}', 1, Options.of(**run_options))
        assert other.digest != base.digest, run_options


def test_a_job_keeps_the_hash_earlier_versions_gave_it(monkeypatch):
    """Finished jobs of a run made before min_p, extend_stride and dtype existed are still
    found: at their defaults (dtype auto on the CPU is float32) a job hashes as it did."""
    import hashlib

    import musicgen.plugin.models

    monkeypatch.setattr(musicgen.plugin.models, "default_dtype", lambda: "float32")
    job = parse_job('{"id": "a", "text": "rain", "seed": 5, "top_k": 10}', 3,
                    Options.of(model="m", duration=2.0, normalize="rms"))
    first_version = {"id": "a", "source": "text", "input": "rain", "seed": 5, "model": "m",
                     "duration": 2.0, "guidance_scale": 3.0, "top_k": 10, "top_p": 0.0,
                     "temperature": 1.0, "format": "wav", "normalize": "rms"}
    blob = json.dumps(first_version, sort_keys=True, ensure_ascii=False)
    assert job.digest == hashlib.sha256(blob.encode()).hexdigest()
    monkeypatch.setattr(musicgen.plugin.models, "default_dtype", lambda: "float16")
    on_a_gpu = parse_job('{"id": "a", "text": "rain", "seed": 5, "top_k": 10}', 3,
                         Options.of(model="m", duration=2.0, normalize="rms"))
    assert on_a_gpu.digest != job.digest  # float16 makes other audio: not the same job


BAD = [
    ("{not json", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"prompt": "x", "colour": "red"}', "unknown field 'colour'"),
    ('{"prompt": "x", "text": "y"}', "exactly one of 'prompt', 'text' or 'query' (got prompt and"),
    ('{"seed": 1}', "exactly one of 'prompt', 'text' or 'query' (got none)"),
    ('{"prompt": "  "}', "'prompt' must be a non-empty string"),
    ('{"query": 5}', "'query' must be a non-empty string"),
    ('{"prompt": "x", "duration": -1}', "duration must be > 0"),
    ('{"prompt": "x", "duration": "long"}', "duration must be a number"),
    ('{"prompt": "x", "top_p": 2}', "top_p must be in [0, 1]"),
    ('{"prompt": "x", "top_k": 1.5}', "top_k must be an integer"),
    ('{"prompt": "x", "seed": -4}', "seed must be None or an integer"),
    ('{"prompt": "x", "seed": [1, 2]}', "a job's seed is one integer"),
    ('{"prompt": "x", "min_p": 1.5}', "min_p must be in [0, 1]"),
    ('{"prompt": "x", "model": "m@q4", "dtype": "float16"}', "unknown field 'dtype'"),
    ('{"prompt": "x", "format": "mp3"}', "format must be one of wav, flac, ogg"),
    ('{"prompt": "x", "model": ""}', "model must be a model id"),
    ('{"prompt": "x", "id": "../escape"}', "'id' must be 1-100 letters"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_bad_lines_are_reported_with_their_line_number_and_skipped(tmp_path, line, message):
    path = write_lines(tmp_path / "jobs.jsonl", [{"prompt": "ok", "seed": 1}, "", line,
                                                 {"prompt": "also ok"}])
    result = read_jobs(path)
    assert [j.line for j in result.jobs] == [1, 4]
    assert [b.line for b in result.bad] == [3]
    assert message in result.bad[0].message
    assert result.report().startswith(f"{path}:3: ")
    with pytest.raises(JobsError) as excinfo:
        read_jobs(path, strict=True)
    assert "1 bad line in" in str(excinfo.value) and f"{path}:3: " in str(excinfo.value)


def test_duplicate_ids_are_bad_lines_naming_the_first_use(tmp_path):
    lines = [{"id": 7, "prompt": "a"}, {"id": "7", "prompt": "b"}, {"prompt": "c"},
             {"id": "job-00003", "prompt": "d"}]
    path = write_lines(tmp_path / "jobs.jsonl", lines)
    result = read_jobs(path)
    assert [j.id for j in result.jobs] == ["7", "job-00003"]
    assert [str(b) for b in result.bad] == [
        "line 2: id '7' is already used on line 1; ids name the output files and must be unique.",
        "line 4: id 'job-00003' is already used on line 3; ids name the output files and must "
        "be unique.",
    ]


def test_unusable_files_fail_with_what_to_do(tmp_path):
    with pytest.raises(JobsError, match="does not exist"):
        read_jobs(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(JobsError, match="has no jobs: write one JSON object per line"):
        read_jobs(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="duration must be > 0"):
        read_jobs(write_lines(tmp_path / "j.jsonl", [{"prompt": "x"}]), Options.of(duration=0))
