"""Every track keeps its own sidecar (a.wav -> a.wav.json), and none replaces a file unasked."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from musicgen import GenerationOptions
from musicgen.plugin.options import TrackOptions
from musicgen.plugin.prompt import MusicPrompt
from musicgen.plugin.track import make_track
from rag_core import RagError

from tests.plugin.helpers import files_in


def track(tiny, output, **options) -> dict:
    return make_track(MusicPrompt("calm piano", "given"), GenerationOptions(duration=0.1, seed=1),
                      TrackOptions(model=str(tiny), output=output, **options))


def test_two_formats_of_one_name_keep_a_sidecar_each(cli, tiny, out):
    for name in ("a.wav", "a.flac"):
        result = cli("music", "generate", "calm", "-m", tiny, "-d", "0.1", "-o", out / name)
        assert result.exit_code == 0, result.output
    assert files_in(out) == ["a.flac", "a.flac.json", "a.wav", "a.wav.json"]
    for name in ("a.wav", "a.flac"):
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["path"] == str((out / name).resolve())
        assert sidecar["sidecar"] == str((out / f"{name}.json").resolve())


def test_a_file_with_the_old_sidecar_name_is_never_replaced(cli, tiny, out):
    (out / "b.json").write_text("my notes")  # not a sidecar: somebody's file
    result = cli("music", "generate", "calm", "-m", tiny, "-d", "0.1", "-o", out / "b.wav",
                 "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "b.json").read_text() == "my notes"
    assert files_in(out) == ["b.json", "b.wav", "b.wav.json"]


def test_a_taken_sidecar_name_needs_overwrite(tiny, out):
    (out / "c.wav.json").write_text("precious")
    with pytest.raises(RagError, match=r"c\.wav\.json already exists, and it is the "
                                                r"name of c\.wav's sidecar: pass --overwrite"):
        track(tiny, out / "c.wav")
    assert files_in(out) == ["c.wav.json"] and (out / "c.wav.json").read_text() == "precious"
    track(tiny, out / "c.wav", overwrite=True)
    assert json.loads((out / "c.wav.json").read_text())["path"] == str((out / "c.wav").resolve())


def test_made_up_names_avoid_taken_sidecar_names(tiny, out, monkeypatch):
    import musicgen.plugin.outputs as outputs

    class Frozen:
        @staticmethod
        def now():
            from datetime import datetime

            return datetime(2025, 1, 1, 12, 0, 0)

    monkeypatch.setattr(outputs, "datetime", Frozen)
    (out / "20250101-120000-calm-piano.wav.json").write_text("taken")
    record = track(tiny, f"{out}/")
    assert record["path"].endswith("20250101-120000-calm-piano-2.wav")


def test_sidecars_with_the_old_name_are_still_found(tiny, out):
    from musicgen.plugin.outputs import find_sidecar

    record = track(tiny, out / "d.wav")
    os.replace(out / "d.wav.json", out / "d.json")  # as an earlier version wrote it
    assert find_sidecar(out / "d.wav") == out / "d.json"
    assert find_sidecar(out / "d.flac") is None  # d.json records d.wav, not d.flac
    (out / "e.json").write_text("{not json")
    assert find_sidecar(out / "e.wav") is None
    # Overwriting the track replaces its old sidecar by one with the new name.
    track(tiny, out / "d.wav", overwrite=True)
    assert files_in(out) == ["d.wav", "d.wav.json", "e.json"]
    assert json.loads((out / "d.wav.json").read_text())["seed"] == record["seed"]


def test_temporary_files_are_hidden_marked_and_not_audio(tmp_path):
    from musicgen.plugin.outputs import part_path

    tmp = part_path(tmp_path / "x.wav")
    assert tmp.name.startswith(".x.wav.") and tmp.name.endswith(".part")
    assert f"-{os.getpid()}-" in tmp.name and tmp.suffix == ".part"


def test_only_the_leftovers_of_dead_processes_are_removed(out):
    from musicgen.plugin.outputs import part_path, remove_stale_parts, stale_parts

    tmp_path = out
    finished = subprocess.Popen(["true"])
    finished.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        ours = part_path(tmp_path / "a.wav")
        mine, live = ours.name.split("-")[0], f"-{alive.pid}-"
        left = tmp_path / f"{mine}-{finished.pid}-0badf00d.part"
        running = tmp_path / f"{mine}{live}0badf00d.part"
        elsewhere = tmp_path / f".a.wav.00000000-{finished.pid}-0badf00d.part"  # other host
        unrelated = tmp_path / ".a.wav.part"
        for path in (ours, left, running, elsewhere, unrelated):
            path.write_bytes(b"x")
        assert stale_parts(tmp_path) == [left]
        assert remove_stale_parts(tmp_path) == [left]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in (ours, running, elsewhere, unrelated))
    finally:
        alive.kill()
        alive.wait()
