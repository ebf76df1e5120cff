"""Both packages build their metadata without setuptools warnings (the license as SPDX)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_METADATA = """
import pathlib, sys, setuptools.build_meta as backend
folder = sys.argv[1]  # (setuptools rewrites sys.argv)
name = backend.prepare_metadata_for_build_wheel(folder)
print(pathlib.Path(folder, name, "METADATA").read_text(encoding="utf-8"))
"""


@pytest.mark.parametrize("package", ["rag_core", "musicgen"])
def test_metadata_builds_without_warnings(package, tmp_path):
    source = tmp_path / package  # a copy, so no build files land in the tree
    shutil.copytree(ROOT / "packages" / package, source,
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    (tmp_path / "meta").mkdir()
    result = subprocess.run([sys.executable, "-W", "always", "-c", BUILD_METADATA,
                             str(tmp_path / "meta")], cwd=source, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "License-Expression: MIT" in result.stdout
    assert "Warning" not in result.stderr and "license" not in result.stderr.lower(), (
        result.stderr)
