"""rag_core's top level is the whole API a plugin needs, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import rag_core

PLUGIN_API = [  # what the musicgen plugin uses, by area
    "hookimpl", "ModelSpec", "ModelPattern", "Tool", "Endpoint", "PageModule",  # registering
    "get_registry", "get_tool", "get_host", "get_jobs", "model_lane", "run_pipeline",
    "PipelineState", "get_config", "home_dir", "resolve_model_path", "looks_like_repo_id",
    "retrieve", "ingest_paths", "get_llm", "LanguageModel", "STOP_WORDS",
    "note", "progress_bar", "is_quiet", "short", "exit_code", "interrupted_by",  # CLI
    "read_json", "Fields", "HTTPError", "job_accepted",  # server
    "RagError", "ConfigError", "ModelNotFoundError", "ModelKindError", "ModelUnavailableError",
    "PipelineError",
]  # fmt: skip


def test_every_name_in_all_resolves_and_the_plugin_api_is_there():
    for name in rag_core.__all__:
        assert getattr(rag_core, name) is not None, name
    assert set(PLUGIN_API) <= set(rag_core.__all__) <= set(dir(rag_core))


def test_lazy_names_are_the_defining_modules_objects():
    from rag_core.cli.output import progress_bar
    from rag_core.retrieval import get_llm

    assert rag_core.progress_bar is progress_bar and rag_core.get_llm is get_llm


def test_unknown_names_are_attribute_errors():
    try:
        rag_core.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_import_rag_core_loads_neither_the_cli_nor_the_store_nor_the_web_stack():
    code = ("import sys, rag_core; print(sorted(m for m in ('rag_core.cli', 'rag_core.store', "
            "'numpy', 'starlette', 'tqdm') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    assert loaded == "[]"
