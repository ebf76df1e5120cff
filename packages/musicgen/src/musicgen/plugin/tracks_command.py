"""`mlx-rag music tracks [show ID | rm ID]`: the track library from the command line (thin
commands over musicgen.plugin.tracks, which the server's /api/tracks reads too)."""

from __future__ import annotations

from pathlib import Path

import click
from rag_core import echo_json, echo_table, note, short

from musicgen.plugin.tracks import Track, TrackLibrary

FOLDER = click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
                      metavar="FOLDER", help="The library folder (default: [tools.music] output "
                      "when it is a folder, else the music folder in the mlx-rag data dir).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _label(track: dict) -> str:
    return "  [UNTRAINED]" if track["untrained"] else ""


@click.group("tracks", invoke_without_command=True)
@FOLDER
@JSON
@click.pass_context
def tracks_command(ctx: click.Context, folder: Path | None, as_json: bool) -> None:
    """The track library, newest first: `tracks`, `tracks show ID`, `tracks rm ID`."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = folder
        return
    library = TrackLibrary(folder)
    tracks = [t.to_dict() for t in library.tracks()]
    if as_json:
        echo_json({"folder": str(library.folder), "tracks": tracks})
        return
    if not tracks:
        note(f"No tracks in {library.folder} yet: make one with `mlx-rag music generate "
             "\"PROMPT\"`.")
        return
    rows = [[t["id"], _seconds(t["duration"]), t["model"] or "-", (t["created"] or
             t["modified"])[:19].replace("T", " "), short(t["prompt"] or "-", 60) + _label(t)]
            for t in tracks]  # fmt: skip
    echo_table(["id", "length", "model", "created", "prompt"], rows)
    note(f"{len(tracks)} track(s) in {library.folder}")


def _seconds(value) -> str:
    return "-" if value is None else f"{value:g} s"


@tracks_command.command("show")
@click.argument("track_id", metavar="ID")
@FOLDER
@JSON
@click.pass_obj
def show_command(group_folder: Path | None, track_id: str, folder: Path | None,
                 as_json: bool) -> None:
    """Show a track: its file, sidecar and how to make it again."""
    track = TrackLibrary(folder or group_folder).get(track_id)
    record = track.to_dict()
    if as_json:
        echo_json(record)
        return
    _echo_track(track, record)


def _echo_track(track: Track, record: dict) -> None:
    sidecar = record["sidecar"] or {}
    lines = [("id", record["id"]), ("file", str(track.path)),
             ("sidecar", str(track.sidecar_path) if track.sidecar_path else "none"),
             ("length", f"{_seconds(record['duration'])}, {record['sample_rate']} Hz, "
                        f"{record['channels']} channel(s), {record['bytes']} bytes"),
             ("prompt", record["prompt"] or "-")]  # fmt: skip
    source = sidecar.get("prompt_source") or {}
    if source:
        how = source.get("builder", "?")
        lines.append(("from", f"{source.get('input', '?')} ({how}"
                              + (f", {source['llm']}" if source.get("llm") else "") + ")"))
        for path in source.get("sources") or []:
            lines.append(("source", path))
    lines += [("model", record["model"] or "-"), ("seed", str(record["seed"]))]
    parameters = sidecar.get("parameters") or {}
    if parameters:
        lines.append(("options", ", ".join(f"{k}={v}" for k, v in parameters.items())))
    if record["created"]:
        lines.append(("created", record["created"]))
    if sidecar.get("reproduce"):
        lines.append(("reproduce", sidecar["reproduce"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key.ljust(width)}  {value}")
    if record["untrained"]:
        click.echo(f"Note: {record['notice'] or 'made by an UNTRAINED checkpoint'}")


@tracks_command.command("rm")
@click.argument("track_ids", metavar="ID...", nargs=-1, required=True)
@FOLDER
@click.pass_obj
def rm_command(group_folder: Path | None, track_ids: tuple[str, ...],
               folder: Path | None) -> None:
    """Remove tracks: each audio file and its sidecar."""
    library = TrackLibrary(folder or group_folder)
    tracks = [library.get(track_id) for track_id in track_ids]  # every id checked first
    for track in tracks:
        removed = library.remove(track.id)
        click.echo("Removed " + ", ".join(p.name for p in removed))
