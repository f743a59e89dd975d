"""Between gridlake's tables and the load forecasters: the system total, temperature as an
exogenous input (history and forecast hours) and the rows of the forecast tables.

Plain polars/pandas (no lake access, no Dagster): ``assets/forecasting.py`` reads
``gold_load_hourly`` / ``silver_weather``, calls these, and writes ``gold_load_forecast`` /
``gold_solar_forecast``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl

from contracts import SYSTEM_ENTITY as SYSTEM  # the whole network: the sum over feeders


def with_system_total(feeders: pl.DataFrame) -> pl.DataFrame:
    """Feeder rows (entity_id, period_start, mean_kw) plus the ``SYSTEM`` total, sorted by entity
    and time. The total exists only for hours where every feeder reported: a missing feeder is a
    gap, not a dip in demand."""
    n = feeders["entity_id"].n_unique()
    system = (
        # sorted first: a float sum depends on its order, so the total has the same bits whatever the read order
        feeders.sort("period_start", "entity_id")
        .group_by("period_start")
        .agg(pl.col("mean_kw").sum(), pl.len().alias("_n"))
        .filter(pl.col("_n") == n)
        .select(pl.lit(SYSTEM).alias("entity_id"), "period_start", "mean_kw")
    )
    return pl.concat([feeders, system]).sort("entity_id", "period_start")


def with_temperature(load: pl.DataFrame, weather: pl.DataFrame) -> pl.DataFrame:
    """Join weather ``temp_air_c`` (by ``observation_time``) on ``period_start``; hours without
    weather keep a null (the model then says which)."""
    w = weather.select(pl.col("observation_time").alias("period_start"), "temp_air_c")
    return load.join(w, on="period_start", how="left")


def future_temperature(weather: pl.DataFrame, index: pd.DatetimeIndex) -> tuple[pd.DataFrame, dict[str, int]]:
    """``temp_air_c`` for the forecast hours ``index``.

    Hours present in ``weather`` (a forecast feed) are taken as they are, the others from the
    same hour 1, 2 or 3 days earlier (diurnal persistence; nearest day first); hours still
    unknown stay NaN. Returns the frame (period_start, temp_air_c) and the counts
    ``{"from_weather_table": n, "persisted": m}``.
    """
    s = (
        weather.select("observation_time", "temp_air_c")
        .drop_nulls()
        .to_pandas()
        .set_index("observation_time")["temp_air_c"]
    )
    s.index = pd.DatetimeIndex(s.index).tz_convert("UTC")
    vals = s.reindex(index)
    counts = {"from_weather_table": int(vals.notna().sum())}
    vals, counts["persisted"] = persist_diurnal(vals, s)
    return pd.DataFrame({"period_start": index, "temp_air_c": vals.to_numpy()}), counts


def persist_diurnal(vals: pd.Series, observed: pd.Series) -> tuple[pd.Series, int]:
    """Fill the NaN hours of ``vals`` (indexed by UTC hour) from ``observed`` at the same hour 1, 2
    or 3 days earlier (nearest first); returns the filled series and how many hours were filled."""
    n = 0
    for k in (1, 2, 3):
        if not vals.isna().any():
            break
        prev = pd.Series(observed.reindex(vals.index - k * pd.Timedelta(days=1)).to_numpy(), index=vals.index)
        fill = vals.isna() & prev.notna()
        n += int(fill.sum())
        vals = vals.where(~fill, prev)
    return vals, n


def forecast_rows(
    fc: pl.DataFrame, day: dt.date, level: str, entity: str, issued_at: pd.Timestamp, version: str, reason: str | None
) -> pl.DataFrame:
    """A forecaster's output (period_start, horizon_h, p10, p50, p90, model, and p05/p95 when
    the model calibrates a 90 % band, else null) as rows of ``gold_load_forecast`` /
    ``gold_solar_forecast``: partition ``day``, the entity, the issue time, the model version
    (``'fallback'`` when the champion was not used) and why."""
    band90 = [
        pl.col(c).cast(pl.Float64) if c in fc.columns else pl.lit(None, pl.Float64).alias(c) for c in ("p05", "p95")
    ]
    return fc.select(
        pl.lit(day).alias("date"),
        pl.lit(level).alias("level"),
        pl.lit(entity).alias("entity_id"),
        pl.lit(issued_at.to_pydatetime()).cast(pl.Datetime("us", "UTC")).alias("issued_at"),
        "period_start", "horizon_h", "p10", "p50", "p90", "model",
        pl.lit(version).alias("model_version"),
        pl.lit(reason, pl.Utf8).alias("fallback_reason"),
        *band90,
    )  # fmt: skip
