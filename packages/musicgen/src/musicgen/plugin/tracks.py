"""The track library: the audio files in the library folder, with their sidecars.

    library = TrackLibrary()                 # the library folder (see library_dir)
    for track in library.tracks():           # newest first
        print(track.id, track.sidecar["prompt"] if track.sidecar else "")
    library.get("20260101-120000-lofi-piano.wav").path
    library.remove("20260101-120000-lofi-piano.wav")   # the audio and its sidecar

A track's id is its file name in the library folder (``20260101-120000-lofi-piano.wav``):
letters, digits, ``._-``, ending in .wav, .flac or .ogg, never a path. Hidden files (the
temporary ``.part`` files of a generation in progress) are not tracks. `mlx-rag music tracks`
and the server's ``/api/tracks`` both read the library through this module.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag_core import RagError

from musicgen.plugin.outputs import (
    FORMATS,
    find_sidecar,
    output_folder,
    remove_stale_parts,
    sidecar_path,
)

TRACK_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,200}}\.(?:{'|'.join(FORMATS)})")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}


class TrackError(RagError):
    """A track id that is not valid, or names no track in the library (``missing``)."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing

    @property
    def http_status(self) -> int:
        """404 for a track not in the library, 400 for an id of the wrong form."""
        return 404 if self.missing else 400


def library_dir(config=None) -> Path:
    """The library folder: ``[tools.music] output`` when it names a folder, else the `music`
    folder in the mlx-rag data dir (where tracks go by default)."""
    from rag_core import get_config, home_dir

    output = (config or get_config()).tool_options("music").get("output")
    folder = output_folder(output) if isinstance(output, str) and output.strip() else None
    return folder or home_dir() / "music"


def check_track_id(track_id: Any) -> str:
    """``track_id`` if it has the form of a track id; TrackError otherwise."""
    if not isinstance(track_id, str) or not TRACK_ID.fullmatch(track_id) or ".." in track_id:
        shown = track_id if isinstance(track_id, str) else type(track_id).__name__
        raise TrackError(
            f"'{shown[:80]}' is not a track id: an id is a file name in the library, such as "
            "20260101-120000-lofi-piano.wav (see `mlx-rag music tracks`)."
        )
    return track_id


@dataclass(frozen=True)
class Track:
    """One audio file of the library and what its sidecar says (None without a sidecar)."""

    id: str
    path: Path
    sidecar_path: Path | None
    sidecar: dict | None
    bytes: int
    modified: float  # seconds since the epoch

    @property
    def format(self) -> str:
        return self.path.suffix[1:].lower()

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def to_dict(self) -> dict:
        """The track as the server and `tracks --json` show it: its id, file, the main facts
        (from the sidecar, else from the audio file) and the whole sidecar."""
        info = self.sidecar or _audio_info(self.path)
        return {
            "id": self.id,
            "file": self.path.name,
            "format": self.format,
            "bytes": self.bytes,
            "modified": datetime.fromtimestamp(self.modified, timezone.utc)
            .isoformat(timespec="seconds"),
            "created": (self.sidecar or {}).get("created"),
            "prompt": (self.sidecar or {}).get("prompt"),
            "model": (self.sidecar or {}).get("model"),
            "seed": (self.sidecar or {}).get("seed"),
            "duration": info.get("duration"),
            "sample_rate": info.get("sample_rate"),
            "channels": info.get("channels"),
            "untrained": bool((self.sidecar or {}).get("untrained", False)),
            "notice": (self.sidecar or {}).get("notice"),
            "sidecar_file": self.sidecar_path.name if self.sidecar_path else None,
            "sidecar": self.sidecar,
        }


def _audio_info(path: Path) -> dict:
    """Duration, rate and channels from the audio file itself (a track without a sidecar)."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError):
        return {}
    return {"duration": round(info.duration, 4), "sample_rate": info.samplerate,
            "channels": info.channels}


def _read_sidecar(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class TrackLibrary:
    """The tracks in ``folder`` (default: ``library_dir()``)."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else library_dir()

    def _track(self, entry: os.DirEntry | Path) -> Track | None:
        """The track of a directory entry, or None when it is not one (a hidden or temporary
        file, a folder, a link, another kind of file)."""
        name = entry.name
        if not TRACK_ID.fullmatch(name) or ".." in name:
            return None
        path = Path(entry)
        try:
            if path.is_symlink() or not path.is_file():
                return None
            stat = path.stat()
        except OSError:
            return None
        sidecar = find_sidecar(path)
        return Track(name, path, sidecar, _read_sidecar(sidecar), stat.st_size, stat.st_mtime)

    def tracks(self) -> list[Track]:
        """Every track, newest first (by the audio file's modification time, then id).

        Leftovers of generations whose process is gone (killed) are removed on the way."""
        if not self.folder.is_dir():
            return []
        remove_stale_parts(self.folder)
        with os.scandir(self.folder) as entries:
            found = [t for t in map(self._track, entries) if t is not None]
        return sorted(found, key=lambda t: (t.modified, t.id), reverse=True)

    def get(self, track_id: str) -> Track:
        """The track with this id; TrackError for a malformed id or one not in the library."""
        track = self._track(self.folder / check_track_id(track_id))
        if track is None:
            raise TrackError(f"No track '{track_id}' in {self.folder} (see `mlx-rag music "
                             "tracks` for the ids).", missing=True)
        return track

    def remove(self, track_id: str) -> list[Path]:
        """Remove a track: its audio file, then its sidecar(s). Returns the files removed."""
        track = self.get(track_id)
        removed = []
        try:
            track.path.unlink()
            removed.append(track.path)
            # its sidecar, and an older one (track.json) only when it describes this track
            for sidecar in dict.fromkeys((sidecar_path(track.path), track.sidecar_path)):
                if sidecar is not None and sidecar.is_file():
                    sidecar.unlink()
                    removed.append(sidecar)
        except OSError as exc:
            raise TrackError(f"Cannot remove {track.path.name}: {exc.strerror or exc}.") from None
        return removed
