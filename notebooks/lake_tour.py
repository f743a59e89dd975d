# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: gridlake (.venv)
#     name: python3
# ---

# %% [markdown]
# # A tour of the lake, the analyst's way
#
# Everything here is plain SQL on the DuckDB catalog (`warehouse/gridlake.duckdb`, one view per Delta
# table) -- the same queries work from any DuckDB 1.5.5 client or BI tool. Run `make demo` first.
#
# This file is a notebook in jupytext's *percent* format: open it in VS Code / Jupyter (with jupytext)
# cell by cell, or run it whole:
#
#     .venv/bin/python notebooks/lake_tour.py [--catalog warehouse/gridlake.duckdb] [--out notebooks/figures]
#
# It prints the tables and writes the figures as PNG files.

# %%
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd()
sys.path.insert(0, str(ROOT))
from contracts import load_profile  # noqa: E402
from lake.catalog import query  # noqa: E402

ap = argparse.ArgumentParser(description="A tour of the gridlake lake through its DuckDB catalog")
ap.add_argument("--catalog", default=os.environ.get("GRIDLAKE_CATALOG", str(ROOT / "warehouse" / "gridlake.duckdb")))
ap.add_argument("--out", default=str(ROOT / "notebooks" / "figures"), help="folder for the PNG figures")
args, _ = ap.parse_known_args()  # tolerate a notebook kernel's own arguments
CATALOG, OUT = args.catalog, Path(args.out)
OUT.mkdir(parents=True, exist_ok=True)
TZ = load_profile().timezone
pl.Config(tbl_rows=40, tbl_cols=12, tbl_width_chars=140, float_precision=2)


def sql(text: str, params: list | None = None) -> pl.DataFrame:
    return query(CATALOG, text, params)


# %% [markdown]
# ## What is in the catalog
# `catalog_tables` describes every column of every view (type, nullability, meaning).

# %%
tables = sql("""
    SELECT table_name, count(*) AS columns, any_value(table_description) AS description
    FROM catalog_tables GROUP BY table_name ORDER BY table_name
""")
print(tables)

# %% [markdown]
# ## Nothing is lost: counts reconcile, day by day
# Every record the meters sent (counted in the bronze file index) is in silver, in quarantine with a
# reason, or in quarantine as a duplicate of a record that was kept. Whole rejected files
# (`source_row = 0`) are counted apart.

# %%
recon = sql("""
    WITH b AS (SELECT date, sum(records) AS bronze_records FROM bronze_meter_readings_files GROUP BY date),
         s AS (SELECT date, count(*) AS silver_rows FROM silver_meter_readings GROUP BY date),
         q AS (SELECT date,
                      count(*) FILTER (WHERE source_row > 0 AND reason_code <> 'duplicate') AS quarantined,
                      count(*) FILTER (WHERE reason_code = 'duplicate') AS duplicates,
                      count(*) FILTER (WHERE source_row = 0) AS rejected_files
               FROM quarantine_meter_readings GROUP BY date)
    SELECT b.date, bronze_records, coalesce(silver_rows, 0) AS silver_rows,
           coalesce(quarantined, 0) AS quarantined, coalesce(duplicates, 0) AS duplicates,
           coalesce(rejected_files, 0) AS rejected_files,
           bronze_records - coalesce(silver_rows, 0) - coalesce(quarantined, 0) - coalesce(duplicates, 0) AS difference
    FROM b LEFT JOIN s USING (date) LEFT JOIN q USING (date) ORDER BY b.date
""")
print(recon)
bad = recon.filter(pl.col("difference") != 0)
if bad.height:
    raise SystemExit(f"counts do not reconcile on {bad['date'].to_list()}")
print(f"counts reconcile on all {recon.height} days: {int(recon['bronze_records'].sum()):,} records received")

# %% [markdown]
# ## Why records were quarantined
# One row per rejected record (or file), with the field and the raw record: the reason codes are
# declared in `contracts/`.

# %%
reasons = sql("""
    SELECT reason_code, field, count(*) AS n, any_value(detail) AS example
    FROM quarantine_meter_readings GROUP BY ALL ORDER BY n DESC
""")
print(reasons)

# %% [markdown]
# ## Feeder load, hour by hour (local time)

# %%
hourly = sql(f"""
    SELECT entity_id AS feeder, period_start AT TIME ZONE '{TZ}' AS local_hour, mean_kw, peak_kw
    FROM gold_load_hourly WHERE level = 'feeder' ORDER BY feeder, local_hour
""")
fig, ax = plt.subplots(figsize=(11, 4))
for feeder, part in hourly.group_by("feeder", maintain_order=True):
    ax.plot(part["local_hour"].to_list(), part["mean_kw"].to_list(), label=feeder[0], lw=1.2)
ax.set(title=f"Hourly mean load per feeder ({TZ})", ylabel="kW")
ax.legend(ncol=4, fontsize=8)
fig.autofmt_xdate()
fig.tight_layout()
fig.savefig(OUT / "feeder_load.png", dpi=110)
plt.close(fig)
print(f"wrote {OUT / 'feeder_load.png'}")

# %% [markdown]
# ## Evening peaks and transformer loading
# The evening window (17-21 h local) is where feeders run hottest; `loading_pct_max` is the worst
# transformer on the feeder against its rating.

# %%
peaks = sql(f"""
    SELECT entity_id AS feeder, max(peak_kw) AS evening_peak_kw, arg_max(period_start AT TIME ZONE '{TZ}', peak_kw) AS at,
           max(loading_pct_max) AS worst_transformer_loading_pct
    FROM gold_load_hourly
    WHERE level = 'feeder' AND hour(period_start AT TIME ZONE '{TZ}') BETWEEN 17 AND 21
    GROUP BY 1 ORDER BY 2 DESC
""")
print(peaks)

# %% [markdown]
# ## Voltage health per feeder and day
# Share of readings outside the 210-250 V band and the 5th-95th percentile spread.

# %%
health = sql("""
    SELECT date, feeder_id, n_readings, voltage_p05, voltage_p50, voltage_p95, pct_voltage_outside_210_250,
           transformers_over_80pct
    FROM gold_grid_health_daily ORDER BY date, feeder_id
""")
print(health)
pivot = health.pivot(on="feeder_id", index="date", values="pct_voltage_outside_210_250").sort("date")
fig, ax = plt.subplots(figsize=(8, 3.5))
im = ax.imshow(pivot.drop("date").to_numpy().T, aspect="auto", cmap="magma_r")
ax.set_yticks(range(pivot.width - 1), pivot.columns[1:], fontsize=8)
ax.set_xticks(range(pivot.height), [str(d) for d in pivot["date"]], rotation=45, fontsize=8)
ax.set_title("% of readings outside 210-250 V")
fig.colorbar(im, ax=ax)
fig.tight_layout()
fig.savefig(OUT / "voltage_outside_band.png", dpi=110)
plt.close(fig)
print(f"wrote {OUT / 'voltage_outside_band.png'}")
