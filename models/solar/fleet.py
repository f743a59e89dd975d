"""Fleet aggregation: per-system PV forecasts summed to feeder / substation.

p50s add. For p10/p90 the sum of member quantiles is exact only if systems move together
(comonotone), which is close for nearby roofs under the same clouds and errs on the wide (safe)
side otherwise; ``independent=True`` instead combines the spreads in quadrature around the
summed median (the other extreme). Both are documented bounds, not a fitted copula.
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from models.solar.pv import PVSystem


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
        agg = agg.with_columns((pl.col("p50") - pl.col("lo")).clip(0).alias("p10"), (pl.col("p50") + pl.col("hi")).alias("p90"))
    else:
        agg = df.group_by(keys).agg(
            pl.col("p10").sum(), pl.col("p50").sum(), pl.col("p90").sum(), pl.len().alias("n_systems"), pl.col("capacity_kw").sum()
        )
    return agg.select(
        pl.lit(level).alias("level"), *keys, "p10", "p50", "p90", "n_systems", "capacity_kw"
    ).sort(keys)
