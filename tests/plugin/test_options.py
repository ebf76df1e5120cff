"""One definition of a generation's options: the `mlx-rag music` flags, the `music` tool's
options, batch job fields and the sidecar's parameters are GenerationOptions' fields (plus
their own), and `min_p` goes through every one of them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import numpy as np
import pytest
from musicgen import option_fields
from musicgen.plugin.batch.jobs import JOB_FIELDS
from musicgen.plugin.cli import music_group
from rag_core import PipelineState, get_host, get_tool

from tests.plugin.helpers import read_audio

FIELDS = {f.name: f for f in option_fields()}
GENERATION = set(FIELDS)
MODEL = {"model", "quantize", "dtype"}
AUDIO = {"format_", "normalize"}
TRACK = {"output", "overwrite", "melody", "continue_from", "stream", "as_json"}
PROMPT_BUILDING = {"prompt_from", "llm"}
OWN = {  # each command's own parameters, besides the generation options
    "generate": {"prompt", *MODEL, *AUDIO, *TRACK},
    "from-text": {"file", "prompt_only", *PROMPT_BUILDING, *MODEL, *AUDIO, *TRACK},
    "demo": {"question", "store", "k", "smoke", *PROMPT_BUILDING, *MODEL, *AUDIO, *TRACK},
    "batch": {"jobs", "out", "batch_size", "strict", "k", "progress", "as_json",
              *PROMPT_BUILDING, *MODEL, *AUDIO},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OWN))
def test_each_command_has_a_flag_per_generation_option_and_its_own(name):
    get_host()  # the plugin adds `batch` to the group when it registers its commands
    command = music_group.commands[name]
    params = {p.name: p for p in command.params if p.name != "help"}
    expected = GENERATION - {"seed"} if name == "batch" else GENERATION  # a job has its seed
    assert set(params) == expected | OWN[name]
    for field in (FIELDS[n] for n in expected):
        param = params[field.name]
        assert isinstance(param, click.Option) and field.flag in param.opts
        assert param.metavar == field.metavar
        assert param.type == click.types.convert_type(field.type)
        assert field.help in param.help


def test_the_tool_takes_every_generation_option_and_its_own():
    names = get_tool("music").option_names()
    own = {"input", "text", "prompt", "prompt_from", "llm", "model", "output", "format",
           "normalize", "overwrite", "melody", "continue_from", "stream", "quantize", "dtype"}
    assert set(names) == GENERATION | own and len(names) == len(set(names))


def test_a_job_may_set_every_generation_option_and_its_own():
    assert set(JOB_FIELDS) == GENERATION | {"id", "prompt", "text", "query", "model", "format"}


def test_the_sidecar_records_every_generation_option_and_reproduces_each(tiny, out, cli):
    record = get_tool("music").run(PipelineState(), prompt="calm", model=str(tiny), seed=3,
                                   duration=0.2, min_p=0.25, extend_stride=12.5,
                                   output=str(out / "a.wav"))  # fmt: skip
    parameters = record["parameters"]
    assert set(parameters) == GENERATION | {"normalize", "dtype"}
    assert (parameters["min_p"], parameters["extend_stride"], parameters["seed"]) == (0.25, 12.5, 3)
    command = shlex.split(json.loads(Path(record["sidecar"]).read_text())["reproduce"])
    for field in FIELDS.values():
        assert field.type(command[command.index(field.flag) + 1]) == parameters[field.name]
    assert command[command.index("--dtype") + 1] == parameters["dtype"]
    command[command.index("--output") + 1] = str(out / "again.wav")
    result = cli(*command[1:])
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_audio(out / "again.wav")[0], read_audio(out / "a.wav")[0])


def test_min_p_end_to_end_cli_tool_batch_sidecar(tiny, out, cli, tmp_path):
    """min_p changes what is sampled, and every surface passes it on the same way: the CLI
    flag, the tool option and a batch job give the same audio for the same seed."""
    common = ("calm piano", "-m", tiny, "-d", "0.4", "--seed", "9", "--top-k", "0")
    result = cli("music", "generate", *common, "--min-p", "0.5", "-o", out / "cli.wav", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["parameters"]["min_p"] == 0.5
    assert "--min-p 0.5" in json.loads((out / "cli.wav.json").read_text())["reproduce"]
    assert cli("music", "generate", *common, "-o", out / "off.wav").exit_code == 0
    with_min_p = read_audio(out / "cli.wav")[0]
    assert not np.array_equal(with_min_p, read_audio(out / "off.wav")[0])

    get_tool("music").run(PipelineState(), prompt="calm piano", model=str(tiny), duration=0.4,
                          seed=9, top_k=0, min_p=0.5, output=str(out / "tool.wav"))
    assert np.array_equal(read_audio(out / "tool.wav")[0], with_min_p)

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "j", "prompt": "calm piano", "seed": 9, "min_p": 0.5})
                    + "\n")  # fmt: skip
    result = cli("music", "batch", jobs, "--out", out / "batch", "-m", tiny, "-d", "0.4",
                 "--top-k", "0", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_audio(out / "batch" / "j.wav")[0], with_min_p)
    sidecar = json.loads((out / "batch" / "j.wav.json").read_text())
    assert sidecar["parameters"]["min_p"] == 0.5 and "--min-p 0.5" in sidecar["reproduce"]


def test_the_tool_reports_progress_to_the_pipeline_state(tiny, out):
    reports = []
    state = PipelineState(progress=lambda done, total: reports.append((done, total)))
    get_tool("music").run(state, prompt="calm", model=str(tiny), duration=0.2, seed=1,
                          output=str(out / "p.wav"))  # fmt: skip
    assert reports and reports[-1][0] == reports[-1][1]
    assert [done for done, _ in reports] == list(range(1, len(reports) + 1))


def test_the_tool_refuses_unknown_options_and_seed_lists(tiny, out):
    run = get_tool("music").run
    with pytest.raises(TypeError, match="unexpected option 'min_q'"):
        run(PipelineState(), prompt="calm", model=str(tiny), min_q=0.1)
    with pytest.raises(ValueError, match="seed must be one integer for a track"):
        run(PipelineState(), prompt="calm", model=str(tiny), seed=[1, 2],
            output=str(out / "x.wav"))  # fmt: skip
