"""Gold assets: load rollups per meter / transformer / feeder and daily grid health (lake.gold).

Daily assets take one partition per run, or a backfill's whole range in one run (each day is still
replaced on its own), like the ingestion assets they follow.
"""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.ingestion import gx_check_specs, gx_checks, run_log
from assets.partitions import daily, daily_backfill, monthly
from assets.queues import queue_tags
from assets.resources import GridSettings, LakeResource
from contracts import TABLES
from lake import gold, plots

_T = TABLES
_DAILY = dict(
    group_name="gold",
    op_tags=queue_tags("ingest"),
    partitions_def=daily,
    backfill_policy=daily_backfill,
    kinds={"delta", "polars"},
)


def _days(context: AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def _write(context, lk, name: str, df, partition: dt.date):
    w = lk.write_partition(_T[name], df, partition)
    # a range run (a backfill): the routine per-day line to the Python log, not one event-log insert a day
    run_log(context, context.partition_keys)(f"{name} {partition}: {w.rows} rows (v{w.version})")
    return w


def _levels(df) -> dict:
    return {k: int(v) for k, v in df.group_by("level").len().iter_rows()} if df.height else {}


@asset(
    deps=["silver_meter_readings", "ref_meters", "ref_transformers"],
    description=_T["gold_load_hourly"].description,
    check_specs=gx_check_specs("gold_load_hourly"),
    **_DAILY,
)
def gold_load_hourly(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings):
    lk, days = lake.lake(), _days(context)
    meters, transformers = lk.read("ref_meters"), lk.read("ref_transformers")
    rows, last = 0, None
    # one read plan for the range; only the columns the rollup reads are decoded
    silver = lk.scan_days(_T["silver_meter_readings"], days).select("date", *gold.HOURLY_INPUT)
    for day in days:
        df = gold.load_hourly(silver.filter(pl.col("date") == day).drop("date").collect(), meters, transformers, day)
        if df.height == 0:
            raise ValueError(f"silver_meter_readings has no rows for {day}: nothing to roll up")
        rows += _write(context, lk, "gold_load_hourly", df, day).rows
        last = (day, df)
    day, df = last
    png = plots.load_profile_png(df, grid.timezone, f"{day}")
    yield MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "rows_by_level": MetadataValue.json(_levels(df)),
            "load_profile": MetadataValue.md(plots.png_markdown(png, f"feeder load {day}")),
        }
    )
    yield from gx_checks(lk, _T["gold_load_hourly"], days)


@asset(deps=["gold_load_hourly"], description=_T["gold_load_daily"].description, **_DAILY)
def gold_load_daily(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings) -> MaterializeResult:
    lk, rows, days = lake.lake(), 0, _days(context)
    hourly = lk.scan_days(_T["gold_load_hourly"], days)
    for day in days:
        df = gold.load_daily(hourly.filter(pl.col("date") == day).collect(), day, grid.timezone)
        rows += _write(context, lk, "gold_load_daily", df, day).rows
    top = df.filter(pl.col("level") == "feeder").sort("energy_kwh", descending=True).head(5)
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "rows_by_level": MetadataValue.json(_levels(df)),
            "top_feeders_kwh": MetadataValue.md(
                top.select("entity_id", "energy_kwh", "peak_kw").to_pandas().to_markdown(index=False)
            ),
        }
    )


@asset(
    op_tags=queue_tags("ingest"),
    group_name="gold",
    partitions_def=monthly,
    deps=["gold_load_daily"],
    kinds={"delta", "polars"},
    description=_T["gold_load_monthly"].description,
)
def gold_load_monthly(context: AssetExecutionContext, lake: LakeResource, grid: GridSettings) -> MaterializeResult:
    lk = lake.lake()
    month = dt.date.fromisoformat(context.partition_key)
    nxt = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    daily_rows = lk.scan("gold_load_daily").filter(pl.col("date") >= month, pl.col("date") < nxt).collect()
    if daily_rows.height == 0:
        raise ValueError(f"gold_load_daily has no rows in {month:%Y-%m}")
    df = gold.load_monthly(daily_rows, month, grid.timezone)
    w = lk.write_partition(_T["gold_load_monthly"], df, month)
    return MaterializeResult(metadata={"dagster/row_count": w.rows, "days_with_data": int(df["days"].max())})


@asset(
    deps=["silver_meter_readings", "silver_scada", "ref_meters", "ref_transformers"],
    description=_T["gold_grid_health_daily"].description,
    **_DAILY,
)
def gold_grid_health_daily(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    lk, rows = lake.lake(), 0
    meters, transformers = lk.read("ref_meters"), lk.read("ref_transformers")
    days = _days(context)
    silver = lk.scan_days(_T["silver_meter_readings"], days).select("date", "meter_id", "voltage", "quality_flag")
    scada = lk.scan_days(_T["silver_scada"], days).select("date", "transformer_id", "load_kva", "hot_spot_temp_c")
    for day in days:
        df = gold.grid_health_daily(
            silver.filter(pl.col("date") == day).drop("date").collect(),
            scada.filter(pl.col("date") == day).drop("date").collect(),
            meters,
            transformers,
            day,
        )
        rows += _write(context, lk, "gold_grid_health_daily", df, day).rows
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "transformers_over_100pct": int(df["transformers_over_100pct"].sum()),
            "worst_feeder_voltage_p05": float(df["voltage_p05"].min()) if df.height else None,
            "max_loading_pct": float(df["max_loading_pct"].max())
            if df.height and df["max_loading_pct"].max() is not None
            else None,
        }
    )
