"""The production run queue (deploy/dagster.yaml): a year's backfill cannot flood the workers.

The instance is loaded from the file as dagster-daemon loads it; which queued runs may leave the queue is decided
with Dagster's own tag-limit counter (dagster._utils.tags.TagConcurrencyLimitsCounter, what the daemon's
QueuedRunCoordinatorDaemon uses) over queued runs as the daemon sees them (job name and tags)."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from dagster import DagsterInstance, DagsterRun
from dagster._utils.tags import TagConcurrencyLimitsCounter

from tests.conftest import REPO


def _dequeue(instance, queued):
    """The daemon's dequeue pass, in order: a run leaves the queue unless a limit is reached."""
    cfg = instance.get_concurrency_config().run_queue_config
    counter = TagConcurrencyLimitsCounter(cfg.tag_concurrency_limits, [])
    launched = []
    for run in queued:
        if len(launched) >= cfg.max_concurrent_runs:
            break
        if counter.is_blocked(run):
            continue
        counter.update_counters_with_launched_item(run)
        launched.append(run)
    return launched


@pytest.mark.postgres
def test_a_year_backfill_leaves_room_for_the_nightly_runs(pg_dagster_home, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    cfg = instance.get_concurrency_config().run_queue_config
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    # a year of grid_ml_scoring (one run per day) queued by one backfill, then the night's own runs
    day0 = dt.date(2025, 12, 1)
    backfill = [
        DagsterRun(job_name="grid_ml_scoring",
                            tags={"dagster/backfill": "year", "dagster/partition": (day0 + dt.timedelta(days=i)).isoformat()})
        for i in range(365)
    ]  # fmt: skip
    nightly = [
        DagsterRun(job_name=j, tags={"dagster/partition": "2026-12-01", **extra})
        for j, extra in (
            ("daily_ingest", {"gridlake/source": "meter_readings"}),
            ("forecast_scoring", {}),
            ("optimization_daily", {}),
        )
    ]
    launched = _dequeue(instance, backfill + nightly)
    from_backfill = [r for r in launched if r.tags.get("dagster/backfill")]
    assert len(from_backfill) == 2  # dagster/backfill: 2 at a time, not 365, not max_concurrent_runs
    # the night's runs still launch although queued behind 365 backfill runs
    assert [r.job_name for r in launched if not r.tags.get("dagster/backfill")] == [r.job_name for r in nightly]
    assert len(launched) == 5 <= cfg.max_concurrent_runs
    # a second backfill (another year, or a re-run) shares the same 2 slots
    other = [DagsterRun(job_name="optimization_daily", tags={"dagster/backfill": "again"}) for _ in range(10)]
    assert len([r for r in _dequeue(instance, backfill + other + nightly) if r.tags.get("dagster/backfill")]) == 2


@pytest.mark.postgres
def test_a_year_of_daily_ingest_is_two_range_runs_that_run_at_once(pg_dagster_home, tmp_path):
    """The daily ingestion and gold assets backfill in range runs of at most BACKFILL_DAYS_PER_RUN days: a year
    is two runs, and the queue's backfill limit lets both run together (one a core: benchmarks/bench_backfill)."""
    from assets.gold import gold_grid_health_daily, gold_load_daily, gold_load_hourly
    from assets.ingestion import ingestion_assets
    from assets.partitions import BACKFILL_DAYS_PER_RUN

    daily_assets = [*ingestion_assets, gold_load_hourly, gold_load_daily, gold_grid_health_daily]  # daily_ingest's
    policies = {a.node_def.name: a.backfill_policy for a in daily_assets}
    assert policies and all(p.max_partitions_per_run == BACKFILL_DAYS_PER_RUN for p in policies.values()), policies
    assert -(-365 // BACKFILL_DAYS_PER_RUN) == 2
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    day0 = dt.date(2025, 12, 1)
    runs = [
        DagsterRun(
            job_name="daily_ingest",
            tags={
                "dagster/backfill": "year",
                "dagster/asset_partition_range_start": (day0 + dt.timedelta(days=lo)).isoformat(),
                "dagster/asset_partition_range_end": (
                    day0 + dt.timedelta(days=min(365, lo + BACKFILL_DAYS_PER_RUN) - 1)
                ).isoformat(),
            },
        )
        for lo in range(0, 365, BACKFILL_DAYS_PER_RUN)
    ]
    assert len(_dequeue(instance, runs)) == 2
