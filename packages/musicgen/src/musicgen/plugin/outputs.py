"""Where a track goes: its audio file, its sidecar, and the temporary files on the way.

Every track has a sidecar of its own, named after the whole audio file name: ``a.wav`` ->
``a.wav.json``, so ``a.wav`` and ``a.flac`` never share one. Sidecars of earlier versions
(``a.json``) are still read (``find_sidecar``). Neither file replaces an existing one unless
overwriting was asked for.

Audio and sidecars are written to hidden temporary files in the target folder and renamed
into place. A temporary file is hidden, ends in ``.part`` (so nothing that looks for
``*.wav`` or ``*.json`` takes it for a track or a sidecar) and carries its writer's host and
process id (``.a.wav.<host>-<pid>-<token>.part``): the first write into a folder removes the
leftovers of runs on this host whose process is gone (killed, say), never the file of a run
that is still writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from rag_core import RagError

from musicgen.errors import AudioError, InvalidArgumentError

FORMATS = ("wav", "flac", "ogg")
SIDECAR_SUFFIX = ".json"
PART = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.part")


class OutputExistsError(RagError):
    """The output file (or its sidecar's name) exists and overwriting was not asked for."""


def sidecar_path(audio: Path) -> Path:
    """The JSON sidecar of an audio file: track.wav -> track.wav.json."""
    return audio.with_name(audio.name + SIDECAR_SUFFIX)


def legacy_sidecar_path(audio: Path) -> Path:
    """Where earlier versions put the sidecar: track.wav -> track.json."""
    return audio.with_suffix(SIDECAR_SUFFIX)


def find_sidecar(audio: Path) -> Path | None:
    """The sidecar of ``audio``: ``track.wav.json``, else an older ``track.json`` that
    records this audio file; None when there is neither."""
    current = sidecar_path(audio)
    if current.is_file():
        return current
    legacy = legacy_sidecar_path(audio)
    return legacy if _describes(legacy, audio) else None


def _describes(sidecar: Path, audio: Path) -> bool:
    """Whether ``sidecar`` is a sidecar whose track is ``audio`` (by file name)."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and Path(str(data.get("path", ""))).name == audio.name


def output_folder(output: str | os.PathLike) -> Path | None:
    """The folder ``output`` names (it ends in a separator, or is an existing folder); None
    where it names a file."""
    path = Path(output).expanduser()
    return path if str(output).endswith(("/", os.sep)) or path.is_dir() else None


def output_path(output: str | os.PathLike | None, prompt: str, format: str | None) -> Path:
    """The audio file to write.

    ``output`` may be a file (its suffix sets the format), a folder (ending in a separator or
    existing) or None (the `music` folder in the mlx-rag data dir); in the last two cases the
    name is made from the time and the prompt.
    """
    from rag_core import home_dir

    if format is not None and format not in FORMATS:
        raise InvalidArgumentError(f"format must be one of {', '.join(FORMATS)}, got {format!r}.")
    if output is not None and not str(output).strip():
        raise InvalidArgumentError("output is empty: give a file name such as track.wav, or "
                                   "a folder.")  # fmt: skip
    folder = home_dir() / "music" if output is None else output_folder(output)
    if folder is None:
        path = Path(output).expanduser()
        if path.suffix.lower() in {f".{f}" for f in FORMATS}:
            suffix = path.suffix.lower()[1:]
            if format is not None and format != suffix:
                raise InvalidArgumentError(
                    f"output '{path.name}' is a .{suffix} file but format is '{format}': "
                    "change one of the two."
                )
            return path
        raise InvalidArgumentError(
            f"output '{output}' must end in .wav, .flac or .ogg, or be a folder (end it "
            "with '/' to create one)."
        )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "-".join(re.findall(r"[a-z0-9]+", prompt.lower())[:6])[:48] or "track"
    path = folder / f"{stamp}-{slug}.{format or 'wav'}"
    n = 1
    while path.exists() or sidecar_path(path).exists():  # a made-up name never replaces a file
        n += 1
        path = folder / f"{stamp}-{slug}-{n}.{format or 'wav'}"
    return path


def check_free(path: Path, overwrite: bool, when: str = "") -> None:
    """OutputExistsError when ``path`` or its sidecar's name is taken and not ``overwrite``."""
    if overwrite:
        return
    if path.exists():
        raise OutputExistsError(
            f"{path} {when or 'already exists'}: pass --overwrite (overwrite = true) to replace "
            "it, or choose another output." + (" Nothing was replaced." if when else "")
        )
    sidecar = sidecar_path(path)
    if sidecar.exists():
        raise OutputExistsError(
            f"{sidecar} {when or 'already exists'}, and it is the name of {path.name}'s "
            "sidecar: pass --overwrite (overwrite = true) to replace it, or choose another "
            "output." + (" Nothing was replaced." if when else "")
        )


# ---- temporary files ---------------------------------------------------------------------


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def part_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``, marked with this host and process (write
    audio to it with ``format=path.suffix``: its own suffix is ``.part``)."""
    token = secrets.token_hex(4)
    return path.with_name(f".{path.name}.{_host_tag()}-{os.getpid()}-{token}.part")


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows has no signal 0 to probe with
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def stale_parts(folder: Path) -> list[Path]:
    """Temporary files in ``folder`` whose writer, a process on this host, is gone."""
    host = _host_tag()
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
    except OSError:
        return []
    stale = []
    for name in names:
        match = PART.fullmatch(name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            stale.append(folder / name)
    return stale


CLEAN_EVERY_S = 60.0  # a batch writes many files into one folder: scan it now and then
_cleaned: dict[Path, float] = {}  # folder -> when this process last removed its leftovers
_cleaned_lock = threading.Lock()


def remove_stale_parts(folder: Path, *, again: bool = False) -> list[Path]:
    """Remove ``stale_parts(folder)`` (at most every CLEAN_EVERY_S seconds per folder and
    process, unless ``again``); return what was removed."""
    key, now = folder.resolve(), time.monotonic()
    with _cleaned_lock:
        last = _cleaned.get(key)
        if not again and last is not None and now - last < CLEAN_EVERY_S:
            return []
        _cleaned[key] = now
    removed = []
    for path in stale_parts(folder):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def reserve_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary file beside ``path`` (created now, so an unwritable folder fails before any
    work; see ``part_path``); removed on exit unless it was renamed to ``path``."""
    check_free(path, overwrite)
    if path.is_dir():
        raise InvalidArgumentError(f"{path} is a folder; give a file name for the audio.")
    # Not tempfile.mkstemp: its files are private (0600); this one gets the usual umask mode.
    tmp = part_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("xb").close()
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists()), None)
        why = (f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir()
               else exc.strerror or str(exc))  # fmt: skip
        raise AudioError(
            f"Cannot write {path}: {why}. Choose an output in a folder you can write to."
        ) from None
    remove_stale_parts(path.parent)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file (``part_path``),
    removed if anything fails, renamed into place; AudioError when it cannot be written."""
    tmp = part_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise AudioError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
