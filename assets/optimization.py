"""Optimisation assets: daily battery, EV, DC-OPF and unit-commitment schedules into gold Delta tables.

Each asset gathers its inputs from the lake and its ``Config``, calls the :mod:`optimization`
library (pure pyomo + HiGHS, no Dagster) and replaces exactly one ``date`` partition of its gold
table(s) with :meth:`lake.delta.Lake.write_partition` (tables declared in ``contracts``,
section "Optimisation gold tables"). Metadata carries the cost breakdown, solve time, where the
inputs came from, and a PNG of schedule vs price/SOC for the Dagster UI.

This module only reads and writes the lake and builds metadata. The input rules below (periods of
a local day, newest issue per hour, the weekly fallback, gross load, the tariff, the EV re-timing)
live in :mod:`optimization.daily`; the hour-by-hour OPF in :func:`optimization.dcopf.solve_dcopf_periods`;
the output tables in :func:`optimization.battery.site_schedule_table` / :func:`~optimization.battery.daily_summary`,
:func:`optimization.ev.strategy_tables` and :func:`optimization.unit_commitment.schedule_table`.

Inputs, and which of them are *data* and which are *configuration*:

* **Load** (data): ``gold_load_forecast`` p50 of ``Config.site_id`` (``"system"`` = level system).
  For each hour of the local day the row of the *newest issue* covering it is used (issues are
  read from the partitions day-3..day, forecasts reach up to 72 h ahead). If the forecasts do not
  cover every hour of the day, the whole day falls back to a weekly seasonal naive: the same local
  hour one week earlier in ``gold_load_hourly`` (mean_kw; the sum of the feeders for ``system``).
  The ``inputs`` metadata / column names the source actually used.
* **PV** (data): ``gold_solar_forecast`` p50 of the same entity, same newest-issue rule. Meters
  measure *net* load (imports minus rooftop PV exports), so the load forecast is already net of
  behind-the-meter PV: gross load = net load + PV. Without a PV forecast the PV term is 0 and the
  gross load is the net load, which keeps the metered site balance right (documented fallback).
* **Price and carbon** (configuration, *not* data: gridlake has no price feed): a time-of-use
  energy tariff ($/MWh by local hour), a demand charge prorated to the day ($/kW-day) and a carbon
  intensity (kg/MWh, flat or a 24-value local-hour profile), all in the utility profile's ``tariffs``
  (contracts.profile; :func:`optimization.daily.tariff_prices`).
* **EV sessions** (real data, re-timed): the bundled Caltech ACN sessions of March 2019; a day
  is filled with the sessions of a March 2019 day with the same weekday (rotating through the
  4-5 candidates week by week), with their local arrival/departure clock times kept.
* **OPF**: a pandapower/MATPOWER case (``OPFConfig.case``); every hour the case's bus loads are
  scaled by system-load-forecast / daily-peak x ``peak_load_scale``.
* **UC**: the synthetic fleet of :func:`optimization.unit_commitment.synthetic_fleet`; the system
  gross load and PV forecasts give the *shape*; they are scaled so that the day's peak is
  ``peak_frac`` of the fleet's capacity (the simulated utility is far smaller than the fleet).

Scheduling: ``optimization_daily`` runs the four problems at 04:00 local for the *current* local
day (after the hourly forecast re-issue at hh:10); the same job runs on demand or as a backfill
for any partition. Partitions are ``daily_open`` like the forecasts they read.
"""

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetSpec,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from pydantic import Field, field_validator

from contracts.profile import BatterySite
from lake.delta import Lake
from lake.plots import png_markdown
from contracts import TABLES
from optimization import daily, plots
from optimization.battery import BatterySpec, daily_summary, optimize_battery, site_schedule_table
from optimization.dcopf import solve_dcopf_periods
from optimization.errors import InfeasibleError
from optimization.ev import CALTECH_PERIOD_MINUTES as EV_MINUTES
from optimization.ev import compare_strategies, strategy_tables
from optimization.unit_commitment import schedule_table, solve_unit_commitment, synthetic_fleet
from assets.partitions import daily_open, lookback_dep, partition_day
from assets.queues import queue_tags
from assets.resources import GridSettings, LakeResource

_T = TABLES
GROUP = "optimization"
LOAD_FORECAST = "gold_load_forecast"
SOLAR_FORECAST = "gold_solar_forecast"
LOAD_HOURLY = "gold_load_hourly"
#: lineage: forecast -> schedule (issues up to 3 days old cover the day; the fallback reads last week)
_DEPS = [lookback_dep(LOAD_FORECAST, 3), lookback_dep(SOLAR_FORECAST, 3), lookback_dep(LOAD_HOURLY, 7)]


# ============================================================================================
# configuration
# ============================================================================================
# ============================================================================================
# inputs from the lake (the selection rules are in optimization.daily)
# ============================================================================================
def forecast_for_day(lk: Lake, table: str, entity_id: str, day: dt.date, tz: str) -> tuple[np.ndarray | None, str]:
    """Hourly p50 (kW) of ``entity_id`` over local ``day`` from a gold forecast table, and a description.

    Reads the partitions day-3..day; :func:`optimization.daily.newest_issue_p50` picks the newest
    issue per hour. Returns ``(None, why)`` if the table is absent or does not cover every hour of
    the day (the caller then falls back and says so).
    """
    if not lk.exists(table):
        return None, f"{table} does not exist"
    return daily.newest_issue_p50(lk.read_days(_T[table], day - dt.timedelta(days=3), day), entity_id, day, tz, source=table)


def last_week_load(lk: Lake, entity_id: str, day: dt.date, tz: str) -> tuple[np.ndarray, str]:
    """Weekly seasonal naive from ``gold_load_hourly``: mean_kw at the same local hour 7 days earlier."""
    src = day - dt.timedelta(days=7)
    if not lk.exists(LOAD_HOURLY):
        raise FileNotFoundError(f"no load input for {day}: no {LOAD_FORECAST} covering it and {LOAD_HOURLY} does not exist")
    got = daily.same_hour_last_week(lk.read_days(_T[LOAD_HOURLY], src, src), entity_id, day, tz)
    missing = got.filter(pl.col("mean_kw").is_null())["period_start"]
    if missing.len():
        raise FileNotFoundError(
            f"no load input for {day}: no {LOAD_FORECAST} covering it, and {LOAD_HOURLY} for {src} lacks "
            f"{missing.len()} hour(s) of entity {entity_id!r} (first: {missing[0]} shifted); materialise {LOAD_HOURLY} for {src}"
        )
    return got["mean_kw"].to_numpy(), f"fallback: {LOAD_HOURLY} mean_kw of {entity_id!r} on {src} (same local hour last week)"


def site_inputs(lk: Lake, entity_id: str, day: dt.date, tz: str) -> dict[str, Any]:
    """Hourly gross load and PV (kW) of the entity for the day, and where each came from."""
    net, load_src = forecast_for_day(lk, LOAD_FORECAST, entity_id, day, tz)
    if net is None:
        why = load_src
        net, load_src = last_week_load(lk, entity_id, day, tz)
        load_src = f"{load_src} [{why}]"
    pv, pv_src = forecast_for_day(lk, SOLAR_FORECAST, entity_id, day, tz)
    if pv is None:
        pv_src = f"none: PV = 0, the metered net load stands as site load [{pv_src}]"
    gross, pv = daily.gross_load(net, pv)
    return {"load_kw": gross, "net_kw": net, "pv_kw": pv, "load_source": load_src, "pv_source": pv_src}


def _failure(what: str, exc: InfeasibleError) -> Failure:
    """A Dagster failure carrying which constraint group cannot be met, and by how much."""
    return Failure(description=f"{what}: {exc}", metadata={"infeasible_groups": MetadataValue.json(exc.groups), "hint": exc.hint})


def _r(d: dict[str, float], nd: int = 4) -> dict[str, float]:
    """Metadata-friendly copy of a metrics dict: values rounded, NaNs dropped."""
    return {k: round(float(v), nd) for k, v in d.items() if v == v}


# ============================================================================================
# battery
# ============================================================================================
class BatteryConfig(Config):
    """Run config of the battery; a setting left None comes from the utility profile's ``battery``."""

    site_id: str = Field(daily.SYSTEM, description="gold_load_forecast entity_id the battery sits behind ('system' = whole utility)")
    power_kw: float | None = Field(None, description="battery power rating; None = power_frac_of_peak x the day's peak gross load")
    power_frac_of_peak: float | None = Field(None, description="sizing rule when power_kw is None (None: the profile's)")
    duration_h: float | None = Field(None, description="energy capacity = power x duration (None: the profile's)")
    efficiency: float | None = Field(None, description="one-way charge and discharge efficiency (None: the profile's)")
    soc_initial_frac: float | None = Field(None, description="SOC at local midnight; the day must end at least as full (None: the profile's)")
    degradation_cost_per_mwh: float | None = Field(None, description="$/MWh of throughput (None: the profile's)")
    milp: bool = Field(False, description="forbid simultaneous charge/discharge with binaries (needed with negative prices)")

    def site(self, profile: BatterySite) -> BatterySite:
        """The profile's battery site with this run's overrides."""
        keys = ("power_frac_of_peak", "duration_h", "efficiency", "soc_initial_frac", "degradation_cost_per_mwh")
        return profile.model_copy(update={k: getattr(self, k) for k in keys if getattr(self, k) is not None})


@multi_asset(
    op_tags=queue_tags("optimise"),
    specs=[
        AssetSpec("gold_battery_schedule", group_name=GROUP, deps=_DEPS, kinds={"pyomo", "delta"}, description=_T["gold_battery_schedule"].description),
        AssetSpec("gold_battery_daily", group_name=GROUP, kinds={"pyomo", "delta"}, description=_T["gold_battery_daily"].description),
    ],
    partitions_def=daily_open,
)
def gold_battery(context: AssetExecutionContext, config: BatteryConfig, lake: LakeResource, grid: GridSettings):
    """Battery behind the site meter: arbitrage on the tariff, peak shaving on the demand charge, PV self-use."""
    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    inp = site_inputs(lk, config.site_id, day, tz)
    stamps = daily.day_periods(day, tz, 15)
    load, pv = np.repeat(inp["load_kw"], 4), np.repeat(inp["pv_kw"], 4)  # hourly inputs on 15-minute periods
    tariffs, site = grid.profile().tariffs, config.site(grid.profile().battery)
    price, carbon = daily.tariff_prices(tariffs, stamps, tz)
    power = config.power_kw if config.power_kw is not None else site.power_frac_of_peak * float(inp["load_kw"].max())
    if not power > 0:
        raise ValueError(f"gold_battery_schedule {day}: battery power must be > 0 kW (power_kw={config.power_kw}, peak load {inp['load_kw'].max()} kW)")
    spec = BatterySpec(power, power * site.duration_h, site.efficiency, site.efficiency,
                       soc_initial_frac=site.soc_initial_frac, degradation_cost_per_mwh=site.degradation_cost_per_mwh)
    try:
        res = optimize_battery(
            spec, price, start=stamps[0], period_minutes=15, load_kw=load, pv_kw=pv, carbon_kg_per_mwh=carbon,
            carbon_price_per_t=tariffs.carbon_price_per_t, demand_charge_per_kw=tariffs.demand_charge_per_kw_day, milp=config.milp,
        )
    except InfeasibleError as exc:
        raise _failure(f"gold_battery_schedule {day}", exc) from exc
    s, bd = res.schedule, res.breakdown
    sched = site_schedule_table(res, load, pv, carbon).with_columns(pl.lit(day).alias("date"), pl.lit(config.site_id).alias("site_id"))
    inputs = f"load: {inp['load_source']} | pv: {inp['pv_source']}"
    summary = pl.DataFrame([{"date": day, "site_id": config.site_id, **daily_summary(res, spec), "inputs": inputs}])
    w1 = lk.write_partition(_T["gold_battery_schedule"], sched, day)
    w2 = lk.write_partition(_T["gold_battery_daily"], summary, day)
    png = plots.battery_schedule_png(s, f"battery at {config.site_id}, {day}: {spec.power_kw:.0f} kW / {spec.energy_kwh:.0f} kWh")
    yield MaterializeResult(asset_key="gold_battery_schedule", metadata={
        "dagster/row_count": w1.rows, "delta_version": w1.version,
        "objective": res.objective, "breakdown": MetadataValue.json(_r(bd)),
        "build_seconds": round(res.build_seconds, 3), "solve_seconds": round(res.solve_seconds, 3),
        "load_source": inp["load_source"], "pv_source": inp["pv_source"],
        "price_source": "configuration: the utility profile's wholesale time-of-use tariff + demand charge (no price feed)",
        "schedule_vs_price": MetadataValue.md(png_markdown(png, f"battery {day}")),
    })  # fmt: skip
    yield MaterializeResult(asset_key="gold_battery_daily", metadata={
        "dagster/row_count": w2.rows, "savings": round(bd["savings"], 2), "peak_import_kw": round(bd["peak_import_kw"], 2),
        "baseline_peak_import_kw": round(bd["baseline_peak_import_kw"], 2),
    })  # fmt: skip


# ============================================================================================
# EV charging
# ============================================================================================
class EVConfig(Config):
    transformer_limit_kw: float | None = Field(None, description="site (transformer) limit for the EV load, kW (None: the profile's ev)")
    peak_weight_per_kw: float = Field(0.0, description="$ per kW of the day's EV peak in the objective")


@multi_asset(
    op_tags=queue_tags("optimise"),
    specs=[
        AssetSpec("gold_ev_schedule", group_name=GROUP, kinds={"pyomo", "delta"}, description=_T["gold_ev_schedule"].description),
        AssetSpec("gold_ev_sessions", group_name=GROUP, kinds={"pyomo", "delta"}, description=_T["gold_ev_sessions"].description),
    ],
    partitions_def=daily_open,
)
def gold_ev(context: AssetExecutionContext, config: EVConfig, lake: LakeResource, grid: GridSettings):
    """Optimal EV charging under the site limit, with the EDF and uncontrolled baselines on the same sessions.

    No lake inputs (no deps): the sessions are the bundled real Caltech ones and the price is the
    configured tariff. A charger feed in the lake would replace :func:`optimization.daily.ev_sessions_for_day`.
    """
    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    sessions, src = daily.ev_sessions_for_day(day, tz)
    sched_t, sess_t = _T["gold_ev_schedule"], _T["gold_ev_sessions"]
    if sessions.height == 0:
        w1 = lk.write_partition(sched_t, pl.DataFrame(schema=sched_t.polars_schema()), day)
        w2 = lk.write_partition(sess_t, pl.DataFrame(schema=sess_t.polars_schema()), day)
        context.log.info(f"no EV sessions on {src} (source day for {day}); empty partitions written")
        yield MaterializeResult(asset_key="gold_ev_schedule", metadata={"dagster/row_count": 0, "source_session_date": str(src)})
        yield MaterializeResult(asset_key="gold_ev_sessions", metadata={"dagster/row_count": 0})
        return
    stamps = daily.periods_from_midnight(day, tz, int(sessions["departure_period"].max()), EV_MINUTES)
    price, _ = daily.tariff_prices(grid.profile().tariffs, stamps, tz)
    limit_kw = config.transformer_limit_kw if config.transformer_limit_kw is not None else grid.profile().ev.transformer_limit_kw
    results = compare_strategies(sessions, price, transformer_limit_kw=limit_kw, peak_per_kw=config.peak_weight_per_kw)
    sched, sess = strategy_tables(results, sessions, stamps)
    sched = sched.with_columns(pl.lit(day).alias("date"))
    sess = sess.with_columns(pl.lit(day).alias("date"), pl.lit(src).alias("source_session_date"))
    w1 = lk.write_partition(sched_t, sched, day)
    w2 = lk.write_partition(sess_t, sess, day)
    png = plots.ev_profile_png({n: r.profile for n, r in results.items()}, limit_kw,
                               f"EV site load {day} ({sessions.height} Caltech sessions of {src}; 5-min periods from local midnight)")
    yield MaterializeResult(asset_key="gold_ev_schedule", metadata={
        "dagster/row_count": w1.rows, "delta_version": w1.version,
        "sessions": sessions.height, "source_session_date": str(src),
        "session_source": "real Caltech ACN sessions (March 2019) re-timed to the day, same weekday",
        "metrics": MetadataValue.json({n: _r(r.metrics) for n, r in results.items()}),
        "solve_seconds": round(results["optimal"].solve_seconds, 3), "build_seconds": round(results["optimal"].build_seconds, 3),
        "price_source": "configuration: the utility profile's wholesale time-of-use tariff (no price feed)",
        "site_load_vs_limit": MetadataValue.md(png_markdown(png, f"EV {day}")),
    })  # fmt: skip
    yield MaterializeResult(asset_key="gold_ev_sessions", metadata={
        "dagster/row_count": w2.rows,
        "energy_delivered_pct": MetadataValue.json({n: round(r.metrics["energy_delivered_pct"], 3) for n, r in results.items()}),
    })  # fmt: skip


# ============================================================================================
# DC-OPF
# ============================================================================================
class OPFConfig(Config):
    case: str = Field("case118", description="pandapower network (case9, case14, case57, case118, case300, ...)")
    load_entity: str = Field(daily.SYSTEM, description="gold_load_forecast entity whose shape scales the bus loads")
    peak_load_scale: float = Field(1.0, description="bus-load factor at the day's forecast peak hour (1 = the case's loads)")
    allow_load_shedding: bool = Field(False, description="shed load at the value of lost load instead of failing")


@asset(op_tags=queue_tags("optimise"), group_name=GROUP, partitions_def=daily_open, deps=_DEPS, kinds={"pyomo", "delta"}, description=_T["gold_opf_dispatch"].description)
def gold_opf_dispatch(context: AssetExecutionContext, config: OPFConfig, lake: LakeResource, grid: GridSettings) -> MaterializeResult:
    """Hourly DC-OPF: dispatch, branch flows and LMPs; loads follow the system load forecast's shape."""
    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    inp = site_inputs(lk, config.load_entity, day, tz)
    if not inp["load_kw"].max() > 0:
        raise ValueError(f"gold_opf_dispatch {day}: the load input of {config.load_entity!r} is 0 all day; cannot derive a load shape")
    scale = config.peak_load_scale * inp["load_kw"] / inp["load_kw"].max()
    try:
        r = solve_dcopf_periods(config.case, daily.day_periods(day, tz, 60), scale, allow_load_shedding=config.allow_load_shedding)
    except InfeasibleError as exc:
        raise _failure(f"gold_opf_dispatch {day}", exc) from exc
    df = r.table.with_columns(pl.lit(day).alias("date"), pl.lit(config.case).alias("case_name"))
    w = lk.write_partition(_T["gold_opf_dispatch"], df, day)
    lmp = df.filter(pl.col("kind") == "bus")["lmp"]
    congested = df.filter((pl.col("kind") == "branch") & (pl.col("loading_pct") >= 99.99))
    png = plots.lmp_png(r.peak.buses, f"{config.case} LMPs at the peak hour of {day} (load x{scale.max():.2f})")
    return MaterializeResult(metadata={
        "dagster/row_count": w.rows, "delta_version": w.version,
        "objective_day": round(float(sum(r.objectives)), 4), "objective_per_h": MetadataValue.json([round(c, 4) for c in r.objectives]),
        "solve_seconds": round(r.solve_seconds, 3), "lmp_range": MetadataValue.json([float(lmp.min()), float(lmp.max())]),
        "congested_branch_hours": congested.height, "load_source": inp["load_source"], "pv_source": inp["pv_source"],
        "lmp_at_peak": MetadataValue.md(png_markdown(png, "LMP at peak")),
    })  # fmt: skip


# ============================================================================================
# unit commitment
# ============================================================================================
class UCConfig(Config):
    units: int = Field(50, description="size of the synthetic fleet")
    fleet_seed: int = Field(0, description="seed of the synthetic fleet (fixed: the same fleet every day)")
    load_entity: str = Field(daily.SYSTEM, description="gold_load_forecast / gold_solar_forecast entity")
    peak_frac: float = Field(0.7, description="the day's gross-load peak as a fraction of fleet capacity (scales load and PV alike)")
    reserve_frac: float = Field(0.1, description="spinning reserve as a fraction of load")
    mip_rel_gap: float = Field(1e-3, description="HiGHS relative MIP gap")
    time_limit_s: float = Field(120.0, description="HiGHS time limit; the incumbent and its gap are reported")

    @field_validator("peak_frac")
    @classmethod
    def _peak(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"peak_frac must be in (0, 1], got {v}")
        return v


@asset(op_tags=queue_tags("optimise"), group_name=GROUP, partitions_def=daily_open, deps=_DEPS, kinds={"pyomo", "delta"}, description=_T["gold_uc_schedule"].description)
def gold_uc_schedule(context: AssetExecutionContext, config: UCConfig, lake: LakeResource, grid: GridSettings) -> MaterializeResult:
    """Day-ahead commitment of the synthetic fleet against the gross load and PV forecasts."""
    lk, tz, day = lake.lake(), grid.timezone, partition_day(context)
    inp = site_inputs(lk, config.load_entity, day, tz)
    fleet = synthetic_fleet(config.units, seed=config.fleet_seed)
    cap = float(fleet["pmax_mw"].sum())
    if not inp["load_kw"].max() > 0:
        raise ValueError(f"gold_uc_schedule {day}: the load input of {config.load_entity!r} is 0 all day")
    k = config.peak_frac * cap / float(inp["load_kw"].max())  # kW -> MW of the scaled system
    load, ren = inp["load_kw"] * k, inp["pv_kw"] * k
    try:
        res = solve_unit_commitment(fleet, load, ren, reserve_frac=config.reserve_frac, mip_rel_gap=config.mip_rel_gap, time_limit=config.time_limit_s)
    except InfeasibleError as exc:
        raise _failure(f"gold_uc_schedule {day}", exc) from exc
    df = schedule_table(res, daily.day_periods(day, tz, 60), system_unit=daily.SYSTEM).with_columns(pl.lit(day).alias("date"))
    sy = res.system
    w = lk.write_partition(_T["gold_uc_schedule"], df, day)
    png = plots.uc_dispatch_png(sy, f"UC {day}: {config.units} units, load scaled x{k:.3g} MW/kW")
    return MaterializeResult(metadata={
        "dagster/row_count": w.rows, "delta_version": w.version,
        "cost": round(res.objective, 2), "mip_gap": res.mip_gap, "build_seconds": round(res.build_seconds, 3),
        "solve_seconds": round(res.solve_seconds, 3), "unserved_mwh": res.unserved_mwh,
        "renewable_curtailed_mwh": round(float((sy["renewable_forecast_mw"] - sy["renewable_used_mw"]).sum()), 3),
        "starts": int(res.schedule["start"].sum()), "scale_mw_per_kw": k,
        "load_source": inp["load_source"], "pv_source": inp["pv_source"],
        "dispatch": MetadataValue.md(png_markdown(png, f"UC {day}")),
    })  # fmt: skip


OPT_ASSETS = [gold_battery, gold_ev, gold_opf_dispatch, gold_uc_schedule]
