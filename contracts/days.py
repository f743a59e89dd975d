"""Time conventions: the utility's zone and the UTC bounds of a local day."""

from __future__ import annotations

import datetime as dt

import polars as pl

from contracts.profile import DEMO_PROFILE, read_profile

#: The demo utility's zone, read from its profile (contracts/profiles/demo.yaml), not restated: the
#: default of library functions that take a ``tz``. A deployment's zone is ``load_profile().timezone``
#: (GRIDLAKE_PROFILE / GRIDLAKE_TIMEZONE), which partitions, schedules and resources read.
DEFAULT_TIMEZONE = read_profile(DEMO_PROFILE).timezone


def day_bounds_utc(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where local ``day`` starts and the next local day starts (23/24/25 h apart)."""
    start = lambda d: pl.select(
        pl.lit(dt.datetime.combine(d, dt.time()))
        .dt.replace_time_zone(tz, non_existent="raise")
        .dt.convert_time_zone("UTC")
    ).item()  # noqa: E731
    return start(day), start(day + dt.timedelta(days=1))
