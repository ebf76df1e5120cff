"""`mlx-rag config show`: the effective configuration and where each value came from."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import click

from rag_core.cli.output import echo_json
from rag_core.config import get_config, home_dir
from rag_core.plugins import get_host


@click.group("config")
def config_group() -> None:
    """The effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(as_json: bool) -> None:
    """Print the effective config as TOML, each value marked with the file it came from."""
    config = get_config()
    get_host()  # loads the plugins and checks [tools.NAME] against the tools they registered
    env = {k: os.environ[k] for k in ("MLX_RAG_HOME", "MLX_RAG_LOAD_PLUGINS") if k in os.environ}
    if as_json:
        echo_json({
            "file": str(config.path) if config.path else None,
            "origin": config.origin,
            "home": str(home_dir()),
            "environment": env,
            "values": [{"key": ".".join((*table, key)), "value": value, "source": source}
                       for table, key, value, source in config.entries()],
        })
        return
    where = f"{config.path} (from {config.origin})" if config.path else config.origin
    click.echo(f"# Effective mlx-rag configuration. Config file: {where}")
    click.echo(f"# Data dir: {home_dir()}" + (" (from MLX_RAG_HOME)" if "MLX_RAG_HOME" in env
                                                  else ""))
    if "MLX_RAG_LOAD_PLUGINS" in env:
        click.echo(f"# MLX_RAG_LOAD_PLUGINS={env['MLX_RAG_LOAD_PLUGINS']!r} chooses the plugins "
                   "that load (it overrides [plugins]).")
    current = None
    for table, key, value, source in config.entries():
        if table != current:
            current = table
            click.echo(f"\n[{'.'.join(toml_key(part) for part in table)}]")
        click.echo(f"{toml_key(key)} = {toml_value(value)}  # {source}")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML literal for a parsed TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return value.isoformat() if hasattr(value, "isoformat") else json.dumps(str(value))
