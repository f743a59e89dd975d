"""`make demo` (pipelines.demo) end to end on a small fleet, twice: it succeeds, prints the catalog
summary and the analyst query, re-ingests days that received forwarded late records, and a second
run prints exactly the same figures (the README command is idempotent). The analysts' notebook
(notebooks/lake_tour.py) then runs on the demo's catalog: counts reconcile and the figures are drawn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo(home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDLAKE_", "DAGSTER_"))}
    p = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", "--meters", "40", "--days", "3", "--home", str(home)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def _figures(out: str) -> list[str]:
    """The printed tables (timestamps and timings removed)."""
    return [line for line in out[out.index("Summary from") :].splitlines() if line.startswith(("│", "┌", "└", "╞"))]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """One demo run (40 meters x 3 days) shared by the tests below: (its home, what it printed)."""
    home = tmp_path_factory.mktemp("demo") / "home"
    return home, _demo(home)


def test_demo_runs_and_is_idempotent(demo):
    home, first = demo
    assert "daily_ingest 2026-03-07: ok" in first and "FAILED" not in first
    assert "received late records forwarded from a later day: ingesting it again" in first
    table = _figures(first)
    assert any(line.startswith("│ 2026-03-05") for line in table) and any("F00" in line for line in table)
    assert (home / "warehouse" / "gridlake.duckdb").exists()
    assert _figures(_demo(home)) == table


def test_analyst_notebook_runs_on_the_demo_catalog(demo, tmp_path):
    home, _ = demo
    out = tmp_path / "figures"
    p = subprocess.run(
        [sys.executable, "notebooks/lake_tour.py", "--catalog", str(home / "warehouse" / "gridlake.duckdb"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "counts reconcile on all 3 days" in p.stdout
    for reason in ("missing_column", "duplicate", "late_data", "unknown_entity", "out_of_range"):
        assert f"│ {reason}" in p.stdout  # the simulator's faults are all accounted for, by reason
    for png in ("feeder_load.png", "voltage_outside_band.png"):
        assert (out / png).stat().st_size > 10_000
