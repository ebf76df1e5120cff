"""`mlx-rag plugins list`."""

from __future__ import annotations

import click

from rag_core.cli.output import echo_json
from rag_core.plugins import KINDS, PluginRecord, get_host


@click.group("plugins")
def plugins_group() -> None:
    """Installed plugins: enabled, disabled or broken, and what each registered."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_plugins(as_json: bool) -> None:
    """List plugins with version, status and registrations (models, tools, commands)."""
    records = list(get_host().records.values())
    if as_json:
        echo_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("No plugins installed.")
    for record in records:
        _echo_record(record)


def _echo_record(record: PluginRecord) -> None:
    builtin = " (built-in)" if record.builtin else ""
    click.echo(f"{record.name} {record.version}{builtin}: {record.status}")
    if record.status == "disabled":
        click.echo(f"  {record.error}")
        return
    if record.status == "broken":
        click.echo(f"  error: {record.error}")
        return
    registered = [(kind, getattr(record, kind)) for kind in KINDS if getattr(record, kind)]
    for kind, names in registered:
        click.echo(f"  {kind}: {', '.join(names)}")
    if not registered:
        click.echo("  registers nothing")
