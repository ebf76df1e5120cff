"""Core test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.fakes import FakePlugins


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePlugins:
    root = tmp_path / "site"
    root.mkdir()
    plugins = FakePlugins(root, monkeypatch)
    yield plugins
    plugins.cleanup()
