"""Time conventions: the utility's zone and the UTC bounds of a local day."""

from __future__ import annotations

import datetime as dt

import polars as pl

#: The utility's time zone. Local meter clocks, daily partitions and schedules use it.
DEFAULT_TIMEZONE = "America/New_York"


def day_bounds_utc(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where local ``day`` starts and the next local day starts (23/24/25 h apart)."""
    start = lambda d: pl.select(pl.lit(dt.datetime.combine(d, dt.time())).dt.replace_time_zone(tz, non_existent="raise").dt.convert_time_zone("UTC")).item()  # noqa: E731
    return start(day), start(day + dt.timedelta(days=1))
