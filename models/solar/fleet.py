"""Fleet aggregation: PV systems grouped by feeder, their power summed, and per-system (or
per-feeder) forecasts summed to feeder / substation (or the system).

p50s add. For p10/p90 the sum of member quantiles is exact only if systems move together
(comonotone), which is close for nearby roofs under the same clouds and errs on the wide (safe)
side otherwise; ``independent=True`` instead combines the spreads in quadrature around the
summed median (the other extreme). Both are documented bounds, not a fitted copula.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import polars as pl

from models.solar.pv import PVSystem, simulate_power, systems_from_meters


def feeder_pv_systems(ref_meters: pl.DataFrame) -> dict[str, list[PVSystem]]:
    """PV systems of ``ref_meters`` (meters with ``has_pv``) grouped by feeder_id."""
    out: dict[str, list[PVSystem]] = {}
    for s in systems_from_meters(ref_meters):
        out.setdefault(s.feeder_id, []).append(s)
    return out


def fleet_power(systems: list[PVSystem], weather: pd.DataFrame) -> pd.DataFrame:
    """PVWatts power of a feeder's fleet from weather: :func:`simulate_power` per system, with
    ``ac_kw`` and ``clearsky_ac_kw`` summed over the systems. Sun geometry, GHI and temperature
    are the first system's (roofs on one feeder are a few km apart); ``wind_speed_ms`` is the
    weather's when it has that column."""
    frames = [simulate_power(s, weather) for s in systems]
    obs = frames[0].copy()
    obs["ac_kw"] = sum(f["ac_kw"] for f in frames)
    obs["clearsky_ac_kw"] = sum(f["clearsky_ac_kw"] for f in frames)
    if "wind_speed_ms" in weather:
        obs["wind_speed_ms"] = weather["wind_speed_ms"].to_numpy(float)
    return obs


def fleet_clearsky(
    systems: list[PVSystem], index: pd.DatetimeIndex, temp_air_c: np.ndarray | pd.Series
) -> pd.DataFrame:
    """Sun position (``zenith``, ``azimuth``), the fleet's summed clear-sky power
    (``clearsky_ac_kw``) and clear-sky GHI (``clearsky_ghi_wm2``: forecast weather's index) for future hours ``index`` -- deterministic, what
    ``SolarXGBForecaster.predict`` needs of the target hours. ``temp_air_c`` (one per hour; NaN
    counts as 20 C) sets the cell temperature; the wind is taken as 1 m/s."""
    temp = pd.Series(np.asarray(temp_air_c, float)).fillna(20.0).to_numpy()
    weather = pd.DataFrame(
        {
            "observation_time": index,
            "ghi_wm2": 0.0,
            "dni_wm2": 0.0,
            "dhi_wm2": 0.0,
            "temp_air_c": temp,
            "wind_speed_ms": 1.0,
        }
    )
    return fleet_power(systems, weather)[["zenith", "azimuth", "clearsky_ac_kw", "clearsky_ghi_wm2"]]


def system_total(forecasts: pl.DataFrame, n_feeders: int) -> pl.DataFrame:
    """Feeder forecasts (period_start, horizon_h, p10, p50, p90, model; p05/p95 if present) summed to one system
    forecast, quantile by quantile (comonotone: errs wide, as :func:`aggregate_fleet`). Only
    hours that all ``n_feeders`` forecast are kept; ``model`` is one feeder's."""
    band90 = [c for c in ("p05", "p95") if c in forecasts.columns]
    agg = forecasts.group_by("period_start", "horizon_h").agg(
        pl.col("p10", "p50", "p90").sum(),
        # the 90 % band only where every feeder has one (a fallback feeder has none)
        *[pl.when(pl.col(c).null_count() == 0).then(pl.col(c).sum()).alias(c) for c in band90],
        pl.col("model").first(),
        pl.len().alias("_n"),
    )
    return agg.filter(pl.col("_n") == n_feeders).drop("_n").sort("period_start")


def aggregate_fleet(
    forecasts: pl.DataFrame,
    systems: Iterable[PVSystem],
    *,
    level: str = "feeder",
    id_col: str = "system_id",
    independent: bool = False,
) -> pl.DataFrame:
    """Sum per-system forecasts (columns id_col, period_start, horizon_h, p10, p50, p90).

    Returns level, entity_id, period_start, horizon_h, p10, p50, p90, n_systems, capacity_kw.
    """
    if level not in ("feeder", "substation"):
        raise ValueError(f"level must be 'feeder' or 'substation', got {level!r}")
    attr = f"{level}_id"
    rows = []
    for s in systems:
        parent = getattr(s, attr)
        if parent is None:
            raise ValueError(f"PV system {s.system_id!r} has no {attr}")
        rows.append({id_col: s.system_id, "entity_id": parent, "capacity_kw": s.kw_dc})
    if not rows:
        raise ValueError("no PV systems to aggregate")
    mapping = pl.DataFrame(rows)
    unknown = set(forecasts[id_col].unique()) - set(mapping[id_col])
    if unknown:
        raise ValueError(f"forecasts for unknown system(s) {sorted(unknown)[:5]}")
    df = forecasts.join(mapping, on=id_col, how="inner")
    keys = ["entity_id", "period_start", "horizon_h"]
    if independent:
        agg = df.group_by(keys).agg(
            pl.col("p50").sum(),
            ((pl.col("p50") - pl.col("p10")) ** 2).sum().sqrt().alias("lo"),
            ((pl.col("p90") - pl.col("p50")) ** 2).sum().sqrt().alias("hi"),
            pl.len().alias("n_systems"),
            pl.col("capacity_kw").sum(),
        )
        agg = agg.with_columns(
            (pl.col("p50") - pl.col("lo")).clip(0).alias("p10"), (pl.col("p50") + pl.col("hi")).alias("p90")
        )
    else:
        agg = df.group_by(keys).agg(
            pl.col("p10").sum(),
            pl.col("p50").sum(),
            pl.col("p90").sum(),
            pl.len().alias("n_systems"),
            pl.col("capacity_kw").sum(),
        )
    return agg.select(pl.lit(level).alias("level"), *keys, "p10", "p50", "p90", "n_systems", "capacity_kw").sort(keys)
