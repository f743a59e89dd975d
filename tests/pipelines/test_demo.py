"""`make demo` (pipelines.demo) end to end on a small fleet, twice: it succeeds, prints the catalog
summary and the analyst query, re-ingests days that received forwarded late records, and a second
run prints exactly the same figures (the README command is idempotent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_demo_runs_and_is_idempotent(tmp_path):
    first = _demo(tmp_path / "demo")
    assert "daily_ingest 2026-03-07: ok" in first and "FAILED" not in first
    assert "received late records forwarded from a later day: ingesting it again" in first
    table = _figures(first)
    assert any(line.startswith("│ 2026-03-05") for line in table) and any("F00" in line for line in table)
    assert (tmp_path / "demo" / "warehouse" / "gridlake.duckdb").exists()
    assert _figures(_demo(tmp_path / "demo")) == table
