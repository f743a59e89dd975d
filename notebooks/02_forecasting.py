# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: gridlake (.venv)
#     name: python3
# ---

# %% [markdown]
# # 02 Forecasting: baselines and model comparison on one backtest
#
# The system load (sum of the feeders in `gold_load_hourly`) with the observed temperature, read through the
# DuckDB catalog, and every fast forecaster of `models.forecast` scored on the *same* trailing backtest
# (day-ahead, one origin a day over the last days), next to what the pipeline actually issued
# (`gold_load_forecast`). Run `make demo` first; then cell by cell, or whole:
# `.venv/bin/python notebooks/02_forecasting.py [--catalog warehouse/gridlake.duckdb] [--out notebooks/figures]`.
# prophet and the GRU are left out here for time (select them with `--models`).

# %%
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "notebooks"))
import argparse  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
from _nb import setup  # noqa: E402  (selects the Agg backend, puts the repo on sys.path)

from models.forecast import comparison_table, score_backtest, trailing_backtest  # noqa: E402
from models.forecast.data import InsufficientHistoryError  # noqa: E402
from models.forecast.factory import make_load_forecaster  # noqa: E402
from models.forecast.tables import with_temperature  # noqa: E402

sql, CATALOG, OUT, TZ = setup("Forecasting baselines and model comparison")
ap = argparse.ArgumentParser()
ap.add_argument("--models", default="seasonal_naive_daily,seasonal_naive_weekly,mstl,ensemble,xgboost")
ap.add_argument("--backtest-days", type=int, default=3)
opts, _ = ap.parse_known_args()
MODELS = opts.models.split(",")
HORIZON = pd.Timedelta(hours=24)

# %% [markdown]
# ## The series: system load and temperature, hourly

# %%
load = sql("""
    SELECT 'system' AS entity_id, period_start, sum(mean_kw) AS mean_kw
    FROM gold_load_hourly WHERE level = 'feeder' GROUP BY period_start ORDER BY period_start
""")
weather = sql("""
    SELECT date_trunc('hour', observation_time) AS observation_time, avg(temp_air_c) AS temp_air_c
    FROM silver_weather GROUP BY 1 ORDER BY 1
""")
series = with_temperature(load, weather).drop("entity_id").sort("period_start")
print(f"{series.height} hours, {series['period_start'].min()} .. {series['period_start'].max()}")
gaps = series.select((pl.col("period_start").diff() != pl.duration(hours=1)).sum()).item()
assert gaps == 0, f"{gaps} gaps in the hourly system load: forecasters need a regular series"
print(series.describe())

# %% [markdown]
# ## Every forecaster on the same trailing backtest
# Origins: the last `backtest_days` midnights before the end (UTC hour grid), each forecasting the next 24 h;
# refitted at the first origin and rolled forward with `update` after, as production does between retrains.

# %%
pdf = series.to_pandas()
frames, skipped = [], {}
for name in MODELS:
    make = make_load_forecaster(name, HORIZON, ("temp_air_c",) if name == "xgboost" else (), TZ, n_estimators=200)
    try:
        bt = trailing_backtest(make, pdf, HORIZON, opts.backtest_days)
    except InsufficientHistoryError as exc:  # e.g. MSTL wants 3 weeks before the first origin
        skipped[name] = str(exc)
        continue
    frames.append(bt)
    print(f"{name}: {bt.height} forecasts")
print(f"not enough history for: {skipped}" if skipped else "every forecaster ran")
bt = pl.concat(frames, how="diagonal_relaxed")
ranking = comparison_table(score_backtest(bt), rank_by="mape")
print(ranking)
assert ranking.height == len(MODELS) - len(skipped)
assert {"seasonal_naive_daily", "seasonal_naive_weekly", "xgboost"} - set(skipped) <= set(ranking["model"])

# %% [markdown]
# ## What the pipeline issued for the last day, against the metered load

# %%
issued = sql("""
    WITH f AS (
        SELECT *, max(issued_at) OVER (PARTITION BY entity_id, period_start) AS newest FROM gold_load_forecast
        WHERE entity_id = 'system' AND issued_at <= period_start - INTERVAL 1 HOUR
    )
    SELECT f.period_start, f.issued_at, f.model, f.model_version, f.p10, f.p50, f.p90, a.mean_kw AS actual_kw
    FROM f JOIN (SELECT period_start, sum(mean_kw) AS mean_kw FROM gold_load_hourly WHERE level = 'feeder' GROUP BY 1) a USING (period_start)
    WHERE f.issued_at = f.newest ORDER BY period_start
""")
print(
    issued.select(
        pl.len().alias("hours"),
        (100 * ((pl.col("p50") - pl.col("actual_kw")).abs() / pl.col("actual_kw")).mean()).alias("mape_pct"),
        (100 * pl.col("actual_kw").is_between(pl.col("p10"), pl.col("p90")).mean()).alias("p10_p90_coverage_pct"),
    )
)

# %%
fig, ax = plt.subplots(figsize=(10, 3.5))
last = bt.filter(pl.col("origin") == bt["origin"].max())
for (model,), g in last.sort("period_start").group_by("model", maintain_order=True):
    ax.plot(g["period_start"], g["p50"], lw=1, label=model)
truth = last.filter(pl.col("model") == MODELS[0]).sort("period_start")
ax.plot(truth["period_start"], truth["actual"], color="black", lw=2, label="metered")
ax.set_ylabel("kW")
ax.set_title("last backtest origin: every forecaster against the metered system load")
ax.legend(fontsize=7)
fig.autofmt_xdate()
fig.savefig(OUT / "forecaster_comparison.png", dpi=80)
print(f"figures in {OUT}")
