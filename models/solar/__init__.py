"""Solar: pvlib clear-sky + PVWatts per system, smart persistence, quantile XGBoost and its
backtest, ramp detection and fleet aggregation. No Dagster import."""

from models.solar.fleet import aggregate_fleet, feeder_pv_systems, fleet_clearsky, fleet_power, system_total
from models.solar.forecast import (
    SolarXGBForecaster,
    bounded_persistence,
    clearsky_index,
    design,
    regular_weather,
    smart_persistence,
    solar_backtest,
)
from models.solar.pv import PVSystem, clearsky, clearsky_ac_kw, pvwatts_ac_kw, simulate_power, systems_from_meters
from models.solar.ramps import detect_ramps

__all__ = [
    "PVSystem",
    "SolarXGBForecaster",
    "aggregate_fleet",
    "bounded_persistence",
    "clearsky",
    "clearsky_ac_kw",
    "clearsky_index",
    "design",
    "detect_ramps",
    "feeder_pv_systems",
    "fleet_clearsky",
    "fleet_power",
    "pvwatts_ac_kw",
    "regular_weather",
    "simulate_power",
    "smart_persistence",
    "solar_backtest",
    "system_total",
    "systems_from_meters",
]
