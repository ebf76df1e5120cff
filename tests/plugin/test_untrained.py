"""Anything made with the smoke checkpoint's weights is labelled UNTRAINED, quantized or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from musicgen.plugin.smoke import NOTICE, SMOKE_ID

LABEL = "[UNTRAINED smoke checkpoint: noise, not music]"


def assert_untrained(sidecar: Path) -> None:
    data = json.loads(sidecar.read_text())
    assert data["untrained"] is True and data["notice"] == NOTICE


@pytest.mark.parametrize("model", [("-m", SMOKE_ID, "--quantize", "4"),
                                   ("-m", SMOKE_ID, "--quantize", "8"),
                                   ("-m", f"{SMOKE_ID}@q4")], ids=["q4", "q8", "id@q4"])
def test_generate(cli, out, model):
    result = cli("music", "generate", "calm", *model, "-d", "0.2", "-o", out / "t.wav")
    assert result.exit_code == 0, result.output
    assert LABEL in result.stdout
    assert "is an UNTRAINED smoke checkpoint" in result.stderr
    assert_untrained(out / "t.wav.json")
    record = json.loads(cli("music", "generate", "calm", *model, "-d", "0.2", "-o",
                            out / "u.wav", "--json").stdout)  # fmt: skip
    assert record["untrained"] is True and record["notice"] == NOTICE


def test_demo_smoke_quantized(cli, out, tmp_path):
    result = cli("music", "demo", "--smoke", "--quantize", "8", "-d", "0.2", "-o",
                 out / "d.wav", "--store", tmp_path / "demo.sqlite3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert LABEL in result.stdout
    assert_untrained(out / "d.wav.json")


def test_the_tool_quantized(out):
    from rag_core import PipelineState, get_tool

    record = get_tool("music").run(PipelineState(), prompt="calm", model=SMOKE_ID, quantize=4,
                                   duration=0.2, output=str(out / "p.wav"))  # fmt: skip
    assert record["untrained"] is True and record["model_source"].endswith(SMOKE_ID)


@pytest.mark.parametrize("model", [("-m", SMOKE_ID), ("-m", SMOKE_ID, "--quantize", "8")],
                         ids=["full", "q8"])
def test_batch(cli, out, tmp_path, model):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": "calm", "seed": i}) + "\n"
                            for i in range(2)))  # fmt: skip
    result = cli("music", "batch", jobs, "--out", out, *model, "-d", "0.2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "2 of these tracks come from the UNTRAINED smoke checkpoint" in result.stdout
    assert "is an UNTRAINED smoke checkpoint" in result.stderr
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["untrained"] for e in entries] == [True, True]
    assert_untrained(out / "j0.wav.json")
    summary = json.loads(cli("music", "batch", jobs, "--out", out, *model, "-d", "0.2",
                             "--json").stdout)  # fmt: skip
    assert summary["untrained"] == 2 and summary["reused"] == 2
