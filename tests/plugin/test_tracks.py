"""The track library (musicgen.plugin.tracks) and `mlx-rag music tracks [show | rm]`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from musicgen.plugin.tracks import TrackError, TrackLibrary, check_track_id, library_dir

from tests.plugin.helpers import files_in


@pytest.fixture
def two_tracks(tiny, cli, mlx_rag_home) -> list[str]:
    """Two tracks made by `music generate` in the library folder, the second one newer."""
    ids = []
    for n, prompt in enumerate(("calm piano", "epic brass")):
        result = cli("music", "generate", prompt, "--model", tiny, "--duration", "0.2",
                     "--seed", "3", "--json")
        assert result.exit_code == 0, result.output
        path = Path(json.loads(result.stdout)["path"])
        assert path.parent == mlx_rag_home / "music"
        os.utime(path, (1e9 + n, 1e9 + n))
        ids.append(path.name)
    return ids


def test_tracks_lists_the_library_newest_first(two_tracks, cli, mlx_rag_home):
    result = cli("music", "tracks")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "LENGTH", "MODEL", "CREATED", "PROMPT"]
    assert [line.split()[0] for line in lines[1:]] == two_tracks[::-1]
    assert "epic brass" in lines[1] and "0.2 s" in lines[1]
    assert f"2 track(s) in {mlx_rag_home / 'music'}" in result.stderr

    listed = json.loads(cli("music", "tracks", "--json").stdout)
    assert listed["folder"] == str(mlx_rag_home / "music")
    assert [t["id"] for t in listed["tracks"]] == two_tracks[::-1]
    newest = listed["tracks"][0]
    assert newest["prompt"] == "epic brass" and newest["seed"] == 3 and not newest["untrained"]
    assert newest["sidecar"]["reproduce"].startswith("mlx-rag music generate 'epic brass'")


def test_an_empty_library(cli, mlx_rag_home):
    result = cli("music", "tracks")
    assert result.exit_code == 0 and result.stdout == ""
    assert "No tracks in" in result.stderr and "mlx-rag music generate" in result.stderr
    assert json.loads(cli("music", "tracks", "--json").stdout)["tracks"] == []


def test_show_a_track(two_tracks, cli):
    result = cli("music", "tracks", "show", two_tracks[0])
    assert result.exit_code == 0, result.output
    assert "prompt     calm piano" in result.stdout
    assert "reproduce  mlx-rag music generate 'calm piano'" in result.stdout
    assert "normalize=loudness" in result.stdout
    record = json.loads(cli("music", "tracks", "show", two_tracks[0], "--json").stdout)
    assert record["id"] == two_tracks[0] and record["sidecar"]["seed"] == 3


def test_an_old_sidecar_name_is_read(tiny, cli, tmp_path):
    folder = tmp_path / "old"
    result = cli("music", "generate", "harp", "--model", tiny, "--duration", "0.2",
                 "-o", folder / "a.wav", "--json")
    assert result.exit_code == 0, result.output
    (folder / "a.wav.json").rename(folder / "a.json")  # as earlier versions named it
    record = json.loads(cli("music", "tracks", "--dir", folder, "show", "a.wav", "--json").stdout)
    assert record["prompt"] == "harp" and record["sidecar_file"] == "a.json"
    removed = cli("music", "tracks", "rm", "a.wav", "--dir", folder)
    assert removed.exit_code == 0 and removed.stdout == "Removed a.wav, a.json\n"
    assert files_in(folder) == []


def test_rm_removes_the_audio_and_its_sidecar(two_tracks, cli, mlx_rag_home):
    result = cli("music", "tracks", "rm", two_tracks[0])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Removed {two_tracks[0]}, {two_tracks[0]}.json\n"
    assert files_in(mlx_rag_home / "music") == [two_tracks[1], f"{two_tracks[1]}.json"]


@pytest.mark.parametrize(("args", "message"), [
    (["show", "nothing.wav"], "No track 'nothing.wav' in"),
    (["rm", "nothing.wav"], "No track 'nothing.wav' in"),
    (["show", "../config.toml"], "'../config.toml' is not a track id"),
    (["rm", "/etc/passwd"], "'/etc/passwd' is not a track id"),
    (["show", ".hidden.wav"], "'.hidden.wav' is not a track id"),
])
def test_unknown_and_malformed_ids_are_clear_errors(two_tracks, cli, mlx_rag_home, args,
                                                    message):
    result = cli("music", "tracks", *args)
    assert result.exit_code == 1 and f"Error: {message}" in result.stderr, result.output
    assert "Traceback" not in result.output
    assert len(files_in(mlx_rag_home / "music")) == 4


def test_rm_checks_every_id_before_removing_any(two_tracks, cli, mlx_rag_home):
    result = cli("music", "tracks", "rm", two_tracks[0], "nothing.wav")
    assert result.exit_code == 1 and "No track 'nothing.wav'" in result.stderr
    assert len(files_in(mlx_rag_home / "music")) == 4


def test_the_library_folder_follows_tools_music_output(configure, tmp_path, mlx_rag_home):
    assert library_dir() == mlx_rag_home / "music"
    configure(f'[tools.music]\noutput = "{tmp_path}/mine/"\n')
    assert library_dir() == tmp_path / "mine"
    configure(f'[tools.music]\noutput = "{tmp_path}/one.wav"\n')  # a file: not a library
    assert library_dir() == mlx_rag_home / "music"


@pytest.mark.parametrize("track_id", ["a.wav", "20260101-120000-lofi-piano-2.flac", "B_1.ogg"])
def test_track_ids(track_id):
    assert check_track_id(track_id) == track_id


@pytest.mark.parametrize("track_id", ["../a.wav", "a/b.wav", ".a.wav", "a.mp3", "a.wav.json",
                                      "a..b.wav", "", "a.wav\n", "a b.wav", "x" * 300 + ".wav",
                                      "\\a.wav", "C:a.wav", None, 3])
def test_what_is_not_a_track_id(track_id, tmp_path):
    with pytest.raises(TrackError, match="is not a track id") as raised:
        TrackLibrary(tmp_path).get(track_id)
    assert not raised.value.missing


def test_links_folders_and_temporary_files_are_not_tracks(tmp_path):
    (tmp_path / "real.wav").write_bytes(b"RIFF")
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "link.wav").symlink_to(tmp_path / "real.wav")
    (tmp_path / ".real.wav.0123abcd-1-0123abcd.part").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [t.id for t in TrackLibrary(tmp_path).tracks()] == ["real.wav"]
    with pytest.raises(TrackError) as raised:
        TrackLibrary(tmp_path).get("link.wav")
    assert raised.value.missing
