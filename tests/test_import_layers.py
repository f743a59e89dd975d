"""The package layers, checked on the source tree with ast (every import, lazy ones inside functions too):
a package imports only packages of a lower layer (and itself); nothing imports ``pipelines``.

    contracts <- quality <- lake <- models / optimization / simulator <- streaming_bridge / reporting
              <- assets <- pipelines / benchmarks / notebooks
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYER = {
    "contracts": 0,  # table/source declarations, reason codes, time conventions, the utility profile
    "quality": 1,  # rules and suites about the data
    "lake": 2,  # storage, ingestion, gold, catalog
    "models": 3,
    "optimization": 3,
    "simulator": 3,  # a synthetic utility: a data source beside the libraries (writes the raw contract)
    "streaming_bridge": 4,  # scores live data with models
    "reporting": 4,  # the HTML report over gold tables and model plots
    "assets": 5,  # thin Dagster assets, their partitions and resources
    "pipelines": 6,  # Definitions, jobs, schedules, sensors, the demo runner: the top
    "benchmarks": 6,
    "notebooks": 6,
}


def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], node.lineno))
    return out


def _edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, file:line) for every import between gridlake packages."""
    edges = []
    for pkg in LAYER:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for top, line in _imports(f):
                if top in LAYER and top != pkg:
                    edges.append((pkg, top, f"{f.relative_to(ROOT)}:{line}"))
    return edges


def test_every_package_is_placed_in_a_layer():
    tops = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert tops <= set(LAYER), f"place these packages in LAYER: {sorted(tops - set(LAYER))}"


def test_packages_import_only_lower_layers():
    edges = _edges()
    assert edges, "no imports between packages found: the scan is broken"
    bad = [
        f"{where}: {src} (layer {LAYER[src]}) imports {dst} (layer {LAYER[dst]})"
        for src, dst, where in edges
        if LAYER[dst] >= LAYER[src]
    ]
    assert not bad, "\n".join(bad)


def test_nothing_imports_pipelines():
    bad = [where for src, dst, where in _edges() if dst == "pipelines"]
    assert not bad, bad


#: heavy libraries a process loading the Dagster definitions must not import (each ~0.5-2 CPU s; the code server,
#: `dagster definitions validate`, every run's and Celery worker's process load the definitions): they are
#: imported inside the functions that use them (docs/DECISIONS.md, "CI speed")
LAZY = ("mlflow", "sklearn", "scipy", "matplotlib", "pvlib", "torch", "statsmodels", "statsforecast", "prophet")


def test_loading_the_definitions_imports_no_heavy_library():
    import subprocess
    import sys

    code = "import sys, pipelines.definitions; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    p = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    loaded = set(p.stdout.split())
    assert "dagster" in loaded and "assets" in loaded, "the check did not load the definitions"
    assert not loaded & set(LAZY), f"imported at load time: {sorted(loaded & set(LAZY))}"
