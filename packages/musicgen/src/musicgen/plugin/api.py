"""The musicgen plugin's part of `mlx-rag serve`: music jobs and the track library over HTTP.

    POST   /api/music                  {prompt | text | question, options} -> 202, a job
    GET    /api/music/options          the request fields, their types and defaults
    GET    /api/tracks                 the library, newest first, each track with its sidecar
    GET    /api/tracks/{id}            one track
    GET    /api/tracks/{id}/audio      its audio (HTTP Range requests, so players can seek)
    GET    /api/tracks/{id}/waveform   min, max and RMS per point, to draw it
    DELETE /api/tracks/{id}            remove its audio and sidecar

A music job runs in its model's lane (one generation at a time per model; further requests
queue) and goes through the `music` tool, as a pipeline's step would; ``GET /api/jobs/{id}``
follows it, and ``DELETE /api/jobs/{id}`` stops it without leaving a partial file (the audio
is written to a hidden temporary file, renamed into the library when complete).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rag_core import (
    HTTPError,
    PipelineState,
    get_config,
    get_jobs,
    get_registry,
    get_tool,
    job_accepted,
    read_json,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from musicgen.plugin import music_request
from musicgen.plugin.music_request import MusicRequest
from musicgen.plugin.outputs import write_json
from musicgen.plugin.tracks import Track, TrackError, TrackLibrary

MAX_POINTS = 4096


def library() -> TrackLibrary:
    """The server's track library (the folder is read from the config at each request)."""
    return TrackLibrary()


def track_json(track: Track) -> dict:
    """A track as the API shows it: the library's record and where to fetch its audio."""
    return {**track.to_dict(), "audio": f"/api/tracks/{track.id}/audio",
            "waveform": f"/api/tracks/{track.id}/waveform"}


@contextlib.contextmanager
def track_errors() -> Iterator[None]:
    """TrackError as the HTTP error naming the id: 404 for an unknown track, 400 for a
    malformed id."""
    try:
        yield
    except TrackError as exc:
        raise HTTPError(exc.http_status, str(exc), "id") from None


def find_track(track_id: str) -> Track:
    with track_errors():
        return library().get(track_id)


# ---- music jobs --------------------------------------------------------------------------------


def music_work(request: MusicRequest, folder: Path):
    """The job: answer the question if wanted, then the `music` tool; the finished track."""

    def work(ctx) -> dict:
        config = get_config()
        state = PipelineState(question=request.question, config=config)
        if request.source == "question":
            state.retrieved = request.passages or []
            state.answer = request.answer
            ctx.progress(0.0)
            music_request.answer(request, state)
            ctx.progress(0.0)  # cancelled while answering: stop before generating
        state.progress = ctx.progress
        record = get_tool("music").run(state, **request.options)
        track = TrackLibrary(folder).get(Path(record["path"]).name)
        if request.source == "question":
            track = with_rag_context(track, request)
        prompt_notes = (record.get("prompt_source") or {}).get("notes") or []
        return {"track": track_json(track), "notes": [*request.notes, *prompt_notes],
                "question": request.question, "answer": request.answer,
                "passages": request.passages}

    return work


def with_rag_context(track: Track, request: MusicRequest) -> Track:
    """Add to the track's sidecar what the server knows of where the music came from (the
    question, the answer and the passages), so the library can show it later."""
    if track.sidecar is None or track.sidecar_path is None:
        return track
    passages = [{k: p[k] for k in ("number", "id", "source", "lines", "score", "text") if k in p}
                for p in request.passages or []]
    sidecar = {**track.sidecar, "rag": {"question": request.question, "answer": request.answer,
                                        "passages": passages}}
    write_json(track.sidecar_path, sidecar)
    return TrackLibrary(track.path.parent).get(track.id)


async def music_endpoint(request: Request) -> Response:
    body = await read_json(request)
    folder = library()
    music = await run_in_threadpool(music_request.parse, body, folder)
    if music.source == "question" and music.passages is None:
        await run_in_threadpool(music_request.retrieve, music)
    job = get_jobs().submit(music_work(music, folder.folder), kind="music", key=music.lane,
                            info=music.info())
    return job_accepted(job)


async def options_endpoint(request: Request) -> Response:
    def describe() -> dict:
        fields = music_request.describe_fields()
        default = next(f["default"] for f in fields if f["name"] == "model")
        models = [{"id": s.id, "aliases": list(s.aliases), "description": s.description}
                  for s in get_registry().specs("music")]
        return {"fields": fields, "models": models, "default_model": default}

    return JSONResponse(await run_in_threadpool(describe))


# ---- the track library -----------------------------------------------------------------------


async def list_tracks(request: Request) -> Response:
    tracks = await run_in_threadpool(lambda: [track_json(t) for t in library().tracks()])
    return JSONResponse({"tracks": tracks})


async def get_track(request: Request) -> Response:
    track = await run_in_threadpool(find_track, request.path_params["id"])
    return JSONResponse(track_json(track))


async def track_audio(request: Request) -> Response:
    """The audio file; Starlette's FileResponse answers Range requests (206, or 416 with
    ``Content-Range: bytes */SIZE``) and conditional ones (ETag, Last-Modified)."""
    track = await run_in_threadpool(find_track, request.path_params["id"])
    # Cross-Origin-Resource-Policy: other web sites cannot even embed it in an <audio>.
    return FileResponse(track.path, media_type=track.media_type, filename=track.id,
                        content_disposition_type="inline",
                        headers={"Cross-Origin-Resource-Policy": "same-origin"})


async def delete_track(request: Request) -> Response:
    track_id = request.path_params["id"]

    def remove() -> list[Path]:
        with track_errors():
            return library().remove(track_id)

    removed = await run_in_threadpool(remove)
    return JSONResponse({"id": track_id, "removed": [p.name for p in removed]})


async def track_waveform(request: Request) -> Response:
    raw = request.query_params.get("points", "800")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_POINTS:
        raise HTTPError(400, f"'points' must be an integer from 1 to {MAX_POINTS}, got {raw!r}.",
                        "points")
    track = await run_in_threadpool(find_track, request.path_params["id"])
    return JSONResponse(await run_in_threadpool(waveform, track.path, int(raw)))


def waveform(path: Path, points: int) -> dict:
    """Per point (an equal share of the frames, all channels): the lowest and highest sample
    and the RMS, for drawing; and the duration. Read a point's frames at a time."""
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as audio:
            frames, rate, channels = audio.frames, audio.samplerate, audio.channels
            points = max(1, min(points, frames))
            bounds = np.linspace(0, frames, points + 1).astype(np.int64) if frames else []
            lows, highs, rms = [], [], []
            for start, end in itertools.pairwise(bounds):
                part = audio.read(int(end - start), dtype="float32", always_2d=True)
                lows.append(round(float(part.min()), 4))
                highs.append(round(float(part.max()), 4))
                rms.append(round(float(np.sqrt(np.mean(np.square(part)))), 4))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise HTTPError(409, f"{path.name} cannot be read as audio: {exc}.", "id") from None
    return {"duration": round(frames / rate, 4), "sample_rate": rate, "channels": channels,
            "points": len(lows), "min": lows, "max": highs, "rms": rms}
