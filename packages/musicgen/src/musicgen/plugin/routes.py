"""What the plugin adds to `mlx-rag serve` (see musicgen.plugin.api for the endpoints).

Kept free of the web stack: plugins load on every CLI call, and only a server imports
Starlette, at its first request to one of these endpoints.
"""

from __future__ import annotations

from pathlib import Path

from rag_core import Endpoint, PageModule

PAGE_MODULE = Path(__file__).with_name("static") / "music.js"
# (method, path, handler in musicgen.plugin.api, description)
ROUTES = (
    ("POST", "/api/music", "music_endpoint",
     "queue a track: {prompt | text | question, options} -> 202 with the job"),
    ("GET", "/api/music/options", "options_endpoint",
     "the music request's fields, their types and defaults, and the music models"),
    ("GET", "/api/tracks", "list_tracks", "the track library, newest first"),
    ("GET", "/api/tracks/{id}", "get_track", "a track and its sidecar"),
    ("DELETE", "/api/tracks/{id}", "delete_track", "remove a track: its audio and sidecar"),
    ("GET", "/api/tracks/{id}/audio", "track_audio", "a track's audio (HTTP Range requests)"),
    ("GET", "/api/tracks/{id}/waveform", "track_waveform",
     "a track's waveform: min, max and RMS per point"),
)  # fmt: skip


def _handler(name: str):
    """An endpoint that imports musicgen.plugin.api (and Starlette) when first called."""

    async def handle(request):
        from musicgen.plugin import api

        return await getattr(api, name)(request)

    handle.__name__ = handle.__qualname__ = name
    return handle


def routes() -> list[Endpoint | PageModule]:
    """The endpoints and the page module, for register_routes."""
    endpoints: list[Endpoint | PageModule] = [
        Endpoint(path, _handler(name), methods=(method,), description=about)
        for method, path, name, about in ROUTES
    ]
    return [*endpoints, PageModule(PAGE_MODULE)]
