# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: gridlake (.venv)
#     name: python3
# ---

# %% [markdown]
# # 01 Data exploration and quality: how complete and how clean is each feed?
#
# Plain SQL on the DuckDB catalog the demo wrote. `notebooks/lake_tour.py` shows the reconciliation and the
# quarantine reasons; this one asks how much of what *should* have arrived did: readings per meter and day
# against the meter's interval, SCADA samples per transformer, weather hours, and the days and meters where
# data went missing or was flagged. Run `make demo` first; then cell by cell, or whole:
# `.venv/bin/python notebooks/01_data_quality.py [--catalog warehouse/gridlake.duckdb] [--out notebooks/figures]`.

# %%
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "notebooks"))
import matplotlib.pyplot as plt  # noqa: E402
from _nb import setup  # noqa: E402  (selects the Agg backend, puts the repo on sys.path)

sql, CATALOG, OUT, TZ = setup("Data exploration and quality of the gridlake feeds")

# %% [markdown]
# ## Volumes per feed and day

# %%
volumes = sql("""
    SELECT date,
           (SELECT count(*) FROM silver_meter_readings m WHERE m.date = d.date) AS meter_readings,
           (SELECT count(*) FROM silver_scada s WHERE s.date = d.date)          AS scada_samples,
           (SELECT count(*) FROM silver_weather w WHERE w.date = d.date)        AS weather_obs,
           (SELECT count(*) FROM quarantine_meter_readings q WHERE q.date = d.date) AS quarantined_meter_records
    FROM (SELECT DISTINCT date FROM silver_meter_readings) d ORDER BY date
""")
print(volumes)
assert volumes.height > 0, "silver_meter_readings is empty: run `make demo` first"

# %% [markdown]
# ## Completeness: readings received against readings expected
# A meter with a 30-minute interval owes 48 readings a local day (46 or 50 on the DST days).

# %%
completeness = sql(
    """
    WITH expected AS (
        SELECT d.date, m.meter_id,
               round(date_diff('minute', d.date::TIMESTAMP AT TIME ZONE ?, (d.date + 1)::TIMESTAMP AT TIME ZONE ?)
                     / m.interval_minutes) AS expected
        FROM (SELECT DISTINCT date FROM silver_meter_readings) d CROSS JOIN ref_meters m
    ), got AS (SELECT date, meter_id, count(*) AS received FROM silver_meter_readings GROUP BY ALL)
    SELECT e.date, sum(e.expected)::BIGINT AS expected, sum(coalesce(g.received, 0))::BIGINT AS received,
           round(100.0 * sum(coalesce(g.received, 0)) / sum(e.expected), 3) AS complete_pct,
           count(*) FILTER (WHERE coalesce(g.received, 0) < e.expected) AS meters_short
    FROM expected e LEFT JOIN got g USING (date, meter_id)
    GROUP BY e.date ORDER BY e.date
""",
    [TZ, TZ],
)
print(completeness)
assert (completeness["received"] <= completeness["expected"]).all(), "more readings than a meter's interval allows"
worst = completeness.sort("complete_pct").head(3)
print(f"least complete days: {worst.select('date', 'complete_pct').rows()}")

# %%
fig, ax = plt.subplots(figsize=(10, 3))
ax.bar(completeness["date"], completeness["complete_pct"], color="tab:blue")
ax.set_ylim(max(0, completeness["complete_pct"].min() - 5), 100.5)
ax.set_ylabel("% of expected readings")
ax.set_title("meter feed completeness per local day (quarantined and lost records are the gap)")
fig.autofmt_xdate()
fig.savefig(OUT / "meter_completeness.png", dpi=80)

# %% [markdown]
# ## Where the gap went: quarantined per reason, per day

# %%
gap = sql("""
    SELECT date, reason_code, count(*) AS records FROM quarantine_meter_readings GROUP BY ALL ORDER BY date, records DESC
""")
print(gap.pivot(on="reason_code", index="date", values="records").fill_null(0))

# %% [markdown]
# ## SCADA and weather coverage

# %%
scada = sql("""
    SELECT date, count(DISTINCT transformer_id) AS transformers,
           round(count(*) / count(DISTINCT transformer_id), 1) AS samples_per_transformer,
           round(100.0 * count(*) FILTER (WHERE quality_flag <> 'ok') / count(*), 3) AS flagged_pct
    FROM silver_scada GROUP BY date ORDER BY date
""")
print(scada)
n_tx = sql("SELECT count(*) AS n FROM ref_transformers")["n"][0]
assert (scada["transformers"] <= n_tx).all()
weather = sql("""
    SELECT date, count(DISTINCT date_trunc('hour', observation_time)) AS hours, round(min(temp_air_c), 1) AS t_min,
           round(max(temp_air_c), 1) AS t_max, round(max(ghi_wm2)) AS ghi_max
    FROM silver_weather GROUP BY date ORDER BY date
""")
print(weather)
assert (weather["hours"] <= 25).all()

# %% [markdown]
# ## Flags in the meter feed: voltage outside 210-250 V and readings far above the meter's average

# %%
flags = sql("""
    SELECT date, count(*) FILTER (WHERE quality_flag = 'warning') AS voltage_warnings,
           count(*) FILTER (WHERE quality_flag = 'anomaly') AS anomalies,
           round(100.0 * count(*) FILTER (WHERE quality_flag <> 'ok') / count(*), 3) AS flagged_pct
    FROM silver_meter_readings GROUP BY date ORDER BY date
""")
print(flags)
top = sql("""
    SELECT meter_id, count(*) FILTER (WHERE quality_flag <> 'ok') AS flagged, count(*) AS readings
    FROM silver_meter_readings GROUP BY meter_id ORDER BY flagged DESC, meter_id LIMIT 10
""")
print(top)
fig, ax = plt.subplots(figsize=(10, 3))
ax.plot(flags["date"], flags["voltage_warnings"], marker=".", label="voltage outside 210-250 V")
ax.plot(flags["date"], flags["anomalies"], marker=".", label="> 3x the meter's average")
ax.set_ylabel("readings")
ax.legend()
fig.autofmt_xdate()
fig.savefig(OUT / "meter_flags.png", dpi=80)
print(f"figures in {OUT}")
