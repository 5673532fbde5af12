"""The house's layers hold (pyproject.toml's [tool.importlinter] contracts, drawn in docs/layers.md), and the check
is one that can fail: on a copy of the tree, an import that runs back up, one between the two edges, and a circle
each break a contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mhogo", "producers", "workers", "core", "ml", "schemas")
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root` (first on the path, so a copy is read instead of the tree)."""
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "COLUMNS": "250"}  # wide: one contract a line
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The packages' Python files and the contracts, without the weights and photos."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pt",
                        "*.onnx", "*.png", "*.json", "*.html", "*.md"))  # fmt: skip
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "contract", "shown"),
    [
        (
            "core/jobs.py",
            "from producers import intake",
            "each imports only those below it",
            "core.jobs -> producers.intake",
        ),
        ("ml/quality.py", "from core import config", "each imports only those below it", "ml.quality -> core.config"),
        (
            "producers/demo.py",
            "from workers import app",
            "each imports only those below it",
            "producers.demo -> workers.app",
        ),
        (
            "producers/api/charts.py",
            "from producers.api import dashboard",
            "No import cycles",
            "No cycles are allowed in producers.api",
        ),
        ("ml/imaging.py", "import redis", "ml imports no Celery", "ml.imaging -> redis"),
        (
            "mhogo/cli/devices.py",
            "from mhogo.cli import main",
            "never import the package",
            "mhogo.cli.devices -> mhogo.cli",
        ),
    ],
    ids=["backwards", "ml-on-core", "edge-to-edge", "circle", "ml-impure", "cli-circle"],
)
def test_a_wrong_import_breaks_a_contract(copy: Path, module: str, line: str, contract: str, shown: str) -> None:
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(copy)
    assert done.returncode != 0, done.stdout
    broken = [row for row in done.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), done.stdout
    assert shown in done.stdout, done.stdout
