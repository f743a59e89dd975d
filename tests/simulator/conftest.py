"""Shared small simulators for the simulator tests (session-scoped: each is built once).

All are small (tens of meters, a few days generated) so the whole folder runs in well under a
minute. ``summer`` has high event rates so every event kind occurs in six days; ``summer_base`` is
the same fleet with no events, which gives the physical truth to compare the events against (events
use their own random stream, so the physics of both is identical outside the events).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

# The venv's editable install of gridlake was made while simulator/ was still empty, so its finder
# registers `simulator` as a namespace package (no __init__, no names). Putting the repository root
# first on sys.path makes the regular package win. Not needed once the project is re-installed
# (`pip install --no-deps -e .`) or pytest gets `pythonpath = ["."]`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from simulator import EventRates, SimConfig, Simulator  # noqa: E402 (after the sys.path fix above)

NO_EVENTS = EventRates(0.0, 0.0, 0.0, 0.0, 0.0)
BUSY = EventRates(
    sags_per_transformer_year=120.0,
    stuck_per_meter_year=12.0,
    zero_per_meter_year=12.0,
    theft_per_meter_year=12.0,
    failures_per_transformer_year=250.0,
)


@pytest.fixture(scope="session")
def summer() -> Simulator:
    return Simulator(SimConfig(n_meters=60, start=date(2026, 7, 6), days=6, seed=11, events=BUSY))


@pytest.fixture(scope="session")
def summer_base() -> Simulator:
    return Simulator(SimConfig(n_meters=60, start=date(2026, 7, 6), days=6, seed=11, events=NO_EVENTS))


@pytest.fixture(scope="session")
def year() -> Simulator:
    """A whole-year period without events; tests generate only the days they need."""
    return Simulator(SimConfig(n_meters=72, start=date(2026, 1, 1), days=365, seed=3, events=NO_EVENTS))
