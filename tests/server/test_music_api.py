"""The musicgen plugin's endpoints on the smoke checkpoint: music jobs (progress, queueing,
cancelling, bad fields) and the track library (list, show, audio with Range, waveform,
delete), with ids that are never paths."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import rag_core
import soundfile as sf

from tests.server.conftest import SMOKE, assert_error

TIMEOUT = 120


def wait_for(client, job_id: str, *statuses: str, seen: list | None = None) -> dict:
    """Poll the job until its status is one of ``statuses``; ``seen`` collects each poll."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if seen is not None:
            seen.append((job["status"], job["progress"]))
        if job["status"] in statuses:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def make_track(client, **body) -> dict:
    response = client.post("/api/music", json={"prompt": "lofi piano", "duration": 0.5,
                                               "seed": 1, **body})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], "done", "failed", "cancelled")
    assert job["status"] == "done", job
    return job["result"]["track"]


def every_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_music_job_from_queued_to_a_track_in_the_library(music_home, client):
    response = client.post("/api/music", json={"prompt": "lofi piano, rain", "duration": 4.0,
                                               "seed": 7, "top_k": 50, "normalize": "peak"})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["status"] in ("queued", "running") and job["kind"] == "music"
    assert job["info"] == {"source": "prompt", "prompt": "lofi piano, rain", "model": SMOKE,
                           "duration": 4.0}
    seen: list = []
    done = wait_for(client, job["id"], "done", "failed", "cancelled", seen=seen)
    assert done["status"] == "done" and done["progress"] == 1.0, done
    progress = [p for status, p in seen if status == "running"]
    assert progress == sorted(progress)  # it only grows
    assert any(0 < p < 1 for p in progress), seen  # reported step by step while generating

    track = done["result"]["track"]
    assert every_file(music_home) == [track["id"], f"{track['id']}.json"]
    assert track["audio"] == f"/api/tracks/{track['id']}/audio"
    assert track["prompt"] == "lofi piano, rain" and track["model"] == SMOKE
    assert track["seed"] == 7 and track["duration"] == 4.0 and track["untrained"] is True
    assert "UNTRAINED" in track["notice"]
    sidecar = json.loads((music_home / f"{track['id']}.json").read_text())
    assert track["sidecar"] == sidecar
    assert sidecar["parameters"]["top_k"] == 50 and sidecar["parameters"]["normalize"] == "peak"
    samples, rate = sf.read(str(music_home / track["id"]))
    assert rate == 32000 and len(samples) == 4 * 32000
    assert np.abs(samples).max() == pytest.approx(10 ** (-1 / 20), abs=1e-3)  # peak, as asked

    listed = client.get("/api/tracks").json()["tracks"]
    assert [t["id"] for t in listed] == [track["id"]] and listed[0] == track
    assert client.get(f"/api/tracks/{track['id']}").json() == track


def test_the_default_normalization_is_loudness(music_home, client):
    from musicgen.loudness import CEILING_DBTP, TARGET_LUFS, db, integrated_loudness, true_peak

    track = make_track(client, duration=2.0)
    assert track["sidecar"]["parameters"]["normalize"] == "loudness"
    samples, rate = sf.read(str(music_home / track["id"]), always_2d=True)
    loudness = integrated_loudness(samples, rate)
    assert db(true_peak(samples, rate)) <= CEILING_DBTP + 0.05  # never clips
    assert loudness == pytest.approx(TARGET_LUFS, abs=0.1) or loudness < TARGET_LUFS


def test_one_generation_at_a_time_per_model_the_others_queue(music_home, client):
    first = client.post("/api/music", json={"prompt": "a", "duration": 3.0}).json()
    second = client.post("/api/music", json={"prompt": "b", "duration": 0.5}).json()
    wait_for(client, first["id"], "running")
    assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "queued"
    one = wait_for(client, first["id"], "done", "failed")
    two = wait_for(client, second["id"], "done", "failed")
    assert one["status"] == two["status"] == "done"
    assert two["started"] >= one["finished"]
    assert {t["prompt"] for t in client.get("/api/tracks").json()["tracks"]} == {"a", "b"}


def test_cancelling_a_running_job_leaves_no_file(music_home, client):
    job = client.post("/api/music", json={"prompt": "long", "duration": 60.0}).json()
    deadline = time.monotonic() + TIMEOUT
    while client.get(f"/api/jobs/{job['id']}").json()["progress"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert any(name.endswith(".part") for name in every_file(music_home))  # being written
    cancel = client.delete(f"/api/jobs/{job['id']}")
    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    assert wait_for(client, job["id"], "cancelled", "done", "failed")["status"] == "cancelled"
    assert every_file(music_home) == []  # nothing left, hidden temporary files included
    assert client.get("/api/tracks").json() == {"tracks": []}


def test_audio_with_range_requests(music_home, client):
    track = make_track(client)
    data = (music_home / track["id"]).read_bytes()
    size = len(data)
    url = track["audio"]

    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("inline")
    assert whole.headers["cross-origin-resource-policy"] == "same-origin"

    first = client.get(url, headers={"Range": "bytes=0-99"})
    assert first.status_code == 206 and first.content == data[:100]
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    middle = client.get(url, headers={"Range": "bytes=1000-"})
    assert middle.status_code == 206 and middle.content == data[1000:]
    assert middle.headers["content-range"] == f"bytes 1000-{size - 1}/{size}"
    tail = client.get(url, headers={"Range": "bytes=-44"})
    assert tail.status_code == 206 and tail.content == data[-44:]

    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"


def test_waveform(music_home, client):
    track = make_track(client, duration=1.0)
    wave = client.get(f"{track['waveform']}?points=100").json()
    samples, _ = sf.read(str(music_home / track["id"]), dtype="float32")
    assert wave["points"] == 100 and wave["duration"] == 1.0 and wave["channels"] == 1
    bounds = np.linspace(0, len(samples), 101).astype(int)
    parts = [samples[a:b] for a, b in itertools.pairwise(bounds)]
    np.testing.assert_allclose(wave["max"], [p.max() for p in parts], atol=1e-4)
    np.testing.assert_allclose(wave["min"], [p.min() for p in parts], atol=1e-4)
    np.testing.assert_allclose(wave["rms"], [np.sqrt(np.mean(p**2)) for p in parts], atol=1e-4)
    for points in ("0", "abc", "5000", "-1"):
        assert_error(client.get(f"{track['waveform']}?points={points}"), 400, "points")


def test_track_ids_are_never_paths(music_home, mlx_rag_home, client):
    track = make_track(client)
    secret = mlx_rag_home / "secret.wav"
    secret.write_bytes((music_home / track["id"]).read_bytes())
    (music_home / "link.wav").symlink_to(secret)  # a link out of the library is no track
    (music_home / ".hidden.wav").write_bytes(b"RIFF")  # nor is a hidden file
    assert [t["id"] for t in client.get("/api/tracks").json()["tracks"]] == [track["id"]]

    for bad in ("..%2Fsecret.wav", "%2E%2E%2Fsecret.wav", "..", "...wav", ".hidden.wav",
                "..%5Csecret.wav", "config.toml", f"{track['id']}.json", "a%00.wav",
                "%2Fetc%2Fpasswd"):
        for suffix, method in (("", "GET"), ("/audio", "GET"), ("/waveform", "GET"),
                               ("", "DELETE")):
            response = client.request(method, f"/api/tracks/{bad}{suffix}")
            assert response.status_code in (400, 404), (bad, suffix, response.status_code)
            assert response.json()["error"]["param"] in ("id", None), response.text
            assert response.headers["content-type"] == "application/json"
    assert_error(client.get("/api/tracks/%2E%2Esecret.wav"), 400, "id", "not a track id")
    assert_error(client.get("/api/tracks/a..b.wav/audio"), 400, "id", "not a track id")
    assert_error(client.get("/api/tracks/link.wav/audio"), 404, "id", "no track")
    assert_error(client.get("/api/tracks/nothing.wav"), 404, "id", "no track")
    assert_error(client.post("/api/music", json={"prompt": "x", "melody": "../secret.wav"}),
                 400, "melody", "not a track id")
    assert_error(client.post("/api/music", json={"prompt": "x", "continue_from": "link.wav"}),
                 404, "continue_from", "no track")
    assert secret.exists() and (music_home / track["id"]).exists()


@pytest.mark.parametrize(("body", "status", "param", "words"), [
    ({}, 400, "prompt", "exactly one of"),
    ({"prompt": "a", "text": "b"}, 400, "text", "exactly one of"),
    ({"prompt": "  "}, 400, "prompt", "must not be empty"),
    ({"prompt": 3}, 400, "prompt", "must be a string"),
    ({"prompt": "a", "duration": 0}, 400, "duration", "duration must be > 0"),
    ({"prompt": "a", "duration": "long"}, 400, "duration", "must be a number"),
    ({"prompt": "a", "duration": 0.001}, 400, "duration", "shorter than one frame"),
    ({"prompt": "a", "duration": 99999}, 400, "duration", "longer than"),
    ({"prompt": "a", "top_k": 1.5}, 400, "top_k", "must be an integer"),
    ({"prompt": "a", "top_p": 2}, 400, "top_p", "in [0, 1]"),
    ({"prompt": "a", "temperature": -1}, 400, "temperature", ">= 0"),
    ({"prompt": "a", "guidance_scale": True}, 400, "guidance_scale", "must be a number"),
    ({"prompt": "a", "seed": [1, 2]}, 400, "seed", "must be an integer"),
    ({"prompt": "a", "seed": -1}, 400, "seed", "seed must be"),
    ({"prompt": "a", "model": "no-such-model"}, 404, "model", "unknown model"),
    ({"prompt": "a", "model": "all-MiniLM-L6-v2"}, 400, "model", "kind 'embedding'"),
    ({"prompt": "a", "normalize": "loud"}, 400, "normalize", "one of loudness, peak"),
    ({"prompt": "a", "format": "mp3"}, 400, "format", "format must be one of"),
    ({"prompt": "a", "quantize": 3}, 400, "quantize", "4 or 8"),
    ({"prompt": "a", "stream": "yes"}, 400, "stream", "true or false"),
    ({"prompt": "a", "output": "/tmp/x.wav"}, 400, "output", "set by the server"),
    ({"prompt": "a", "overwrite": True}, 400, "overwrite", "set by the server"),
    ({"prompt": "a", "melody": "nothing.wav"}, 404, "melody", "no track"),
    ({"prompt": "a", "tempo": 120}, 400, "tempo", "not a known field"),
    ({"text": "a storm", "prompt_from": "magic"}, 400, "prompt_from", "one of auto"),
    ({"question": "q", "input": "everything"}, 400, "input", "input must be one of"),
    ({"prompt": "a", "answer": "b"}, 400, "answer", "goes with a 'question'"),
    ({"question": "q", "answer": "b"}, 400, "passages", "needs the 'passages'"),
    ({"question": "q", "passages": []}, 400, "passages", "list of 1 to"),
    ({"question": "q", "passages": [{"source": "a"}]}, 400, "passages[0]", "'text'"),
    ({"question": "q", "passages": [{"text": "a", "lines": "1-2"}]}, 400,
     "passages[0].lines", "wrong type"),
    ({"question": "q", "k": 0}, 400, "k", "at least 1"),
])
def test_bad_requests_name_the_field(music_home, make_client, body, status, param, words):
    client = make_client(raise_server_exceptions=False)
    assert_error(client.post("/api/music", json=body), status, param, words)
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued
    assert every_file(music_home) == []


def test_a_model_that_cannot_be_loaded_fails_its_job_with_the_reason(music_home, client):
    job = client.post("/api/music", json={"prompt": "a", "model": "someone/musicgen-nowhere"})
    assert job.status_code == 202  # a hub repo id: it would be downloaded when online
    failed = wait_for(client, job.json()["id"], "done", "failed", "cancelled")
    assert failed["status"] == "failed" and "someone/musicgen-nowhere" in failed["error"]
    assert "HF_HUB_OFFLINE" in failed["error"] and SMOKE in failed["error"]  # what to do
    assert every_file(music_home) == []


def test_bodies_that_are_not_json_objects(music_home, client):
    assert_error(client.post("/api/music", content=b"prompt=a"), 415, "Content-Type")
    assert_error(client.post("/api/music", json=["a"]), 400, "body", "json object")


def test_the_tracks_of_the_library_newest_first_with_old_sidecars(music_home, client):
    first = make_track(client, prompt="first")
    second = make_track(client, prompt="second")
    os.utime(music_home / first["id"], (1e9, 1e9))
    os.utime(music_home / second["id"], (2e9, 2e9))
    # A track written by an earlier version: its sidecar is named old.json.
    (music_home / "old.wav").write_bytes((music_home / first["id"]).read_bytes())
    os.utime(music_home / "old.wav", (1.5e9, 1.5e9))
    legacy = {**first["sidecar"], "path": str(music_home / "old.wav"), "prompt": "old one"}
    (music_home / "old.json").write_text(json.dumps(legacy))
    # A track without a sidecar still plays.
    (music_home / "bare.flac").write_bytes(b"")
    sf.write(str(music_home / "bare.flac"), np.zeros(800), 8000, format="FLAC")
    os.utime(music_home / "bare.flac", (0.5e9, 0.5e9))

    tracks = client.get("/api/tracks").json()["tracks"]
    assert [t["id"] for t in tracks] == [second["id"], "old.wav", first["id"], "bare.flac"]
    old = tracks[1]
    assert old["prompt"] == "old one" and old["sidecar_file"] == "old.json"
    bare = tracks[3]
    assert bare["sidecar"] is None and bare["duration"] == 0.1 and bare["sample_rate"] == 8000
    assert client.get("/api/tracks/bare.flac/audio").headers["content-type"] == "audio/flac"

    removed = client.delete("/api/tracks/old.wav")
    assert removed.status_code == 200
    assert removed.json() == {"id": "old.wav", "removed": ["old.wav", "old.json"]}
    deleted = client.delete(f"/api/tracks/{second['id']}").json()
    assert deleted["removed"] == [second["id"], f"{second['id']}.json"]
    assert_error(client.get(f"/api/tracks/{second['id']}"), 404, "id")
    assert_error(client.delete(f"/api/tracks/{second['id']}"), 404, "id")
    assert every_file(music_home) == sorted(
        ["bare.flac", first["id"], f"{first['id']}.json"])


def test_a_library_that_does_not_exist_yet_is_empty(music_home, client):
    assert client.get("/api/tracks").json() == {"tracks": []}
    assert not music_home.exists()


def test_options_describe_the_request(music_home, client):
    from musicgen.options import option_fields

    options = client.get("/api/music/options").json()
    fields = {f["name"]: f for f in options["fields"]}
    generation = {f.name for f in option_fields()}
    tool_names = set(rag_core.get_tool("music").option_names())
    # every GenerationOptions field the tool takes, and nothing the server sets itself
    assert generation & tool_names <= set(fields)
    assert {"prompt", "text", "question", "model", "format", "normalize"} <= set(fields)
    assert not {"output", "overwrite"} & set(fields)
    assert fields["duration"]["type"] == "number" and fields["duration"]["default"] == 8.0
    assert fields["model"]["default"] == SMOKE  # from [tools.music]
    assert fields["normalize"]["default"] == "loudness"
    assert SMOKE in {m["id"] for m in options["models"]}


QUESTION = "Why do ships sound horns in the harbour?"


def test_a_question_is_retrieved_answered_and_made_music(music_library, mlx_rag_home, client):
    job = client.post("/api/music", json={"question": QUESTION, "duration": 0.5, "seed": 2})
    assert job.status_code == 202 and job.json()["info"]["question"] == QUESTION
    done = wait_for(client, job.json()["id"], "done", "failed", "cancelled")
    assert done["status"] == "done", done
    result = done["result"]
    assert result["question"] == QUESTION and result["answer"] == "[1][1][1][1]"
    passages = result["passages"]
    assert passages[0]["number"] == 1 and passages[0]["source"].endswith("harbour.md")
    sidecar = result["track"]["sidecar"]
    assert sidecar["prompt_source"]["input"] == "answer"
    # The citing LLM cannot describe music: the prompt was extracted, and a note says so.
    assert sidecar["prompt_source"]["builder"] == "extract"
    assert any("did not write a usable description" in n for n in result["notes"])
    rag = sidecar["rag"]
    assert rag["question"] == QUESTION and rag["answer"] == "[1][1][1][1]"
    assert [p["source"] for p in rag["passages"]] == [p["source"] for p in passages]
    assert rag["passages"][0]["text"] == passages[0]["text"]
    on_disk = json.loads((mlx_rag_home / "music" / f"{result['track']['id']}.json").read_text())
    assert on_disk == sidecar


def test_a_question_from_the_passages_without_an_answer(music_library, client):
    job = client.post("/api/music", json={"question": QUESTION, "input": "retrieved",
                                          "prompt_from": "extract", "k": 2, "duration": 0.5})
    result = wait_for(client, job.json()["id"], "done", "failed")["result"]
    assert result["answer"] is None and len(result["passages"]) == 2
    source = result["track"]["sidecar"]["prompt_source"]
    assert source["input"] == "retrieved" and source["builder"] == "extract"
    assert source["chunk_ids"] == [p["id"] for p in result["passages"]]


def test_a_question_with_the_answer_and_passages_the_page_already_has(music_library, client):
    from musicgen.plugin.prompt import extract_prompt

    answer = "A stormy night at sea, thunder and rain over the waves [1]."
    passages = [{"number": 1, "id": 999, "source": "notes/given.md", "lines": [3, 4],
                 "text": "Thunder rolls over the sea.", "score": 0.5}]
    job = client.post("/api/music", json={"question": "What is the sea like?", "answer": answer,
                                          "passages": passages, "duration": 0.5})
    result = wait_for(client, job.json()["id"], "done", "failed")["result"]
    assert result["answer"] == answer and result["passages"] == passages  # nothing redone
    sidecar = result["track"]["sidecar"]
    assert sidecar["rag"]["passages"] == passages
    assert sidecar["prompt"] == extract_prompt([answer])


def test_a_question_needs_a_store(music_home, client):
    assert_error(client.post("/api/music", json={"question": QUESTION}), 409, None, "ingest")
