"""Import rules, checked by scanning the source (nothing is imported):

* ``orchestrator`` never imports ``ptycho`` and ``ptycho`` never imports ``orchestrator``;
* inside ``orchestrator`` imports point down the layers of docs/architecture.md (a layer may
  import its own modules and any lower layer, never a higher one or a sibling of equal rank);
* only ``orchestrator/vcs/repo.py`` imports GitPython or spells a ``git`` command line, and only
  ``vcs/`` modules (the gateway's topic classes) call its runner;
* docs/architecture.md names every orchestrator and ``dose_study`` module;
* ``dose_study`` sits on top of ``ptycho`` (neither ``ptycho`` nor ``orchestrator`` imports it);
* no Python file of the repository touches ``sys.path`` (every package is imported by its
  installed name).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "orchestrator"

#: Layers of ``orchestrator``, lowest first (docs/architecture.md, "Layers"). Keys are top-level
#: modules or packages; units of the same rank are siblings and may not import each other.
LAYERS: dict[str, int] = {
    "fsutil": 0, "layout": 0, "config": 0,
    "documents": 1,
    "vcs": 2,
    "records": 3,
    "execution": 4,
    "turns": 5,
    "agents": 6,
    "context": 7,
    "trust": 8,
    "cycle": 9,
    "sync": 10,
    "tools": 11,
    "report": 12,
    "cli": 13,
}
#: Entry points that only start the command line.
ENTRY_POINTS = ("orchestrator/__init__.py", "orchestrator/__main__.py", "orchestrator/report/__main__.py")
GIT_GATEWAY = "orchestrator/vcs/repo.py"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_modules(path: Path) -> set[str]:
    """Absolute dotted names imported by ``path`` (relative imports resolved)."""
    package = list(path.relative_to(ROOT).parts[:-1]) if path.is_relative_to(ROOT) else []
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
    return names


def _imported_top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)}


def _unit(dotted: str) -> str | None:
    """``orchestrator.vcs.repo`` → ``vcs``; None for the package itself."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "orchestrator" and len(parts) > 1 else None


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "templates" not in p.parts)


@pytest.mark.parametrize(("package", "forbidden"), [
    ("orchestrator", "ptycho"), ("ptycho", "orchestrator"),
    # the study sits on top of ptycho: nothing below imports it, and it never imports the harness
    ("ptycho", "dose_study"), ("orchestrator", "dose_study"), ("dose_study", "orchestrator"),
])
def test_packages_do_not_import_each_other(package: str, forbidden: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files found under {package}/"
    offenders = [str(p.relative_to(ROOT)) for p in files if forbidden in _imported_top_levels(p)]
    assert offenders == [], f"{package} must not import {forbidden}: {offenders}"


def test_import_scanner_detects_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom ptycho.model import build_model\n", encoding="utf-8")
    assert "ptycho" in _imported_top_levels(module)


def test_every_orchestrator_module_belongs_to_a_layer() -> None:
    units = {p.relative_to(PKG).parts[0].removesuffix(".py") for p in _modules()} - {"__init__", "__main__"}
    assert sorted(units - set(LAYERS)) == [], "new package or top-level module: give it a layer (LAYERS above)"


def _upward_imports(own: str, names: set[str]) -> list[str]:
    """Imported orchestrator modules of ``names`` that a module of unit ``own`` may not import."""
    bad = []
    for name in sorted(names):
        other = _unit(name)
        if other is not None and other != own and LAYERS.get(other, 99) >= LAYERS[own]:
            bad.append(f"{name} (layer {LAYERS.get(other)})")
    return bad


def test_orchestrator_imports_point_down_the_layers() -> None:
    offenders = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ENTRY_POINTS:
            continue
        own = path.relative_to(PKG).parts[0].removesuffix(".py")
        offenders += [f"{rel} ({own}, layer {LAYERS[own]}) imports {bad}"
                      for bad in _upward_imports(own, _imported_modules(path))]
    assert offenders == []


def test_layer_check_flags_upward_and_sibling_imports(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("from orchestrator.cycle.loop import run_loop\nimport orchestrator.turns.x\n"
                      "from orchestrator.documents import plan\nfrom orchestrator import fsutil\n"
                      "import orchestrator.layout\n")
    names = _imported_modules(module)
    assert _upward_imports("agents", names) == ["orchestrator.cycle.loop (layer 9)"]
    assert _upward_imports("turns", names) == ["orchestrator.cycle.loop (layer 9)"]
    assert _upward_imports("fsutil", names) == ["orchestrator.cycle.loop (layer 9)", "orchestrator.documents (layer 1)",
                                                "orchestrator.layout (layer 0)", "orchestrator.turns.x (layer 5)"]
    assert _upward_imports("cli", names) == []


def _spells_git_command(tree: ast.Module) -> bool:
    """A list/tuple literal starting with ``"git"`` (an argv) anywhere in the module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "git":
                return True
    return False


def test_only_the_git_gateway_runs_git() -> None:
    offenders = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel == GIT_GATEWAY:
            continue
        if "git" in _imported_top_levels(path) or _spells_git_command(_tree(path)):
            offenders.append(rel)
    assert offenders == []
    gateway = _tree(ROOT / GIT_GATEWAY)
    assert "git" in _imported_top_levels(ROOT / GIT_GATEWAY) and _spells_git_command(gateway)


def _uses_the_gateway_runner(tree: ast.Module) -> bool:
    """``<something>.git._run(…)`` / ``._git(…)``: the gateway's private runner."""
    return any(isinstance(node, ast.Attribute) and node.attr in ("_run", "_git")
               and isinstance(node.value, ast.Attribute | ast.Name)
               and getattr(node.value, "attr", getattr(node.value, "id", None)) == "git"
               for node in ast.walk(tree))


def test_only_vcs_topic_classes_use_the_gateway_runner() -> None:
    """``vcs/remote.py`` and ``vcs/signatures.py`` build git arguments and run them through
    ``GitRepo._run``; nothing outside ``vcs/`` may (it calls the gateway's public methods)."""
    offenders = [p.relative_to(ROOT).as_posix() for p in _modules()
                 if p.parent.name != "vcs" and _uses_the_gateway_runner(_tree(p))]
    assert offenders == []
    assert _uses_the_gateway_runner(_tree(PKG / "vcs" / "remote.py"))
    assert not _uses_the_gateway_runner(ast.parse("ctx.git.run_turn()\nself._run()"))


def test_git_command_detector_sees_an_argv(tmp_path: Path) -> None:
    assert _spells_git_command(ast.parse('subprocess.run(["git", "status"], check=False)'))
    assert not _spells_git_command(ast.parse('print(["gitignore", "git"])'))


def test_architecture_doc_names_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)*(?:\.py|/))`", text))
    missing = []
    for path in _modules():
        rel = path.relative_to(PKG)
        if rel.name in ("__init__.py", "__main__.py"):
            continue
        if rel.as_posix() not in named:
            missing.append(rel.as_posix())
    packages = {p.relative_to(PKG).as_posix() + "/" for p in PKG.iterdir() if (p / "__init__.py").exists()}
    assert missing == [] and sorted(packages - named) == []


def test_test_module_basenames_are_unique() -> None:
    """tests/ has no packages: pytest imports test modules by basename, so two test files with
    the same name in different folders break collection of the whole suite."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_every_orchestrator_folder_is_a_regular_package() -> None:
    """A folder without ``__init__.py`` imports as a namespace package from a checkout but is
    left out of an installed wheel (setuptools' package discovery skips it)."""
    folders = {p.parent for p in _modules()}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists()) == []


def test_architecture_doc_names_every_study_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_]+\.py)`", text))
    modules = sorted(p.name for p in (ROOT / "dose_study").glob("*.py") if p.name != "__init__.py")
    assert modules, "no dose_study modules found"
    assert [m for m in modules if m not in named] == []


def _touches_sys_path(tree: ast.Module) -> bool:
    """``sys.path`` read or written anywhere in the module (``sys.path.insert``, assignment, ...)."""
    return any(isinstance(node, ast.Attribute) and node.attr == "path"
               and isinstance(node.value, ast.Name) and node.value.id == "sys"
               for node in ast.walk(tree))


def test_no_module_edits_sys_path() -> None:
    """Packages are found by their installed names (``pip install -e .``): no script, benchmark
    or test reaches a package through a ``sys.path`` edit."""
    tops = ("ptycho", "orchestrator", "dose_study", "scripts", "benchmarks", "tests")
    files = [p for top in tops for p in sorted((ROOT / top).rglob("*.py"))]
    assert len(files) > 50
    assert [str(p.relative_to(ROOT)) for p in files if _touches_sys_path(_tree(p))] == []
    assert _touches_sys_path(ast.parse("import sys\nsys.path.insert(0, 'x')"))
    assert not _touches_sys_path(ast.parse("import os\nos.path.join('a', 'b')"))
