"""The one-way dependency rule: orchestrator never imports ptycho, ptycho never imports orchestrator."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [("orchestrator", "ptycho"), ("ptycho", "orchestrator")])
def test_packages_do_not_import_each_other(package: str, forbidden: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files found under {package}/"
    offenders = [str(p.relative_to(ROOT)) for p in files if forbidden in _imported_top_levels(p)]
    assert offenders == [], f"{package} must not import {forbidden}: {offenders}"


def test_import_scanner_detects_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom ptycho.model import build_model\n", encoding="utf-8")
    assert "ptycho" in _imported_top_levels(module)
