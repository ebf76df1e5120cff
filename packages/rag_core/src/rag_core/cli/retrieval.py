"""`mlx-rag ingest`, `search` and `ask` (and the `store` group): thin wrappers over
rag_core.retrieval."""

from __future__ import annotations

from pathlib import Path

import click

from rag_core.answer import MAX_SEED, Sampling, answer, citations
from rag_core.cli import output
from rag_core.cli.output import display_path, echo_json
from rag_core.cli.signals import exit_code, interrupted_by
from rag_core.cli.store import STORE_OPTION, store_group
from rag_core.errors import ModelUnavailableError, RagError
from rag_core.retrieval import get_llm, ingest_paths, retrieve
from rag_core.search import MAX_K, MODES


def note(message: str) -> None:
    output.note(f"Note: {message}")


def location(passage: dict) -> str:
    start, end = passage["lines"]
    lines = f"{start}" if start == end else f"{start}-{end}"
    return f"{display_path(passage['source'])}:{lines}"


@click.command("ingest")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@STORE_OPTION
@click.option("--prune", is_flag=True, help="Remove documents whose files no longer exist.")
@click.option("--no-embed", is_flag=True, help="Do not embed (BM25 search only).")
def ingest_command(paths: tuple[Path, ...], store: Path | None, prune: bool, no_embed: bool):
    """Add files and folders (text, Markdown, HTML, plugin formats) to the store.

    Unchanged files are skipped, changed ones replaced; re-running never duplicates chunks.
    """
    done: dict[str, int] = {}  # outcome -> files, as each file's outcome is final

    def count(path: str, outcome: str) -> None:
        kind = outcome.split(":")[0]  # "skipped: why" counts as skipped
        done[kind] = done.get(kind, 0) + 1

    try:
        report = ingest_paths(paths, store=store, prune=prune, embed=not no_embed, note=note,
                              progress=not output.is_quiet(), on_file=count)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
        finished = ", ".join(f"{n} {outcome}" for outcome, n in done.items()) or "none"
        click.echo(f"{interrupted_by(exc)}: files finished before the stop: {finished}; "
                   "the store holds whole documents only. Run the same command again to "
                   "ingest the rest: unchanged files are skipped.", err=True)
        raise click.exceptions.Exit(exit_code(exc)) from None
    for path, reason in report.skipped:
        click.echo(f"Warning: skipped {display_path(path)}: {reason}", err=True)
    for path in report.pruned:
        click.echo(f"Pruned {display_path(path)}", err=True)
    click.echo(f"Ingested into {report.store}: {report.summary()}")
    if paths and not (report.added or report.updated or report.unchanged):
        raise RagError(
            "No documents were ingested: every file was skipped (see the warnings above)."
            if report.skipped else
            "No documents found to ingest in " + ", ".join(map(str, paths)) + "."
        )


@click.command("search")
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, MAX_K),
              help="How many results.")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
              help="auto: hybrid when the store has vectors and their model loads, else bm25.")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search_command(query: str, k: int, mode: str, store: Path | None, as_json: bool):
    """Find the chunks that best match QUERY, with score, source path and line range."""
    response = retrieve(query, k=k, mode=mode, store=store, note=None if as_json else note)
    if as_json:
        echo_json(response.to_dict())
        return
    if not response.results:
        click.echo(f"No matches for {query!r}.")
    for n, result in enumerate(response.results, 1):
        passage = result.to_dict()
        click.echo(f"{n}. {location(passage)}  ({response.mode} score {result.score:.4g})")
        click.echo("   " + _snippet(result.text))


@click.command("ask")
@click.argument("question")
@click.option("-k", "k", default=4, show_default=True, type=click.IntRange(1, MAX_K),
              help="How many passages to retrieve.")
@click.option("--no-llm", is_flag=True, help="Print the retrieved passages only.")
@click.option("--model", metavar="ID",
              help="LLM id, alias or local mlx-lm dir (default: [llm] model).")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--temp", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature (0: greedy).")
@click.option("--top-p", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--min-p", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", type=click.IntRange(0, MAX_SEED), help="Random seed for sampling.")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON when done (no streaming).")
def ask_command(question: str, k: int, no_llm: bool, model: str | None, max_tokens: int,
                temp: float, top_p: float, top_k: int, min_p: float, seed: int | None,
                store: Path | None, as_json: bool):
    """Answer QUESTION from the store's passages, citing them as [1], [2], ..."""
    sampling = Sampling(max_tokens, temp, top_p, top_k, min_p, seed)
    response = retrieve(question, k=k, store=store, note=None if as_json else note)
    passages = [r.to_dict() for r in response.results]
    if no_llm or not passages:
        if as_json:
            echo_json({"question": question, "answer": None, "passages": passages})
            return
        if not passages:
            click.echo(f"No passages match {question!r}; nothing to answer from.")
        _echo_passages(passages)
        return
    try:
        llm = get_llm(model)
    except ModelUnavailableError as exc:
        raise ModelUnavailableError(f"{exc} (`--no-llm` prints the passages without it.)") from exc
    if as_json:
        result = answer(llm, question, passages, sampling)
        echo_json({"question": question, **result.to_dict(), "passages": passages})
        return
    result = answer(llm, question, passages, sampling, on_text=lambda t: click.echo(t, nl=False))
    click.echo("\n")
    cited = citations(result.text, passages)
    if cited:
        click.echo("Sources:")
        for c in cited:
            click.echo(f"[{c.number}] {location(passages[c.number - 1])}")
    else:
        click.echo("The answer cites no passage. Retrieved:")
        _echo_passages(passages, text=False)


def _echo_passages(passages: list[dict], text: bool = True) -> None:
    for n, passage in enumerate(passages, 1):
        click.echo(f"[{n}] {location(passage)}")
        if text:
            click.echo("    " + _snippet(passage["text"], 600))


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def add_commands(cli: click.Group) -> None:
    """Attach the retrieval commands and the `store` group to the root CLI group."""
    for command in (ingest_command, search_command, ask_command, store_group):
        cli.add_command(command)
