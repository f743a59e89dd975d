"""What every analyst notebook starts with: its command-line options, the catalog, the figures folder,
the utility's time zone and ``sql()`` (plain SQL on the DuckDB catalog, a polars frame back).

    from _nb import setup
    sql, CATALOG, OUT, TZ = setup("what this notebook shows")
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import polars as pl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from contracts import load_profile  # noqa: E402
from lake.catalog import query  # noqa: E402


def setup(description: str) -> tuple[Callable[..., pl.DataFrame], str, Path, str]:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--catalog", default=os.environ.get("GRIDLAKE_CATALOG", str(ROOT / "warehouse" / "gridlake.duckdb"))
    )
    ap.add_argument("--out", default=str(ROOT / "notebooks" / "figures"), help="folder for the PNG figures")
    args, _ = ap.parse_known_args()  # tolerate a notebook kernel's own arguments
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pl.Config(tbl_rows=40, tbl_cols=12, tbl_width_chars=140, float_precision=3)

    def sql(text: str, params: list | None = None) -> pl.DataFrame:
        return query(args.catalog, text, params)

    return sql, args.catalog, out, load_profile().timezone
