"""`mlx-rag ingest`, `search` and `ask` (filled in by the retrieval work)."""

from __future__ import annotations

import click


def add_commands(cli: click.Group) -> None:
    """Attach the retrieval commands to the root CLI group."""
