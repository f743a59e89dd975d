"""gridlake data simulator: smart-meter readings, transformer SCADA and real TMY3 weather, with truth.

>>> from datetime import date
>>> from simulator import SimConfig, Simulator
>>> sim = Simulator(SimConfig(n_meters=60, start=date(2026, 7, 1), days=3))
>>> frames = sim.day(date(2026, 7, 2))   # meter_readings, scada, weather (raw contract)

See ``simulator.landing`` for writing landing files with controlled bad records.
"""

from .archetypes import ARCHETYPE_NAMES
from .config import BadRecordRates, EventRates, IncidentRates, SimConfig
from .core import Simulator
from .landing import LandingFile, LandingManifest, write_landing_day, write_landing_reference

__all__ = [
    "ARCHETYPE_NAMES",
    "BadRecordRates",
    "EventRates",
    "IncidentRates",
    "LandingFile",
    "LandingManifest",
    "SimConfig",
    "Simulator",
    "write_landing_day",
    "write_landing_reference",
]
