"""`mlx-rag run PIPELINE QUESTION`: run a configured pipeline and print each step's result."""

from __future__ import annotations

import click

from rag_core.cli.output import echo_json, short
from rag_core.pipeline import Step, run_record


@click.command("run")
@click.argument("pipeline")
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
def run_command(pipeline: str, question: str, as_json: bool) -> None:
    """Run the configured pipeline PIPELINE on QUESTION (see `mlx-rag config show`)."""
    done = 0

    def on_step(step: Step, result: dict, seconds: float) -> None:
        nonlocal done
        done += 1
        if as_json:
            return
        click.echo(f"[{done}] {step.name} (tool {step.tool.name}, plugin "
                   f"{step.tool.plugin}) {seconds:.2f} s")
        for key, value in result.items():
            click.echo(f"    {key}: {short(value)}")

    record = run_record(pipeline, question, on_step=on_step)
    if as_json:
        echo_json(record)
    elif record["answer"]:
        click.echo(f"\nAnswer: {record['answer']}")
