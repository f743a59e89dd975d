# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: gridlake (.venv)
#     name: python3
# ---

# %% [markdown]
# # 03 Anomalies and transformer risk, against the recorded incidents
#
# The grid models score each day into `gold_anomaly_scores`, `gold_alerts` and `gold_transformer_risk`.
# The simulator recorded what really happened (`truth_events`: stuck and zero meters, theft, voltage sags,
# transformer failures), so here the alerts are checked against it, in plain SQL on the DuckDB catalog.
# Run `make demo` first; then cell by cell, or whole:
# `.venv/bin/python notebooks/03_anomalies_and_risk.py [--catalog warehouse/gridlake.duckdb] [--out notebooks/figures]`.

# %%
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "notebooks"))
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from _nb import setup  # noqa: E402  (selects the Agg backend, puts the repo on sys.path)

sql, CATALOG, OUT, TZ = setup("Anomalies and transformer risk against the recorded incidents")


scored = sql(
    "SELECT date, asset_type, count(*) AS points, count(*) FILTER (WHERE status <> 'normal') AS above_normal FROM gold_anomaly_scores GROUP BY ALL ORDER BY ALL"
)
assert scored.height, "gold_anomaly_scores is empty: run `make demo` (or the grid_ml_scoring job) first"
print(scored)

# %% [markdown]
# ## Which alerts point at a recorded incident?
# An alert *hits* when the same asset had an incident overlapping the alert's window. A meter under a failed
# transformer reads zero too, so meter alerts are also matched to their transformer's failure.

# %%
matched = sql("""
    WITH a AS (SELECT * FROM gold_alerts),
    incident AS (
        SELECT e.event_type, e.asset_type, e.asset_id, e.start_time, coalesce(e.end_time, e.start_time + INTERVAL 1 HOUR) AS end_time
        FROM truth_events e
        UNION ALL  -- a failed transformer's meters read zero: their alerts point at the failure
        SELECT e.event_type, 'meter', m.meter_id, e.start_time, coalesce(e.end_time, e.start_time + INTERVAL 1 HOUR)
        FROM truth_events e JOIN ref_meters m ON m.transformer_id = e.asset_id WHERE e.event_type = 'transformer_failure'
    )
    SELECT a.date, a.asset_type, a.asset_id, a.rule, a.severity, a.score, a.window_start, a.window_end,
           string_agg(DISTINCT i.event_type, ',') AS incident
    FROM a LEFT JOIN incident i
      ON i.asset_type = a.asset_type AND i.asset_id = a.asset_id AND i.start_time <= a.window_end AND i.end_time >= a.window_start
    GROUP BY ALL ORDER BY a.date, a.asset_type, a.score DESC
""")
print(matched.select("date", "asset_type", "asset_id", "rule", "severity", "score", "incident"))
precision = (
    matched.group_by("asset_type", "rule")
    .agg(pl.len().alias("alerts"), pl.col("incident").is_not_null().sum().alias("hit_incident"))
    .sort("asset_type", "rule")
)
print(precision.with_columns((pl.col("hit_incident") / pl.col("alerts")).alias("precision")))

# %% [markdown]
# ## Which incidents of the scored days were alerted?

# %%
recall = sql("""
    WITH days AS (SELECT date, min(time) AS lo, max(time) AS hi FROM gold_anomaly_scores GROUP BY date)
    SELECT e.event_type, count(*) AS incidents,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM gold_alerts a WHERE a.asset_id = e.asset_id AND a.date = d.date
           )) AS alerted
    FROM truth_events e JOIN days d ON e.start_time <= d.hi AND coalesce(e.end_time, e.start_time) >= d.lo
    GROUP BY e.event_type ORDER BY e.event_type
""")
print(recall.with_columns((pl.col("alerted") / pl.col("incidents")).alias("recall")))
assert recall["alerted"].sum() <= recall["incidents"].sum()

# %% [markdown]
# ## Transformer risk: did the ranked transformers fail?
# For each transformer and scored day, the highest P(failure within 72 h) against whether a failure was
# recorded within 72 h of that day's first hour.

# %%
risk = sql("""
    WITH r AS (
        SELECT date, transformer_id, max(failure_probability_72h) AS p_max, min(as_of) AS first_hour,
               min(as_of) FILTER (WHERE status IN ('alert', 'critical')) AS first_alert
        FROM gold_transformer_risk GROUP BY ALL
    )
    SELECT r.date, r.transformer_id, r.p_max, f.start_time AS failed_at,
           f.start_time IS NOT NULL AS failed_within_72h,
           round(date_diff('minute', r.first_alert, f.start_time) / 60.0, 1) AS lead_h
    FROM r LEFT JOIN truth_events f
      ON f.event_type = 'transformer_failure' AND f.asset_id = r.transformer_id
     AND f.start_time >= r.first_hour AND f.start_time < r.first_hour + INTERVAL 72 HOUR
    ORDER BY r.date, r.p_max DESC
""")
print(risk.head(10))
failed = risk.filter(pl.col("failed_within_72h"))
print(
    f"{failed.height} transformer(s) failed within 72 h of a scored day; "
    f"rank of each among {risk['transformer_id'].n_unique()} by risk: "
    f"{[risk.filter(pl.col('date') == d)['transformer_id'].to_list().index(t) + 1 for d, t in failed.select('date', 'transformer_id').iter_rows()]}"
)

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.hist(
    risk.filter(~pl.col("failed_within_72h"))["p_max"],
    bins=20,
    range=(0, 1),
    alpha=0.6,
    label="no failure within 72 h",
    log=True,
)
if failed.height:
    ax.hist(failed["p_max"], bins=20, range=(0, 1), alpha=0.8, label="failed within 72 h", color="red", log=True)
ax.set_xlabel("max P(failure within 72 h) over the day")
ax.set_ylabel("transformer-days")
ax.legend()
fig.savefig(OUT / "risk_vs_failures.png", dpi=80)
print(f"figures in {OUT}")
