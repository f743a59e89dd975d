"""Optimisation gold tables (written by assets.optimization from the optimization library).

One row per decision: battery per 15-minute period, EV per (strategy, session, 5-minute
period with non-zero power), DC-OPF per (hour, element), unit commitment per (unit, hour).
Money is in the tariff's currency; prices in $/MWh (market convention), carbon in kg/MWh.
"""

from __future__ import annotations

import polars as pl

from contracts.tables import _DATE, UTC_TS, Column, Table

_SOURCE = Column(
    "inputs", pl.Utf8, False, "where the load/PV inputs came from (forecast issue or fallback), human-readable"
)
GOLD_BATTERY_SCHEDULE = Table(
    "gold_battery_schedule",
    "gold",
    (
        _DATE,
        Column("site_id", pl.Utf8, False, "the load entity the battery sits behind (gold_load_forecast entity_id)"),
        Column("period_start", UTC_TS, False, "start of the 15-minute period, UTC"),
        Column(
            "price_per_mwh", pl.Float64, False, "configured time-of-use energy price (configuration, not market data)"
        ),
        Column("carbon_kg_per_mwh", pl.Float64, False, "configured grid carbon intensity", 0.0),
        Column("load_kw", pl.Float64, False, "gross site load = metered (net) load forecast + PV forecast", 0.0),
        Column("pv_kw", pl.Float64, False, "PV forecast (p50)", 0.0),
        Column("charge_kw", pl.Float64, False, "", 0.0),
        Column("discharge_kw", pl.Float64, False, "", 0.0),
        Column("soc_kwh", pl.Float64, False, "stored energy at the end of the period", 0.0),
        Column("soc_frac", pl.Float64, False, "soc_kwh / energy capacity", 0.0, 1.0),
        Column("grid_import_kw", pl.Float64, False, "", 0.0),
        Column("grid_export_kw", pl.Float64, False, "", 0.0),
        Column("baseline_grid_kw", pl.Float64, False, "net grid flow without the battery (+ import)"),
        Column(
            "reserve_kw", pl.Float64, False, "frequency-regulation capacity offered (0 without a regulation price)", 0.0
        ),
    ),
    "battery charge/discharge/SOC schedule per 15 minutes against the configured tariff and the load/PV forecasts",
    partition_by=("date",),
    key=("site_id", "period_start"),
)
GOLD_BATTERY_DAILY = Table(
    "gold_battery_daily",
    "gold",
    (
        _DATE,
        Column("site_id", pl.Utf8, False),
        Column("power_kw", pl.Float64, False, "battery rating"),
        Column("energy_kwh", pl.Float64, False, "battery capacity"),
        Column("energy_cost", pl.Float64, False, "import cost - export revenue with the battery"),
        Column("baseline_energy_cost", pl.Float64, False, "the same without the battery"),
        Column("demand_charge", pl.Float64, False, "demand charge x peak import with the battery"),
        Column("baseline_demand_charge", pl.Float64, False),
        Column("degradation_cost", pl.Float64, False, "degradation cost x throughput"),
        Column("carbon_kg", pl.Float64, False, "emissions of grid imports with the battery"),
        Column("baseline_carbon_kg", pl.Float64, False),
        Column("savings", pl.Float64, False, "baseline total - total cost (incl. priced carbon)"),
        Column("peak_import_kw", pl.Float64, False),
        Column("baseline_peak_import_kw", pl.Float64, False),
        Column("equivalent_full_cycles", pl.Float64, False, "", 0.0),
        Column("reserve_revenue", pl.Float64, False, "frequency-regulation capacity revenue (in savings)"),
        Column(
            "safety_status",
            pl.Utf8,
            False,
            "safety gate: passed | fallback:hold | fallback:charge_only (optimization.safety)",
        ),
        Column("safety_violations", pl.Int64, False, "rule violations the gate found in the solver schedule", 0.0),
        Column("objective", pl.Float64, False, "LP objective as solved (a fallback: its total cost)"),
        Column("solve_seconds", pl.Float64, False),
        _SOURCE,
    ),
    "daily money/carbon breakdown of the battery schedule against the no-battery baseline",
    partition_by=("date",),
    key=("site_id",),
)
EV_STRATEGIES = ("optimal", "edf", "uncontrolled")
GOLD_EV_SCHEDULE = Table(
    "gold_ev_schedule",
    "gold",
    (
        _DATE,
        Column("strategy", pl.Utf8, False, "optimal (LP) | edf | uncontrolled (baselines)", allowed=EV_STRATEGIES),
        Column("session_id", pl.Utf8, False),
        Column("station_id", pl.Utf8, False),
        Column("period_start", UTC_TS, False, "start of the 5-minute period, UTC"),
        Column("power_kw", pl.Float64, False, "charging power (only non-zero rows are kept)", 0.0),
    ),
    "EV charging power per session and 5-minute period, optimal and the EDF/uncontrolled baselines",
    partition_by=("date",),
    key=("strategy", "session_id", "period_start"),
)
GOLD_EV_SESSIONS = Table(
    "gold_ev_sessions",
    "gold",
    (
        _DATE,
        Column("strategy", pl.Utf8, False, allowed=EV_STRATEGIES),
        Column("session_id", pl.Utf8, False),
        Column("station_id", pl.Utf8, False),
        Column("arrival_time", UTC_TS, False, "re-timed to the partition day, UTC"),
        Column("departure_time", UTC_TS, False),
        Column("requested_kwh", pl.Float64, False, "", 0.0),
        Column("delivered_kwh", pl.Float64, False, "", 0.0),
        Column("unmet_kwh", pl.Float64, False, "", 0.0),
        Column("cost", pl.Float64, False, "energy cost of the session (V2G exports at the export price net of wear)"),
        Column("carbon_kg", pl.Float64, False, "emissions of the session's net grid energy"),
        Column("site_id", pl.Utf8, False, "the load-forecast entity whose forecast is the site's baseload"),
        Column(
            "safety_status",
            pl.Utf8,
            True,
            "optimal rows: the safety gate's verdict (passed | fallback:charge_only); baselines: null",
        ),
        Column("source_session_date", pl.Date, False, "local day of the real session the row was re-timed from"),
    ),
    "EV sessions of the day with energy requested and delivered per strategy",
    partition_by=("date",),
    key=("strategy", "session_id"),
)
OPF_KINDS = ("system", "bus", "generator", "branch")
GOLD_OPF_DISPATCH = Table(
    "gold_opf_dispatch",
    "gold",
    (
        _DATE,
        Column("period_start", UTC_TS, False, "start of the hour, UTC"),
        Column("case_name", pl.Utf8, False, "pandapower/MATPOWER case"),
        Column("kind", pl.Utf8, False, "system | bus | generator | branch", allowed=OPF_KINDS),
        Column("element", pl.Int64, False, "bus number, generator index or branch index (0 for system)"),
        Column("from_bus", pl.Int64, True, "generator bus, or branch from-bus"),
        Column("to_bus", pl.Int64, True, "branch to-bus"),
        Column("p_mw", pl.Float64, True, "generator output, branch flow (from->to) or total system demand"),
        Column("limit_mw", pl.Float64, True, "generator Pmax or branch rateA (0 = unlimited)"),
        Column("loading_pct", pl.Float64, True, "branch |flow| / rateA"),
        Column("demand_mw", pl.Float64, True, "bus demand (bus rows)"),
        Column("lmp", pl.Float64, True, "locational marginal price, $/MWh (bus rows)"),
        Column("cost_per_h", pl.Float64, True, "DC-OPF objective of the hour (system rows)"),
        Column("load_scale", pl.Float64, False, "factor applied to the case's bus loads this hour"),
        Column(
            "co2_t_per_h",
            pl.Float64,
            True,
            "emissions, t CO2/h (system and generator rows; null when no emission factors are configured)",
        ),
        Column("renewable_share", pl.Float64, True, "renewable output / total output (system rows)"),
    ),
    "hourly DC-OPF dispatch, branch flows and LMPs with bus loads scaled by the system load forecast",
    partition_by=("date",),
    key=("period_start", "kind", "element"),
)
GOLD_UC_SCHEDULE = Table(
    "gold_uc_schedule",
    "gold",
    (
        _DATE,
        Column("period_start", UTC_TS, False, "start of the hour, UTC"),
        Column("unit", pl.Utf8, False, "generator id ('system' rows carry the totals)"),
        Column("is_on", pl.Boolean, False),
        Column("is_start", pl.Boolean, False),
        Column("p_mw", pl.Float64, False, "thermal output (system: total thermal)", 0.0),
        Column("reserve_mw", pl.Float64, False, "spinning reserve provided", 0.0),
        Column("load_mw", pl.Float64, True, "system rows: load served (scaled forecast)"),
        Column("renewable_forecast_mw", pl.Float64, True, "system rows: PV forecast (scaled)"),
        Column("renewable_used_mw", pl.Float64, True, "system rows: after curtailment"),
        Column("unserved_mw", pl.Float64, True, "system rows"),
        Column(
            "co2_t_per_h",
            pl.Float64,
            True,
            "emissions, t CO2/h (unit and system rows; null without the fleet's co2_t_per_mwh)",
        ),
        Column("renewable_share", pl.Float64, True, "system rows: renewable used / load served"),
    ),
    "day-ahead unit commitment: unit x hour on/start/output/reserve plus system totals",
    partition_by=("date",),
    key=("unit", "period_start"),
)
GOLD_BATTERY_ECONOMICS = Table(
    "gold_battery_economics",
    "gold",
    (
        _DATE,
        Column("site_id", pl.Utf8, False),
        Column("year", pl.Int64, False, "project year (1 = first)", 1.0),
        Column(
            "capacity_frac",
            pl.Float64,
            False,
            "usable capacity at the end of the year (after a replacement: the new cells next year)",
            0.0,
            1.0,
        ),
        Column("replaced", pl.Boolean, False, "cells replaced at the end of this year (capacity below end of life)"),
        Column("savings", pl.Float64, False, "the year's savings, scaled by the mean usable capacity"),
        Column("cash_flow", pl.Float64, False, "savings - O&M - replacement"),
        Column("discounted_cash_flow", pl.Float64, False),
        Column("cumulative_cash_flow", pl.Float64, False, "from -capex"),
        Column("capex", pl.Float64, False, "installed cost (energy x capex_per_kwh + power x capex_per_kw)"),
        Column("annual_savings", pl.Float64, False, "mean daily savings of the produced schedules x 365"),
        Column("annual_cycles", pl.Float64, False, "mean daily equivalent full cycles x 365"),
        Column("npv", pl.Float64, False),
        Column("irr", pl.Float64, True, "null if the cash flows never repay the capex"),
        Column("payback_years", pl.Float64, True, "null if not within the lifetime"),
        Column("replacement_year", pl.Int64, True, "first year capacity falls below end of life; null if never"),
        Column("days_used", pl.Int64, False, "gold_battery_daily days averaged"),
    ),
    "battery project economics (fade, replacement, NPV, IRR, payback) from the schedules produced, cost assumptions from the settings",
    partition_by=("date",),
    key=("site_id", "year"),
)
N1_KINDS = ("overload", "redispatch")
GOLD_N1_SCREENING = Table(
    "gold_n1_screening",
    "gold",
    (
        _DATE,
        Column("period_start", UTC_TS, False, "the hour screened: the day's peak hour of gold_opf_dispatch, UTC"),
        Column("case_name", pl.Utf8, False, "pandapower/MATPOWER case"),
        Column(
            "kind",
            pl.Utf8,
            False,
            "overload: one outage overloads one branch | redispatch: security-constrained re-dispatch of a worst outage",
            allowed=N1_KINDS,
        ),
        Column("contingency_branch", pl.Int64, False, "the branch (case row) taken out"),
        Column("monitored_branch", pl.Int64, False, "the overloaded branch (case row); -1 on redispatch rows"),
        Column("from_bus", pl.Int64, True, "monitored branch from-bus"),
        Column("to_bus", pl.Int64, True, "monitored branch to-bus"),
        Column("pre_flow_mw", pl.Float64, True, "monitored branch flow before the outage"),
        Column("post_flow_mw", pl.Float64, True, "after the outage (LODF), MW"),
        Column("rate_mw", pl.Float64, True, "monitored branch rate A"),
        Column(
            "loading_pct", pl.Float64, True, "post-outage |flow| / rate A (redispatch rows: worst before re-dispatch)"
        ),
        Column(
            "overloads_after",
            pl.Int64,
            True,
            "redispatch rows: overloads this outage still causes after re-dispatch (null: infeasible)",
        ),
        Column("base_cost_per_h", pl.Float64, True, "redispatch rows: DC-OPF cost of the hour"),
        Column(
            "secured_cost_per_h", pl.Float64, True, "redispatch rows: cost with the outage secured (null: infeasible)"
        ),
        Column("status", pl.Utf8, True, "redispatch rows: secured | infeasible: <constraint groups>"),
    ),
    "N-1 line-contingency screening of the DC-OPF at the day's peak hour: overloads per single outage, re-dispatch of the worst",
    partition_by=("date",),
    key=("kind", "contingency_branch", "monitored_branch"),
)
#: security tables (assets.contingency), apart from OPT_TABLES: the optimisation job does not write them
SECURITY_TABLES: dict[str, Table] = {GOLD_N1_SCREENING.name: GOLD_N1_SCREENING}
OPT_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        GOLD_BATTERY_SCHEDULE,
        GOLD_BATTERY_DAILY,
        GOLD_BATTERY_ECONOMICS,
        GOLD_EV_SCHEDULE,
        GOLD_EV_SESSIONS,
        GOLD_OPF_DISPATCH,
        GOLD_UC_SCHEDULE,
    )
}
