"""Small output helpers shared by the CLI commands: JSON and aligned tables."""

from __future__ import annotations

import json
from typing import Any

import click


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (paths and other objects as strings)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def echo_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print rows in columns under upper-case headers."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [[h.upper() for h in headers], *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def short(value: Any, limit: int = 200) -> str:
    """A one-line rendering of a result value, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
