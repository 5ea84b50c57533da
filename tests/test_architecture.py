"""The shape of the code (docs/DESIGN.md §1, §15): layers point one way, torch stays confined."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "geoseg"

#: Each package (or top-level module) and its layer: a module may import its own package and
#: lower layers only (not another package of its own layer). ``geoseg`` itself (``__version__``)
#: is importable from everywhere.
LAYERS = {
    "errors": 0,
    "crs": 0,
    "types": 1,
    "config": 1,
    "classes": 1,
    "executor": 1,
    "versions": 1,
    "catalog": 2,
    "tiling": 2,
    "io": 3,
    "model": 3,
    "export": 4,
    "vector": 4,
    "stitch": 5,
    "evaluation": 6,
    "analysis": 6,
    "annotation": 7,
    "training": 7,
    "workflow": 8,
    "api": 9,
    "view": 9,
    "cli": 10,
}
TORCH = ("torch", "torchvision", "timm", "segmentation_models_pytorch")


def _part(path: Path) -> str:
    """The package (or top-level module) a file belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a file, at any depth (lazy imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_package_has_a_layer() -> None:
    assert {_part(p) for p in SOURCES} == set(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_package_graph(path: Path) -> None:
    own = _part(path)
    upward = []
    for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] != "geoseg" or len(parts) == 1:
            continue
        if parts[1] != own and LAYERS[parts[1]] >= LAYERS[own]:
            upward.append(f"line {line}: {module}")
    assert not upward, f"{own} (layer {LAYERS[own]}) imports upwards: {upward}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_model_and_train_import_torch(path: Path) -> None:
    if _part(path) in ("model", "training"):
        return
    heavy = [f"line {line}: {m}" for line, m in _imports(path) if m.split(".")[0] in TORCH]
    assert not heavy, f"{path.relative_to(REPO)} imports {heavy}"


def test_planning_and_the_api_do_not_load_torch() -> None:
    code = (
        "import sys, geoseg, geoseg.api, geoseg.cli.main\n"
        "from geoseg.workflow.plan import plan_workflow\n"
        f"plan_workflow({str(REPO / 'workflows' / 'demo.yaml')!r})\n"
        "geoseg.load_model\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_workflow_modules_stay_small() -> None:
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in (PACKAGE / "workflow").rglob("*.py")
    }
    assert max(sizes.values()) <= 300, sizes
