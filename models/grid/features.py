"""Per-reading features for anomaly detection, from silver (or raw-contract) polars frames.

Both builders return one row per input row, sorted by ``(asset_id, time)``, with the generic key
columns ``asset_id`` and ``time`` (so one ensemble class serves meters and transformers) followed by
float features. Why each feature exists:

Meters
- ``v_dev_nominal``: voltage deviation from nominal (sags, bad service);
- ``v_dev_rolling``: voltage minus the meter's previous-day mean (a sag is sudden; a meter's own
  offset is not);
- ``load_change``: change of demand since the previous reading, relative to the meter's typical size;
- ``dev_rolling``: demand minus the meter's previous-day mean, in its previous-day standard deviations;
- ``level_ratio``: log of the last day's mean import over the 7 days before (theft and zero meters
  remove a share of the energy for days; the short window adapts to them, this one does not);
- ``flat_demand``/``flat_voltage``: log standard deviation over the last few readings (a stuck
  register repeats one value; noise never does);
- ``zero_share_7d``: share of zero readings in the previous week (a home battery legitimately nets to
  zero each evening; a meter that suddenly reads zero does not);
- ``power_factor``, local ``hour_sin``/``hour_cos`` and ``weekend`` (what is normal depends on them);
- ``n_missing``: null/NaN measures in the row. A meter without supply reports no voltage: missing
  values are evidence, so they are counted here and imputed with the training median by the model.

Transformers
- ``utilisation`` (kVA / rating) and ``load_change``;
- ``rise_over_ambient``: top-oil temperature minus the air temperature (from the weather feed);
- ``excess_rise``: that rise minus the IEEE C57.91 top-oil model's expectation for the recent load
  (an exponential response with the oil time constant): degraded cooling shows here first;
- ``hot_spot_gradient``, ``v_dev_nominal``, ``v_dev_rolling``, ``freq_dev``, time of day, ``n_missing``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from .config import FeatureConfig

METER_FEATURES: tuple[str, ...] = (
    "v_dev_nominal",
    "v_dev_rolling",
    "load_change",
    "dev_rolling",
    "level_ratio",
    "flat_demand",
    "flat_voltage",
    "zero_share_7d",
    "power_factor",
    "hour_sin",
    "hour_cos",
    "weekend",
    "n_missing",
)
#: per-reading features the autoencoder sees over a short window of consecutive readings
METER_WINDOW_FEATURES: tuple[str, ...] = ("dev_rolling", "v_dev_rolling", "load_change", "flat_demand")

TRANSFORMER_FEATURES: tuple[str, ...] = (
    "utilisation",
    "load_change",
    "rise_over_ambient",
    "excess_rise",
    "hot_spot_gradient",
    "v_dev_nominal",
    "v_dev_rolling",
    "freq_dev",
    "hour_sin",
    "hour_cos",
    "weekend",
    "n_missing",
)
TRANSFORMER_WINDOW_FEATURES: tuple[str, ...] = ("excess_rise", "v_dev_rolling", "load_change", "utilisation")

METER_INPUT = ("meter_id", "reading_time", "demand_kw", "voltage", "power_factor")
SCADA_INPUT = (
    "transformer_id",
    "sample_time",
    "load_kva",
    "top_oil_temp_c",
    "hot_spot_temp_c",
    "voltage_v",
    "frequency_hz",
)


class FeatureInputError(ValueError):
    """Input frame unusable for feature building (missing columns, duplicates, unknown assets)."""


def require_columns(df: pl.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    """Raise a :class:`FeatureInputError` naming the missing columns of ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FeatureInputError(f"{what}: missing column(s) {missing}; got {df.columns}")


def local_date(col: str, tz: str) -> pl.Expr:
    """The local calendar date (in ``tz``) of the UTC timestamp column ``col``."""
    return pl.col(col).dt.convert_time_zone(tz).dt.date()


def _check_duplicates(df: pl.DataFrame, key: tuple[str, str], what: str) -> None:
    dup = df.select(pl.struct(key).is_duplicated()).to_series()
    if dup.any():
        first = df.filter(dup).row(0, named=True)
        raise FeatureInputError(
            f"{what}: {int(dup.sum())} rows share a ({key[0]}, {key[1]}) key, e.g. "
            f"{first[key[0]]} at {first[key[1]]}; deduplicate first (silver tables already are)"
        )


def _clock(time_col: str, tz: str) -> list[pl.Expr]:
    local = pl.col(time_col).dt.convert_time_zone(tz)
    h = local.dt.hour().cast(pl.Float64) + local.dt.minute().cast(pl.Float64) / 60.0
    return [
        (h * (2 * math.pi / 24)).sin().alias("hour_sin"),
        (h * (2 * math.pi / 24)).cos().alias("hour_cos"),
        (local.dt.weekday() >= 6).cast(pl.Float64).alias("weekend"),
    ]


def _prepare(df: pl.DataFrame, entity: str, time: str, measures: tuple[str, ...], what: str) -> pl.DataFrame:
    if df.schema[time] != pl.Datetime("us", "UTC") and not isinstance(df.schema[time], pl.Datetime):
        raise FeatureInputError(f"{what}: column {time!r} must be a datetime, got {df.schema[time]}")
    out = df.select(
        pl.col(entity).cast(pl.Utf8).alias("asset_id"),
        pl.col(time).dt.replace_time_zone("UTC")
        if df.schema[time].time_zone is None
        else pl.col(time).dt.convert_time_zone("UTC"),
        *[pl.col(m).cast(pl.Float64).fill_nan(None) for m in measures],
    ).rename({time: "time"})
    if out["asset_id"].null_count():
        raise FeatureInputError(f"{what}: {out['asset_id'].null_count()} row(s) have a null {entity}")
    if out["time"].null_count():
        raise FeatureInputError(f"{what}: {out['time'].null_count()} row(s) have a null {time}")
    _check_duplicates(out, ("asset_id", "time"), what)
    return out.sort("asset_id", "time").with_columns(
        pl.sum_horizontal([pl.col(m).is_null() for m in measures]).cast(pl.Float64).alias("n_missing")
    )


def meter_features(readings: pl.DataFrame, cfg: FeatureConfig) -> pl.DataFrame:
    """Features per meter reading (silver ``meter_readings`` or the raw contract).

    Pass the previous week of readings along with the ones to score: the rolling features look back
    up to 8 days. A meter with less history still gets features (the windows use what exists; the
    level ratio is null, imputed by the model as "no change").
    """
    require_columns(readings, METER_INPUT, "meter readings")
    df = _prepare(readings, "meter_id", "reading_time", METER_INPUT[2:], "meter readings")
    g = "asset_id"
    d = pl.col("demand_kw").fill_null(strategy="forward").over(g).fill_null(0.0)
    v = pl.col("voltage")
    imp = d.clip(lower_bound=0.0)
    sw, lw = cfg.short_window, cfg.long_window
    df = df.with_columns(
        d.alias("_d"),
        imp.alias("_imp"),
        (d.abs() <= 1e-3).cast(pl.Float64).alias("_zero"),
    )
    d, imp = pl.col("_d"), pl.col("_imp")

    def roll(e: pl.Expr, how: str, window: str, closed: str = "left") -> pl.Expr:
        return getattr(e, f"rolling_{how}_by")("time", window_size=window, closed=closed).over(g)

    long_plus_short = f"{_days(lw) + _days(sw)}d"
    df = df.with_columns(
        roll(d, "mean", sw).alias("_d_mean"),
        roll(d, "std", sw).alias("_d_std"),
        roll(d.abs(), "mean", sw).alias("_d_abs"),
        roll(v, "mean", sw).alias("_v_mean"),
        roll(imp, "sum", sw, "right").alias("_s_short"),
        roll(imp, "sum", long_plus_short, "right").alias("_s_long"),
        roll(pl.lit(1.0), "sum", sw, "right").alias("_n_short")
        if False
        else roll(imp.is_not_null().cast(pl.Float64), "sum", sw, "right").alias("_n_short"),
        roll(imp.is_not_null().cast(pl.Float64), "sum", long_plus_short, "right").alias("_n_long"),
        roll(pl.col("_zero"), "mean", lw).alias("zero_share_7d"),
        d.rolling_std(cfg.flat_readings, min_samples=2).over(g).alias("_flat_d"),
        v.rolling_std(cfg.flat_readings, min_samples=2).over(g).alias("_flat_v"),
        (d - d.shift(1).over(g)).alias("_dd"),
    )
    nom = cfg.meter_nominal_v
    prior_n = pl.col("_n_long") - pl.col("_n_short")
    prior_mean = pl.when(prior_n > 0).then((pl.col("_s_long") - pl.col("_s_short")) / prior_n)
    short_mean = pl.col("_s_short") / pl.col("_n_short")
    df = df.with_columns(
        ((v - nom) / nom).alias("v_dev_nominal"),
        ((v - pl.col("_v_mean")) / nom).alias("v_dev_rolling"),
        (pl.col("_dd") / (pl.col("_d_abs") + 0.1)).alias("load_change"),
        ((d - pl.col("_d_mean")) / (pl.col("_d_std").fill_null(0.0) + 0.05)).alias("dev_rolling"),
        ((short_mean + 0.05) / (prior_mean + 0.05)).log().alias("level_ratio"),
        (pl.col("_flat_d") + 1e-4).log10().alias("flat_demand"),
        (pl.col("_flat_v") + 1e-4).log10().alias("flat_voltage"),
        *_clock("time", cfg.timezone),
    )
    return df.select("asset_id", "time", *METER_FEATURES)


def _days(window: str) -> int:
    if not window.endswith("d") or not window[:-1].isdigit():
        raise ValueError(f"window {window!r} must be a whole number of days like '7d'")
    return int(window[:-1])


def ambient_at(times: pl.Series, weather: pl.DataFrame | None) -> np.ndarray:
    """Air temperature (degC) at ``times``, linearly interpolated from the weather feed.

    Several stations are averaged per observation time (the fleet is one service area here). Times
    more than 3 h from any observation get NaN: a temperature that far off would fake a rise.
    """
    out = np.full(len(times), np.nan)
    if weather is None or weather.height == 0:
        return out
    require_columns(weather, ("observation_time", "temp_air_c"), "weather")
    w = (
        weather.select(
            pl.col("observation_time").dt.convert_time_zone("UTC").dt.epoch("us").alias("t"),
            pl.col("temp_air_c").cast(pl.Float64).fill_nan(None),
        )
        .drop_nulls()
        .group_by("t")
        .agg(pl.col("temp_air_c").mean())
        .sort("t")
    )
    if w.height == 0:
        return out
    tw = w["t"].to_numpy().astype(np.float64)
    ta = w["temp_air_c"].to_numpy()
    ts = times.dt.epoch("us").to_numpy().astype(np.float64)
    out = np.interp(ts, tw, ta)
    pos = np.clip(np.searchsorted(tw, ts), 1, len(tw)) if len(tw) > 1 else np.zeros(len(ts), dtype=int)
    near = np.minimum(np.abs(ts - tw[np.clip(pos - 1, 0, len(tw) - 1)]), np.abs(ts - tw[np.clip(pos, 0, len(tw) - 1)]))
    out[near > 3 * 3600e6] = np.nan
    return out


def _ratings(scada_ids: pl.Series, ref_transformers: pl.DataFrame) -> pl.DataFrame:
    require_columns(ref_transformers, ("transformer_id", "rating_kva"), "ref_transformers")
    ref = ref_transformers.select(pl.col("transformer_id").alias("asset_id"), pl.col("rating_kva").cast(pl.Float64))
    unknown = sorted(set(scada_ids.unique().to_list()) - set(ref["asset_id"].to_list()))
    if unknown:
        raise FeatureInputError(f"scada: {len(unknown)} transformer id(s) not in ref_transformers, e.g. {unknown[:5]}")
    bad = ref.filter(~(pl.col("rating_kva") > 0))
    if bad.height:
        raise FeatureInputError(f"ref_transformers: rating_kva must be > 0, got rows {bad.head(5).to_dicts()}")
    return ref


def transformer_features(
    scada: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    weather: pl.DataFrame | None,
    cfg: FeatureConfig,
) -> pl.DataFrame:
    """Features per SCADA sample. Pass the previous day along: the thermal model and the rolling
    voltage need it (its first hours are a warm-up)."""
    require_columns(scada, SCADA_INPUT, "scada")
    df = _prepare(scada, "transformer_id", "sample_time", SCADA_INPUT[2:], "scada")
    df = df.join(_ratings(df["asset_id"], ref_transformers), on="asset_id", how="left")
    df = df.with_columns(pl.Series("_amb", ambient_at(df["time"], weather)).fill_nan(None))
    g = "asset_id"
    step_min = df.select((pl.col("time").diff().over(g).dt.total_seconds() / 60.0).median()).item() or 15.0
    alpha = 1.0 - math.exp(-step_min / cfg.tau_top_oil_min)
    k = (pl.col("load_kva") / pl.col("rating_kva")).alias("utilisation")
    r = cfg.loss_ratio
    ultimate = (
        cfg.top_oil_rise_rated_c
        * ((k.fill_null(strategy="forward").over(g).fill_null(0.0) ** 2 * r + 1.0) / (r + 1.0)) ** cfg.oil_exponent
    )
    df = df.with_columns(
        k,
        ultimate.ewm_mean(alpha=alpha, adjust=False).over(g).alias("_expected_rise"),
        pl.col("voltage_v")
        .rolling_mean_by("time", window_size=cfg.short_window, closed="left")
        .over(g)
        .alias("_v_mean"),
    )
    nom = cfg.transformer_nominal_v
    rise = pl.col("top_oil_temp_c") - pl.col("_amb")
    df = df.with_columns(
        (pl.col("utilisation") - pl.col("utilisation").shift(1).over(g)).alias("load_change"),
        rise.alias("rise_over_ambient"),
        (rise - pl.col("_expected_rise")).alias("excess_rise"),
        (pl.col("hot_spot_temp_c") - pl.col("top_oil_temp_c")).alias("hot_spot_gradient"),
        ((pl.col("voltage_v") - nom) / nom).alias("v_dev_nominal"),
        ((pl.col("voltage_v") - pl.col("_v_mean")) / nom).alias("v_dev_rolling"),
        (pl.col("frequency_hz") - cfg.nominal_frequency_hz).alias("freq_dev"),
        *_clock("time", cfg.timezone),
        (pl.col("n_missing") + pl.col("_amb").is_null().cast(pl.Float64)).alias("n_missing"),
    )
    return df.select("asset_id", "time", *TRANSFORMER_FEATURES)


def window_matrix(
    features: pl.DataFrame, columns: tuple[str, ...], window: int, fill: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Rows of ``window`` consecutive readings of the same asset, oldest first, flattened.

    ``features`` must be sorted by (asset_id, time) as the builders return it. At the start of an
    asset's history the first reading is repeated (edge padding) so every row gets a full window.
    Nulls are replaced by ``fill`` (training medians, one per column). ``rows`` (indices into
    ``features``): only those rows' windows, equal to the same rows of the full matrix (training takes
    a sample of the rows: the whole matrix is ``window`` x the window columns x the frame's rows).
    """
    x = features.select(columns).to_numpy().astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        x[bad] = np.broadcast_to(fill.astype(np.float32), x.shape)[bad]
    ids = features["asset_id"].to_physical() if features["asset_id"].dtype == pl.Categorical else features["asset_id"]
    n = len(x)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (ids[1:] != ids[:-1]).to_numpy()
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    idx = np.arange(n) if rows is None else np.asarray(rows, dtype=np.intp)
    start = start[idx]
    out = np.empty((len(idx), window * len(columns)), dtype=np.float32)
    for j, lag in enumerate(range(window - 1, -1, -1)):
        src = np.maximum(idx - lag, start)
        out[:, j * len(columns) : (j + 1) * len(columns)] = x[src]
    return out


def anomaly_features(
    meters: pl.DataFrame,
    scada: pl.DataFrame,
    weather: pl.DataFrame | None,
    ref_transformers: pl.DataFrame,
    cfg: FeatureConfig,
) -> dict[str, pl.DataFrame]:
    """Anomaly features per stream: ``{"meter": meter_features, "transformer": transformer_features}``.

    A stream with no rows is left out (there is nothing to train on or score), so callers tell an
    empty stream by the missing key.
    """
    feats: dict[str, pl.DataFrame] = {}
    if meters.height:
        feats["meter"] = meter_features(meters, cfg)
    if scada.height:
        feats["transformer"] = transformer_features(scada, ref_transformers, weather, cfg)
    return feats
