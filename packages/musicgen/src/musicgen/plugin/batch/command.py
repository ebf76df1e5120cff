"""`mlx-rag music batch JOBS --out DIR`: a thin command over ``musicgen.plugin.batch.run_batch``.

The plugin adds it to the `mlx-rag music` group (musicgen.plugin's register_commands).

Run it alone, or under ``mlx.launch`` (``mlx.launch -n 2 --backend ring -- mlx-rag music batch
...``): every process is one rank of ``mx.distributed`` and takes its share of the jobs.
Options left out fall back to ``[tools.music]`` in the config, then to the music tool's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rag_core import exit_code, interrupted_by, note, progress_bar

from musicgen.plugin.batch.jobs import Options
from musicgen.plugin.batch.plan import Agreement
from musicgen.plugin.batch.runner import BatchRun, Settings, Summary
from musicgen.plugin.cli import (
    apply_options,
    audio_flags,
    generation_flags,
    model_flags,
    prompt_options,
    settings,
)

AUDIO_SECONDS_BAR = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio "
                     "[{elapsed}<{remaining}]")


def batch_options(function):
    """The model's flags, the generation flags but --seed (each job has its own: given, or
    derived from its id and input) and the audio file's."""
    return apply_options(function, [*model_flags(), *generation_flags(exclude=("seed",)),
                             *audio_flags()])


def describe(summary: Summary) -> list[str]:
    """The closing lines of a run, as rank 0 prints them."""
    rate = summary.audio_seconds / summary.seconds if summary.seconds else 0.0
    lines = [
        f"Done: {summary.generated + summary.reused} of {summary.jobs} jobs finished "
        f"({summary.generated} generated now, {summary.reused} already done) in "
        f"{summary.seconds:.1f} s on {summary.size} process{'es' if summary.size > 1 else ''}; "
        f"{summary.audio_seconds:.1f} s of audio ({rate:.2f} s of audio per second)."
    ]
    if summary.untrained:
        lines.append(f"{summary.untrained} of these tracks come from the UNTRAINED smoke "
                     "checkpoint (random weights): noise, not music.")
    if summary.manifest:
        lines.append(f"Manifest: {summary.manifest}")
    if summary.bad:
        lines.append(f"Skipped {len(summary.bad)} bad line{'s' if len(summary.bad) > 1 else ''}: "
                     + ", ".join(str(b.line) for b in summary.bad) + ".")
    return lines


@click.command("batch")
@click.argument("jobs", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", "out", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the audio files, their sidecars and manifest.jsonl.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
              help="Jobs with the same options generated together in one call (default: as "
                   "many as fit in free GPU memory, up to 256; 8 on a CPU).")
@click.option("--strict", is_flag=True,
              help="Stop before any work if a job line is bad (default: report and skip it).")
@batch_options
@prompt_options
@click.option("-k", "k", type=click.IntRange(min=1), default=4, show_default=True,
              help="Passages retrieved for a job with a 'query'.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: only on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
def batch_command(jobs: Path, out: Path, batch_size: int, strict: bool, format_: str | None,
                  prompt_from: str | None, llm: str | None, k: int, progress: bool | None,
                  as_json: bool, **given) -> None:
    """Generate a track for every job in JOBS (a JSONL file) into the folder --out DIR.

    The generation options are the jobs' defaults; --normalize applies to every track.

    One JSON object per line: "prompt", "text" (the prompt is built from it) or "query"
    (retrieved from the store, then built into a prompt), and optionally "id", "model",
    "format" and any generation option ("duration", "seed", "guidance_scale", ...; see
    docs/distributed.md). Finished jobs are skipped, so rerunning after an interruption
    finishes only what is missing. Under `mlx.launch` every process takes a share of the jobs.
    """
    values = settings({**given, "format": format_, "prompt_from": prompt_from, "llm": llm})
    defaults = Options.of(**{name: values[name] for name in Options.NAMES if name != "format"},
                          format=values["format"] or "wav")
    run = Settings(jobs, out, defaults, batch_size, strict, k, values["prompt_from"],
                   values["llm"])
    agreement = Agreement()
    label = f"rank {agreement.rank}" if agreement.size > 1 else "batch"
    with progress_bar(label, progress, unit="s", bar_format=AUDIO_SECONDS_BAR) as on_progress:
        runner = BatchRun(run, agreement, log=note, on_progress=on_progress)
        try:
            summary = runner.run()
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
            interrupted = runner.interrupted(interrupted_by(exc))
            code = exit_code(exc)
        else:
            interrupted = None
    if interrupted is not None:  # after the bar is gone
        click.echo(interrupted, err=True)
        raise click.exceptions.Exit(code)
    if summary.rank == 0:
        if as_json:
            click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
        else:
            for line in describe(summary):
                click.echo(line)
    if summary.failed:
        raise click.ClickException(failure_message(summary.failed))


def failure_message(failed: list[dict]) -> str:
    """Failed jobs grouped by their error, with what to do next."""
    by_error: dict[str, list[str]] = {}
    for failure in failed:
        by_error.setdefault(failure["error"], []).append(f"{failure['id']} (line "
                                                         f"{failure['line']})")
    parts = [f"{', '.join(ids[:8])}{', ...' if len(ids) > 8 else ''}: {error}"
             for error, ids in by_error.items()]
    return (f"{len(failed)} job{'s' if len(failed) > 1 else ''} failed. " + " ".join(parts)
            + " Fix the cause and run the same command again: finished jobs are skipped.")

