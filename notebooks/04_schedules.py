# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: gridlake (.venv)
#     name: python3
# ---

# %% [markdown]
# # 04 Schedules and their savings: battery, EV charging, DC-OPF, unit commitment
#
# Plain SQL on the DuckDB catalog the demo wrote (`make demo`, then run this notebook cell by cell or whole:
# `.venv/bin/python notebooks/04_schedules.py [--catalog warehouse/gridlake.duckdb] [--out notebooks/figures]`).
# Every schedule table holds one `date` partition per scheduled day; prices and carbon are configuration
# (the utility profile's `tariffs`, contracts/profiles/demo.yaml), not market data.

# %%
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "notebooks"))
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from _nb import setup  # noqa: E402  (selects the Agg backend, puts the repo on sys.path)

sql, CATALOG, OUT, TZ = setup("Schedules and savings from the gridlake catalog")


days = sql("SELECT DISTINCT date FROM gold_battery_daily ORDER BY date")
assert days.height, "gold_battery_daily is empty: run `make demo` (or the optimization_daily job) first"
DAY = days["date"][-1]
print(f"scheduled days: {days['date'].to_list()}; looking at {DAY}")

# %% [markdown]
# ## Battery: what it saves, and where the saving comes from
# The baseline is the same site without the battery; savings = baseline energy + demand charge - (energy +
# demand charge + degradation). A battery must never cost more than doing nothing.

# %%
battery = sql("""
    SELECT date, site_id, power_kw, energy_kwh,
           baseline_energy_cost - energy_cost       AS energy_arbitrage,
           baseline_demand_charge - demand_charge   AS peak_shaving,
           -degradation_cost                        AS degradation,
           savings, baseline_peak_import_kw, peak_import_kw, equivalent_full_cycles,
           baseline_carbon_kg - carbon_kg           AS carbon_saved_kg
    FROM gold_battery_daily ORDER BY date
""")
print(battery)
assert (battery["savings"] >= -1e-6).all(), "a battery schedule costs more than no battery"
parts = battery.select(
    (pl.col("energy_arbitrage") + pl.col("peak_shaving") + pl.col("degradation") - pl.col("savings")).abs().max()
).item()
assert parts < 0.01, f"savings do not add up from their parts (off by {parts})"

# %%
sched = sql(
    """
    SELECT period_start AT TIME ZONE ? AS t, price_per_mwh, charge_kw, discharge_kw, soc_frac, grid_import_kw, baseline_grid_kw
    FROM gold_battery_schedule WHERE date = ? ORDER BY period_start
""",
    [TZ, DAY],
)
fig, (a, b) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
a.plot(sched["t"], sched["baseline_grid_kw"], label="import without battery", color="grey")
a.plot(sched["t"], sched["grid_import_kw"], label="import with battery", color="tab:blue")
a.set_ylabel("kW")
a.legend()
p = a.twinx()
p.step(sched["t"], sched["price_per_mwh"], where="post", color="black", lw=0.8)
p.set_ylabel("$/MWh")
b.plot(sched["t"], sched["soc_frac"], color="tab:green")
b.set_ylabel("state of charge")
fig.suptitle(f"battery on {DAY}: the import is moved out of the peak-price hours")
fig.savefig(OUT / "battery_import.png", dpi=80)
# charging happens when power is cheap: the mean price paid for charging is below that earned discharging
w = sched.select(
    ((pl.col("charge_kw") * pl.col("price_per_mwh")).sum() / pl.col("charge_kw").sum()).alias("charge_price"),
    ((pl.col("discharge_kw") * pl.col("price_per_mwh")).sum() / pl.col("discharge_kw").sum()).alias("discharge_price"),
)
print(w)
assert w["charge_price"][0] <= w["discharge_price"][0]

# %% [markdown]
# ## EV charging: optimal against EDF and uncontrolled, on the same sessions

# %%
ev = sql(
    """
    SELECT s.strategy, count(*) AS sessions, sum(requested_kwh) AS requested_kwh, sum(delivered_kwh) AS delivered_kwh,
           100 * sum(delivered_kwh) / sum(requested_kwh) AS delivered_pct, sum(unmet_kwh) AS unmet_kwh
    FROM gold_ev_sessions s WHERE date = ? GROUP BY s.strategy ORDER BY s.strategy
""",
    [DAY],
)
print(ev)
peaks = sql(
    """
    SELECT strategy, max(kw) AS peak_kw FROM (
        SELECT strategy, period_start, sum(power_kw) AS kw FROM gold_ev_schedule WHERE date = ? GROUP BY ALL
    ) GROUP BY strategy ORDER BY strategy
""",
    [DAY],
)
print(peaks)
e = {r["strategy"]: r for r in ev.join(peaks, on="strategy").to_dicts()}
assert e["optimal"]["delivered_kwh"] >= e["edf"]["delivered_kwh"] - 1e-6, "the optimum delivers less than EDF"

# %%
load = sql(
    """
    SELECT strategy, period_start AT TIME ZONE ? AS t, sum(power_kw) AS kw FROM gold_ev_schedule WHERE date = ?
    GROUP BY ALL ORDER BY strategy, t
""",
    [TZ, DAY],
)
fig, ax = plt.subplots(figsize=(10, 3.5))
for (strategy,), g in load.group_by("strategy", maintain_order=True):
    ax.step(g["t"], g["kw"], where="post", label=strategy)
ax.set_ylabel("EV site kW")
ax.legend()
ax.set_title(f"EV charging on {DAY}")
fig.savefig(OUT / "ev_strategies.png", dpi=80)

# %% [markdown]
# ## DC-OPF: cost and prices across the day
# The bus loads follow the shape of the system load forecast, solar and wind are capped at their forecasts (zero
# marginal cost), so the cost follows the net load; the LMP spread shows where congestion bites.

# %%
opf = sql(
    """
    SELECT period_start AT TIME ZONE ? AS t, any_value(load_scale) AS load_scale,
           sum(cost_per_h) FILTER (WHERE kind = 'system') AS cost_per_h,
           sum(p_mw * (1 - renewable_share)) FILTER (WHERE kind = 'system') AS net_load_mw,
           min(lmp) FILTER (WHERE kind = 'bus') AS lmp_min, max(lmp) FILTER (WHERE kind = 'bus') AS lmp_max,
           count(*) FILTER (WHERE kind = 'branch' AND loading_pct >= 99.99) AS congested_branches
    FROM gold_opf_dispatch WHERE date = ? GROUP BY period_start ORDER BY period_start
""",
    [TZ, DAY],
)
print(opf)
assert opf.height >= 23 and (opf["cost_per_h"] > 0).all()
# renewables are capped at their forecast and cost nothing, so the thermal plants serve the *net* load
corr = opf.select(pl.corr("net_load_mw", "cost_per_h")).item()
print(f"hourly cost follows the net load (demand minus renewables): correlation {corr:.3f}")
assert corr > 0.9

# %% [markdown]
# ## Unit commitment: which units run, and the reserve kept

# %%
uc = sql(
    """
    SELECT period_start AT TIME ZONE ? AS t, count(*) FILTER (WHERE is_on AND unit <> 'system') AS units_on,
           sum(p_mw) FILTER (WHERE unit <> 'system') AS thermal_mw, any_value(load_mw) FILTER (WHERE unit = 'system') AS load_mw,
           any_value(renewable_used_mw) FILTER (WHERE unit = 'system') AS renewable_mw,
           any_value(unserved_mw) FILTER (WHERE unit = 'system') AS unserved_mw
    FROM gold_uc_schedule WHERE date = ? GROUP BY period_start ORDER BY period_start
""",
    [TZ, DAY],
)
print(uc)
balance = uc.select(
    (pl.col("thermal_mw") + pl.col("renewable_mw") + pl.col("unserved_mw") - pl.col("load_mw")).abs().max()
).item()
print(f"power balance holds every hour to {balance:.2e} MW")
assert balance < 1e-3
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.stackplot(uc["t"], uc["thermal_mw"], uc["renewable_mw"], labels=["thermal", "renewable"])
ax.plot(uc["t"], uc["load_mw"], color="black", label="load")
ax2 = ax.twinx()
ax2.step(uc["t"], uc["units_on"], where="mid", color="tab:red")
ax2.set_ylabel("units on")
ax.legend(loc="upper left")
ax.set_title(f"unit commitment on {DAY}")
fig.savefig(OUT / "uc_dispatch.png", dpi=80)
print(f"figures in {OUT}")
