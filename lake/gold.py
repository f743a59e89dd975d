"""Gold rollups: load per meter / transformer / feeder by hour, day and month; daily grid health.

Aggregation rules (documented because they decide the numbers engineers see):
- energy_kwh is the sum of imported interval energy (``consumption_kwh``), exact at every level;
- demand is first put on a common 30-minute grid per meter (mean of its readings in the slot),
  so 15- and 30-minute meters add up correctly; a transformer's or feeder's demand in a slot is
  the sum over its meters, and ``peak_kw`` is the highest slot of the period;
- ``mean_kw`` = energy_kwh / hours in the period (an average import rate);
- transformer ``loading_pct_max`` = peak_kw / rating_kva x 100 (unity power factor assumed);
- daily rows are built from the hourly gold of the same day, monthly rows from the daily gold,
  so the three grains always agree.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from contracts import UTC_TS

LEVELS = ("meter", "transformer", "feeder")
#: the silver meter columns load_hourly reads (a caller may read only these)
HOURLY_INPUT = ("meter_id", "reading_time", "consumption_kwh", "demand_kw", "quality_flag")


def _local_midnight_utc(d: dt.date, tz: str) -> pl.Expr:
    return pl.lit(dt.datetime(d.year, d.month, d.day)).dt.replace_time_zone(tz).dt.convert_time_zone("UTC").cast(UTC_TS)


#: 30-minute slots since the epoch fit in the low 32 bits of an integer group key (entity code in the high bits)
_SLOT_US = 1_800_000_000
_HIGH = 1 << 32


#: a level's hour from its 30-minute slots (kwh, kw, n, nf)
_HOURLY_AGG = (
    pl.col("kwh").sum().alias("energy_kwh"),
    pl.col("kw").max().alias("peak_kw"),
    pl.col("n").sum().alias("n_readings"),
    pl.col("nf").sum().alias("n_flagged"),
)


def _hourly_rows(
    hourly: pl.LazyFrame, level: str, entity: pl.Expr, period: pl.Expr, transformers: pl.DataFrame
) -> pl.LazyFrame:
    """A level's hourly aggregates as gold_load_hourly rows (row order kept); transformers get their rating."""
    hourly = hourly.select(
        pl.lit(level).alias("level"),
        entity.alias("entity_id"),
        period.alias("period_start"),
        "energy_kwh",
        pl.col("energy_kwh").alias("mean_kw"),  # one hour: kWh == average kW
        "peak_kw",
        "n_readings",
        "n_flagged",
    )
    if level == "transformer":
        return hourly.join(
            transformers.lazy().select(pl.col("transformer_id").alias("entity_id"), "rating_kva"),
            on="entity_id",
            how="left",
            maintain_order="left",
        ).with_columns((pl.col("peak_kw") / pl.col("rating_kva") * 100).alias("loading_pct_max"))
    return hourly.with_columns(
        pl.lit(None, pl.Float64).alias("rating_kva"), pl.lit(None, pl.Float64).alias("loading_pct_max")
    )


def _codes(meters: pl.DataFrame) -> pl.DataFrame:
    """ref_meters' ids with integer codes in sort order: meter_id -> its position among the sorted meter ids,
    transformer/feeder id -> its dense rank among theirs (from 1; a null id is 0, first as a null sorts). Grouping and sorting on these
    integers orders rows exactly as grouping and sorting on the id strings does."""
    return (
        meters.select("meter_id", "transformer_id", "feeder_id")
        .sort("meter_id")
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("_m"),
            pl.col("transformer_id").rank("dense").cast(pl.Int64).fill_null(0).alias("_t"),
            pl.col("feeder_id").rank("dense").cast(pl.Int64).fill_null(0).alias("_f"),
        )
    )


def load_hourly(silver: pl.DataFrame, meters: pl.DataFrame, transformers: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Hourly load for every level from one day of silver meter readings.

    ``meters`` is ref_meters (meter_id, transformer_id, feeder_id); ``transformers`` is
    ref_transformers (transformer_id, rating_kva).

    Every grouping and sort is on one integer key (an entity's code in sort order, see ``_codes``, and the
    30-minute slot since the epoch), not on id strings and timestamps: the same groups, rows in the same order
    as sorting on (meter_id, slot) gives, so the sums are the same to the bit (tests/lake/test_gold.py compares
    with the string-keyed reference, ``_load_hourly_by_id``); ~2x less CPU a day at 10,000 meters
    (docs/DECISIONS.md). A meter missing from ref_meters takes the reference path.
    """
    if silver.height == 0:
        return pl.DataFrame()
    codes = _codes(meters)
    coded = silver.lazy().join(codes.lazy().select("meter_id", "_m", "_t", "_f"), on="meter_id", how="left")
    slot = pl.col("reading_time").dt.epoch("us") // _SLOT_US
    rows = (
        coded.select(
            (pl.col("_m") * _HIGH + slot).alias("k"),
            "_t",
            "_f",
            "consumption_kwh",
            "demand_kw",
            (pl.col("quality_flag") != "ok").cast(pl.Int64).alias("flagged"),
        )
        .collect()
        .sort("k")
    )
    if rows["k"].null_count():  # a meter ref_meters does not know: no code; the id-keyed path keeps it
        return _load_hourly_by_id(silver, meters, transformers, day)
    k = rows["k"]
    if k.len() < 2 or (k.slice(1) != k.slice(0, k.len() - 1)).all():
        # one reading per meter and slot (30-minute meters): the slot's sum and mean are the reading itself
        # (+ 0.0: a sum starts at 0.0, so -0.0 comes out as 0.0 there too)
        slots = rows.select(
            "k",
            "_t",
            "_f",
            (pl.col("consumption_kwh") + 0.0).alias("kwh"),
            (pl.col("demand_kw") + 0.0).alias("kw"),
            pl.lit(1, pl.UInt32).alias("n"),
            pl.col("flagged").alias("nf"),
        )
    else:
        # sorted (meter, slot) and aggregated eagerly: lazy group_by sums its partial aggregates in a
        # thread-dependent order, and a float sum depends on its order; so the transformer/feeder sums over meters
        # are bit-identical from run to run (the unit commitment downstream is a MIP stopped at its gap)
        slots = rows.group_by("k", "_t", "_f", maintain_order=True).agg(
            pl.col("consumption_kwh").sum().alias("kwh"),
            pl.col("demand_kw").mean().alias("kw"),
            pl.len().alias("n"),
            pl.col("flagged").sum().alias("nf"),
        )
    slots = slots.with_columns((pl.col("k") % _HIGH).alias("_s"), (pl.col("k") // _HIGH).alias("_m"))
    as_ts = lambda e: (e * _SLOT_US).cast(UTC_TS)  # noqa: E731
    ids = {
        "meter": codes.select("_m", pl.col("meter_id").alias("entity_id")),
        "transformer": codes.select("_t", pl.col("transformer_id").alias("entity_id")).unique("_t"),
        "feeder": codes.select("_f", pl.col("feeder_id").alias("entity_id")).unique("_f"),
    }
    out = {}
    for level, code in (("meter", "_m"), ("transformer", "_t"), ("feeder", "_f")):
        # a meter's slots are already one row each; coarser levels add their meters' slots first (eagerly, on
        # rows in (meter, slot) order: the same order of addition as before the integer keys)
        per_slot = (
            slots
            if level == "meter"
            else slots.group_by((pl.col(code) * _HIGH + pl.col("_s")).alias("k")).agg(
                pl.col("kwh").sum(), pl.col("kw").sum(), pl.col("n").sum(), pl.col("nf").sum()
            )
        )
        hourly = (
            per_slot.with_columns((pl.col("k") - pl.col("k") % 2).alias("_h"))  # an hour is two 30-minute slots
            .group_by("_h")
            .agg(*_HOURLY_AGG)
            .lazy()
            .with_columns((pl.col("_h") // _HIGH).alias(code), (pl.col("_h") % _HIGH).alias("_s"))
            .join(ids[level].lazy(), on=code, how="left")
            .sort(code, "_s")
        )
        out[level] = _hourly_rows(hourly, level, pl.col("entity_id"), as_ts(pl.col("_s")), transformers)
    # the levels in name order (feeder, meter, transformer), each sorted by entity and hour: the table's row order
    return (
        pl.concat([out[k] for k in sorted(out)], how="vertical_relaxed")
        .with_columns(pl.lit(day).alias("date"))
        .collect()
    )


def _load_hourly_by_id(
    silver: pl.DataFrame, meters: pl.DataFrame, transformers: pl.DataFrame, day: dt.date
) -> pl.DataFrame:
    """``load_hourly`` grouped and sorted on the id strings and timestamps themselves: the reference its
    integer-keyed path is checked against (tests/lake/test_gold.py), and the path for a meter ref_meters
    does not know."""
    if silver.height == 0:
        return pl.DataFrame()
    topo = meters.lazy().select("meter_id", "transformer_id", "feeder_id")
    # per meter and 30-minute slot: energy and average demand; grouped on the meter alone and joined to the
    # topology afterwards (one row per slot, not per reading), collected once so the three levels share it
    slots = (
        silver.lazy()
        .select(
            "meter_id",
            pl.col("reading_time").dt.truncate("30m").alias("slot"),
            "consumption_kwh",
            "demand_kw",
            (pl.col("quality_flag") != "ok").cast(pl.Int64).alias("flagged"),
        )
        .group_by("meter_id", "slot")
        .agg(
            pl.col("consumption_kwh").sum().alias("kwh"),
            pl.col("demand_kw").mean().alias("kw"),
            pl.len().alias("n"),
            pl.col("flagged").sum().alias("nf"),
        )
        .with_columns(pl.col("slot").dt.truncate("1h").alias("hour"))  # 30-minute slots nest in hours
        .join(topo, on="meter_id", how="left")
        # sorted and aggregated eagerly: lazy group_by sums its partial aggregates in a thread-dependent order, and
        # a float sum depends on its order; so the transformer/feeder sums over meters are bit-identical from run to
        # run (the unit commitment downstream is a MIP stopped at its gap: not continuous in its inputs)
        .sort("meter_id", "slot")
        .collect()
    )
    out = []
    for level, id_col in (("meter", "meter_id"), ("transformer", "transformer_id"), ("feeder", "feeder_id")):
        # a meter's slots are already one row each; coarser levels add their meters' slots first
        per_slot = (
            slots
            if level == "meter"
            else slots.group_by(id_col, "hour", "slot").agg(
                pl.col("kwh").sum(), pl.col("kw").sum(), pl.col("n").sum(), pl.col("nf").sum()
            )
        )
        hourly = per_slot.group_by(id_col, "hour").agg(*_HOURLY_AGG).lazy()
        out.append(_hourly_rows(hourly, level, pl.col(id_col), pl.col("hour"), transformers))
    return (
        pl.concat(out, how="vertical_relaxed")
        .with_columns(pl.lit(day).alias("date"))
        .sort("level", "entity_id", "period_start")
        .collect()
    )


def day_hours(day: dt.date, tz: str) -> float:
    """Hours in a local day: 23 on spring-forward, 25 on fall-back, else 24."""
    start = dt.datetime(day.year, day.month, day.day)
    return pl.select(
        (
            pl.lit(start + dt.timedelta(days=1)).dt.replace_time_zone(tz) - pl.lit(start).dt.replace_time_zone(tz)
        ).dt.total_hours()
    ).item()


def _rollup(frame: pl.DataFrame, *extra: pl.Expr) -> pl.DataFrame:
    """The aggregation every coarser grain applies to the finer one."""
    return frame.group_by("level", "entity_id").agg(
        pl.col("energy_kwh").sum(),
        pl.col("peak_kw").max(),
        pl.col("n_readings").sum(),
        pl.col("n_flagged").sum(),
        pl.col("rating_kva").first(),
        pl.col("loading_pct_max").max(),
        *extra,
    )


def load_daily(hourly: pl.DataFrame, day: dt.date, tz: str) -> pl.DataFrame:
    """Daily rows from the same day's hourly gold; mean_kw over the local day's 23, 24 or 25 hours."""
    if hourly.height == 0:
        return pl.DataFrame()
    return (
        _rollup(hourly)
        .with_columns(
            pl.lit(day).alias("date"),
            _local_midnight_utc(day, tz).alias("period_start"),
            (pl.col("energy_kwh") / day_hours(day, tz)).alias("mean_kw"),
        )
        .sort("level", "entity_id")
    )


def load_monthly(daily: pl.DataFrame, month: dt.date, tz: str) -> pl.DataFrame:
    """Monthly rows from the month's daily gold; mean_kw over the hours of the days with data."""
    if daily.height == 0:
        return pl.DataFrame()
    first = month.replace(day=1)
    hours = pl.DataFrame({"date": (dates := daily["date"].unique().to_list()), "_h": [day_hours(d, tz) for d in dates]})
    return (
        _rollup(
            daily.join(hours, on="date"),
            pl.col("date").n_unique().cast(pl.Int64).alias("days"),
            pl.col("_h").sum().alias("_hours"),
        )
        .with_columns(
            pl.lit(first).alias("month"),
            _local_midnight_utc(first, tz).alias("period_start"),
            (pl.col("energy_kwh") / pl.col("_hours")).alias("mean_kw"),
        )
        .drop("_hours")
        .sort("level", "entity_id")
    )


def grid_health_daily(
    silver_meters: pl.DataFrame,
    silver_scada: pl.DataFrame,
    meters: pl.DataFrame,
    transformers: pl.DataFrame,
    day: dt.date,
    warn_low: float = 210.0,
    warn_high: float = 250.0,
) -> pl.DataFrame:
    """Per feeder: voltage distribution of the meters, and loading/temperature of the transformers."""
    v = (
        silver_meters.join(meters.select("meter_id", "feeder_id"), on="meter_id", how="left")
        .group_by("feeder_id")
        .agg(
            pl.len().cast(pl.Int64).alias("n_readings"),
            pl.col("voltage").min().alias("voltage_min"),
            pl.col("voltage").quantile(0.05).alias("voltage_p05"),
            pl.col("voltage").median().alias("voltage_p50"),
            pl.col("voltage").quantile(0.95).alias("voltage_p95"),
            pl.col("voltage").max().alias("voltage_max"),
            (((pl.col("voltage") < warn_low) | (pl.col("voltage") > warn_high)).mean() * 100).alias(
                "pct_voltage_outside_210_250"
            ),
            (pl.col("quality_flag") == "anomaly").sum().cast(pl.Int64).alias("n_anomaly_flags"),
        )
    )
    tr = transformers.select("transformer_id", "feeder_id", "rating_kva")
    if silver_scada.height:
        per_tr = silver_scada.group_by("transformer_id").agg(
            pl.col("load_kva").max().alias("max_kva"), pl.col("hot_spot_temp_c").max().alias("max_hot_spot")
        )
        per_tr = tr.join(per_tr, on="transformer_id", how="inner").with_columns(
            (pl.col("max_kva") / pl.col("rating_kva") * 100).alias("loading_pct")
        )
    else:
        per_tr = tr.with_columns(
            pl.lit(None, pl.Float64).alias("loading_pct"), pl.lit(None, pl.Float64).alias("max_hot_spot")
        ).head(0)
    t = per_tr.group_by("feeder_id").agg(
        pl.len().cast(pl.Int64).alias("n_transformers"),
        (pl.col("loading_pct") > 80).sum().cast(pl.Int64).alias("transformers_over_80pct"),
        (pl.col("loading_pct") > 100).sum().cast(pl.Int64).alias("transformers_over_100pct"),
        pl.col("loading_pct").max().alias("max_loading_pct"),
        pl.col("max_hot_spot").max().alias("max_hot_spot_c"),
    )
    out = v.join(t, on="feeder_id", how="full", coalesce=True).with_columns(
        pl.lit(day).alias("date"),
        pl.col("n_readings").fill_null(0),
        pl.col("pct_voltage_outside_210_250").fill_null(0.0),
        pl.col("n_anomaly_flags").fill_null(0),
        pl.col("n_transformers").fill_null(0),
        pl.col("transformers_over_80pct").fill_null(0),
        pl.col("transformers_over_100pct").fill_null(0),
    )
    return out.filter(pl.col("feeder_id").is_not_null()).sort("feeder_id")
