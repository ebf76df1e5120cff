"""docs/musicgen.md documents every tool option, sidecar field and command option."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from musicgen import GenerationOptions
from musicgen.plugin.cli import music_group
from musicgen.plugin.sidecar import sidecar
from musicgen.plugin.tool import run

DOC = (Path(__file__).parents[2] / "docs" / "musicgen.md").read_text()


def test_every_tool_option_is_in_the_options_table():
    options = list(inspect.signature(run).parameters)[1:]
    table = set(re.findall(r"^\| `(\w+)` \|", DOC, re.MULTILINE))
    assert set(options) <= table, set(options) - table


def test_every_sidecar_field_is_documented():
    record = {"prompt": "p", "model": "m", "seed": 1, "path": "/x/a.wav",
              "parameters": {**GenerationOptions(duration=1.0, seed=1).to_dict(),
                             "normalize": "peak", "dtype": "float32"}}
    for field in sidecar(record):
        assert f'"{field}"' in DOC, field
    for field in ("prompt_source", "model_source", "untrained", "notice", "duration",
                  "sample_rate", "channels", "timings", "sidecar", "format"):
        assert f"`{field}`" in DOC or f'"{field}"' in DOC, field


def test_every_command_option_is_documented():
    for name, command in music_group.commands.items():
        if name not in ("generate", "from-text", "demo"):
            continue  # commands added by other modules have their own docs
        assert f"mlx-rag music {name}" in DOC
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("--"):
                    assert f"`{flag}" in DOC or f"{flag}" in DOC, (name, flag)
