"""`mlx-rag music generate | from-text | demo`: thin commands over musicgen.plugin.track and .demo.

The generation flags are made from ``musicgen.option_fields()``, one per GenerationOptions field
with its help and default, so every option of the library is a flag. Options left out fall back
to ``[tools.music]`` in the config, then to the music tool's defaults
(musicgen.plugin.options).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rag_core import ConfigError, exit_code, interrupted_by, note, progress_bar, short

from musicgen.audio import NORMALIZE_MODES
from musicgen.options import option_fields
from musicgen.plugin.demo import DEFAULT_DURATION
from musicgen.plugin.options import DTYPES, split_options, tool_defaults
from musicgen.plugin.outputs import FORMATS
from musicgen.plugin.prompt import PROMPT_FROM, MusicPrompt, build_prompt
from musicgen.plugin.track import make_track

SHORT_FLAGS = {"duration": ("-d",)}
DEFAULTS = tool_defaults()


def apply_options(function, options: list):
    """``function`` with click ``options``, the first of them shown first in the help."""
    for option in reversed(options):
        function = option(function)
    return function


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def generation_flags(exclude: tuple[str, ...] = (), **defaults: Any) -> list:
    """A click option per GenerationOptions field (``--guidance-scale X``), but ``exclude``:
    its type, metavar and help, and its default in the help (``defaults`` where a command has
    its own, as the demo's duration). Every flag defaults to None: the config, then the
    tool's default."""
    flags = []
    for field in option_fields():
        if field.name in exclude:
            continue
        default = defaults.get(field.name, field.default)
        help = field.help if default is None else f"{field.help} Default: {_shown(default)}."
        flags.append(click.option(field.flag, *SHORT_FLAGS.get(field.name, ()), field.name,
                                  type=field.type, metavar=field.metavar, help=help))
    return flags


def model_flags() -> list:
    """--model, --quantize and --dtype: the model and its precision."""
    return [
        click.option("--model", "-m", metavar="ID", help="Model id, alias or local MusicGen "
                     f"folder (default: {DEFAULTS['model']})."),
        click.option("--quantize", type=click.Choice(["4", "8"]), metavar="4|8",
                     callback=lambda ctx, param, value: None if value is None else int(value),
                     help="Bits per decoder weight: less memory (4 bits: musicgen-small in "
                          "about 0.5 GB) for a small quality loss; on a GPU about as fast as "
                          "float16, not faster (default: full precision)."),
        click.option("--dtype", type=click.Choice(["auto", *DTYPES]),
                     help="Compute type of the text encoder and the decoder: auto is float16 on "
                          f"a GPU (Metal, CUDA) and float32 on the CPU. Default: "
                          f"{DEFAULTS['dtype']}."),
    ]  # fmt: skip


def audio_flags() -> list:
    """--format and --normalize: how the audio file is written."""
    return [
        click.option("--format", "format_", type=click.Choice(FORMATS),
                     help="Audio format (default: wav; an --output file name sets its own)."),
        click.option("--normalize", type=click.Choice(NORMALIZE_MODES),
                     help="loudness: -14 LUFS (ITU-R BS.1770), true peak under -1 dBTP; "
                          "peak: loudest sample at -1 dBFS; rms: -20 dBFS RMS; clip: cut to "
                          "[-1, 1]; none: as generated (a .wav/.flac file still clips beyond "
                          f"[-1, 1], with a note). Default: {DEFAULTS['normalize']}."),
    ]  # fmt: skip


def single_track_options(function=None, /, **defaults):
    """Every option of a single track (`generate`, `from-text`, `demo`): the model's, the
    generation flags (with ``defaults`` in their help), the audio file's and the track's."""
    if function is None:
        return lambda function: single_track_options(function, **defaults)
    return apply_options(function, [
        *model_flags(),
        *generation_flags(**defaults),
        *audio_flags(),
        click.option("--output", "-o", metavar="PATH", help="Audio file (.wav, .flac, .ogg) or "
                     "folder (default: the music folder in the mlx-rag data dir)."),
        click.option("--overwrite", is_flag=True, default=None,
                     help="Replace the output file if it exists."),
        click.option("--melody", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                     help="Audio whose melody conditions the music (MusicGen-Melody models)."),
        click.option("--continue", "continue_from", type=click.Path(exists=True, dir_okay=False),
                     metavar="FILE", help="Audio to continue: the track starts with it "
                     "(--duration counts it)."),
        click.option("--stream", is_flag=True, default=None,
                     help="Write the .wav/.flac file while generating (clipped, not normalized)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON."),
    ])  # fmt: skip


def prompt_options(function):
    """--prompt-from and --llm: how a prompt is built from a text."""
    return apply_options(function, [
        click.option(
            "--prompt-from", type=click.Choice(PROMPT_FROM),
            help="auto: the LLM if it is available locally, else the cue extractor (default); "
                 "llm: the LLM (downloaded if needed); extract: the cue extractor.",
        ),
        click.option("--llm", metavar="ID",
                     help="LLM that describes the text (default: [llm] model)."),
    ])  # fmt: skip


def settings(given: dict) -> dict:
    """The options given on the command line over ``[tools.music]`` over the tool's defaults.

    ``[tools.music]``'s names were checked when the plugins loaded (rag_core checks every
    ``[tools.NAME]`` against its tool's options); a bad value there is a ConfigError naming
    the file."""
    from rag_core import get_config, get_host

    get_host()
    config = get_config()
    configured = config.tool_options("music")
    try:
        split_options(configured)
    except ValueError as exc:
        raise ConfigError(f"Invalid config in {config.source('tools.music')}: "
                          f"tools.music.{exc}") from None
    values = {**DEFAULTS, **configured}
    values.update({k: v for k, v in given.items() if v is not None})
    return values


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP: one clear line and exit code 128 + the signal (130 for
    Ctrl-C); the temporary audio file is already gone."""
    try:
        yield
    except KeyboardInterrupt as exc:
        click.echo(f"{interrupted_by(exc)}: generation stopped and no audio file was written.",
                   err=True)
        raise click.exceptions.Exit(exit_code(exc)) from None


def generate_and_report(prompt: MusicPrompt, values: dict, as_json: bool) -> dict:
    """make_track with a progress bar and status lines on stderr; print the result."""
    _, generation, track = split_options(values)
    with interruptible(), progress_bar("generating") as on_step:
        record = make_track(prompt, generation, track, on_step=on_step, on_status=note)
    if as_json:
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        echo_track(record)
    return record


def echo_track(record: dict) -> None:
    channels = {1: "mono", 2: "stereo"}.get(record["channels"], f"{record['channels']} ch")
    label = "  [UNTRAINED smoke checkpoint: noise, not music]" if record["untrained"] else ""
    click.echo(f"Wrote {record['path']} ({record['duration']:g} s, {record['sample_rate']} Hz, "
               f"{channels}; {record['model']}, seed {record['seed']}; "
               f"{record['timings']['total_s']:.1f} s){label}")  # fmt: skip
    click.echo(f"Sidecar: {record['sidecar']}")


def describe_prompt(prompt: MusicPrompt) -> str:
    how = {"given": "as given", "extract": "extracted from the cues of",
           "llm": f"described by {prompt.llm} from"}[prompt.builder]  # fmt: skip
    what = {"retrieved": f"{len(prompt.chunk_ids)} retrieved passage(s)",
            "text": ", ".join(prompt.sources) or "the text"}.get(prompt.input,
                                                                  f"the {prompt.input}")
    return f"Music prompt ({how}{'' if prompt.builder == 'given' else ' ' + what}): {prompt.text}"


@click.group("music")
def music_group() -> None:
    """Generate music with MusicGen (MLX) from a prompt, a text or the RAG demo."""


@music_group.command("generate")
@click.argument("prompt")
@single_track_options
def generate_command(prompt: str, as_json: bool, format_: str | None, **given) -> None:
    """Generate a track from PROMPT, such as "lofi piano with rain, slow tempo"."""
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty; describe the music.", param_hint="PROMPT")
    values = settings({**given, "format": format_})
    generate_and_report(MusicPrompt.given(prompt), values, as_json)


@music_group.command("from-text")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@prompt_options
@click.option("--prompt-only", is_flag=True, help="Print the music prompt and stop.")
@single_track_options
def from_text_command(file, prompt_from: str | None, llm: str | None, prompt_only: bool,
                      as_json: bool, format_: str | None, **given) -> None:
    """Generate a track from the music a text suggests (FILE, or - for standard input)."""
    try:
        text = file.read()
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{file.name} is not UTF-8 text ({exc.reason}).",
                                 param_hint="FILE") from None  # fmt: skip
    values = settings({**given, "format": format_, "prompt_from": prompt_from, "llm": llm})
    source = "<stdin>" if file.name in ("-", "<stdin>") else str(Path(file.name))
    if not text.strip():
        raise click.BadParameter(f"{source} has no text to make music from.", param_hint="FILE")
    with interruptible():
        prompt = build_prompt(text, prompt_from=values["prompt_from"], llm=values["llm"],
                              input="text", sources=[source])  # fmt: skip
    for line in prompt.notes:
        note(f"Note: {line}")
    if prompt_only:
        click.echo(json.dumps(prompt.to_dict(), indent=2) if as_json else prompt.text)
        return
    note(describe_prompt(prompt))
    generate_and_report(prompt, values, as_json)


@music_group.command("demo")
@click.option("--question", "-q", default=None, metavar="TEXT",
              help="What to ask the sample corpus (default: a question about a foggy harbour).")
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Store file for the corpus (default: demo/store.sqlite3 in the data dir).")
@click.option("-k", "k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Passages to retrieve.")
@click.option("--smoke", is_flag=True,
              help="Use the untrained smoke checkpoint at once (no download attempt).")
@prompt_options
@single_track_options(duration=DEFAULT_DURATION)
def demo_command(question: str | None, store: Path | None, k: int, smoke: bool,
                 prompt_from: str | None, llm: str | None, as_json: bool, format_: str | None,
                 **given) -> None:
    """The whole path on the bundled sample corpus: ingest, retrieve, prompt, generate.

    Writes a .wav and a JSON sidecar and prints where they are. When the model cannot be
    reached (offline, not cached) it says how to fix that and continues with an untrained
    smoke checkpoint, labelled as such.
    """
    from musicgen.plugin.demo import DEFAULT_QUESTION, run_demo

    if given.get("duration") is None:
        given["duration"] = DEFAULT_DURATION
    values = settings({**given, "format": format_, "prompt_from": prompt_from, "llm": llm})
    question = question or DEFAULT_QUESTION

    def on_step(name: str, result: dict) -> None:
        if as_json:
            return
        if name == "retrieve":
            click.echo(f"Question: {question}")
            click.echo(f"Retrieved ({result['mode']}):")
            for n, chunk in enumerate(result["chunks"], 1):
                start, end = chunk["lines"]
                click.echo(f"  [{n}] {Path(chunk['source']).name}:{start}-{end}  "
                           f"{short(chunk['text'], 90)}")  # fmt: skip
        elif name == "answer":
            click.echo(f"Answer: {result['answer']}")
        elif name == "music":
            click.echo(describe_prompt(MusicPrompt(**{**result["prompt_source"],
                                                      "text": result["prompt"]})))
            for line in result["prompt_source"]["notes"]:
                note(f"Note: {line}")
            echo_track(result)

    music = {k: v for k, v in values.items() if k not in ("input", "text", "prompt")}
    with interruptible():
        result = run_demo(question, store=store, k=k, smoke=smoke, say=note, on_step=on_step,
                          **music)  # fmt: skip
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    elif result["fallback"]:
        note("Reminder: this track comes from the UNTRAINED smoke checkpoint (noise, not "
             "music); see above for how to get the real model.")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(music_group())
