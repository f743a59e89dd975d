"""Solar: pvlib clear-sky + PVWatts per system, smart persistence, quantile XGBoost,
ramp detection and fleet aggregation. No Dagster import."""

from models.solar.fleet import aggregate_fleet
from models.solar.forecast import SolarXGBForecaster, clearsky_index, design, smart_persistence
from models.solar.pv import PVSystem, clearsky, clearsky_ac_kw, pvwatts_ac_kw, simulate_power, systems_from_meters
from models.solar.ramps import detect_ramps

__all__ = [
    "PVSystem",
    "SolarXGBForecaster",
    "aggregate_fleet",
    "clearsky",
    "clearsky_ac_kw",
    "clearsky_index",
    "design",
    "detect_ramps",
    "pvwatts_ac_kw",
    "simulate_power",
    "smart_persistence",
    "systems_from_meters",
]
