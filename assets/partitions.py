"""Partitions: utility-local days (and months for the monthly rollups)."""

from __future__ import annotations

import datetime as dt
import warnings

from dagster import (
    AssetDep,
    BackfillPolicy,
    BetaWarning,
    DailyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    TimeWindowPartitionMapping,
)

from contracts.profile import load_profile

#: the utility profile's zone and first day (GRIDLAKE_PROFILE; GRIDLAKE_TIMEZONE / GRIDLAKE_START_DATE override)
TIMEZONE = load_profile().timezone
START = load_profile().partition_start.isoformat()

daily = DailyPartitionsDefinition(start_date=START, timezone=TIMEZONE, end_offset=0)
monthly = MonthlyPartitionsDefinition(start_date=START[:8] + "01", timezone=TIMEZONE, end_offset=0)

#: a backfill of the daily ingestion and gold assets runs its range in runs of at most this many days: a year is two
#: range runs, which the run queue's ``dagster/backfill`` limit (2, deploy/dagster.yaml) runs at once, one a core;
#: shorter ranges stay one run (start-up paid once). docs/DECISIONS.md "Year backfill on two cores"
BACKFILL_DAYS_PER_RUN = 183
daily_backfill = BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_DAYS_PER_RUN)

#: scoring assets (forecasts, anomaly scores) re-run for *today* every hour, so their partitions
#: include the current local day; the silver/gold tables they read stop at yesterday
daily_open = DailyPartitionsDefinition(start_date=START, timezone=TIMEZONE, end_offset=1)


def lookback_dep(name: str, days_back: int = 0) -> AssetDep:
    """A dep on a daily table read over [day - days_back, day]; today's upstream may not exist yet."""
    with warnings.catch_warnings():  # allow_nonexistent_upstream_partitions is marked beta; we rely on it knowingly
        warnings.simplefilter("ignore", BetaWarning)
        mapping = TimeWindowPartitionMapping(
            start_offset=-days_back, end_offset=0, allow_nonexistent_upstream_partitions=True
        )
    return AssetDep(name, partition_mapping=mapping)


def partition_day(context) -> dt.date:
    """The local date of a daily-partitioned run (its partition key)."""
    return dt.date.fromisoformat(context.partition_key)
