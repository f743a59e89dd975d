"""N-1 security of the DC-OPF: the day's peak hour of ``gold_opf_dispatch`` screened for single line outages.

Thin: reads the system rows of ``gold_opf_dispatch`` for the partition (case and the peak hour's bus-load
scale), calls :func:`optimization.contingency.screen_n1` on that case at that scale and writes
:func:`optimization.contingency.screening_table` into ``gold_n1_screening`` (declared in
``contracts.optimisation``). Its own group and job (``n1_screening_daily``), so the optimisation job's
runtime is unchanged; run it after ``optimization_daily``.
"""

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets.partitions import daily_open, partition_day
from assets.queues import queue_tags
from assets.resources import LakeResource
from contracts import TABLES
from optimization.contingency import screen_n1, screening_table
from optimization.dcopf import load_case, scaled_case

GROUP = "security"
OPF_TABLE = "gold_opf_dispatch"


class N1Config(Config):
    rating_factor: float = Field(
        1.0, description="post-outage limit as a multiple of rate A (e.g. 1.2 for short-term emergency ratings)"
    )
    redispatch_worst: int = Field(3, description="security-constrained re-dispatch for this many worst outages")


@asset(
    op_tags=queue_tags("optimise"),
    group_name=GROUP,
    partitions_def=daily_open,
    deps=[OPF_TABLE],
    kinds={"pyomo", "delta"},
    description=TABLES["gold_n1_screening"].description,
)
def gold_n1_screening(context: AssetExecutionContext, config: N1Config, lake: LakeResource) -> MaterializeResult:
    """N-1 overloads at the peak hour of the day's DC-OPF, and re-dispatch of the worst outages."""
    lk, day = lake.lake(), partition_day(context)
    system = lk.read_days(TABLES[OPF_TABLE], day, day).filter(pl.col("kind") == "system")
    if system.height == 0:
        raise FileNotFoundError(
            f"gold_n1_screening {day}: no {OPF_TABLE} rows for {day}; materialise {OPF_TABLE} first"
        )
    peak = system.sort("load_scale", descending=True).row(0, named=True)
    res = screen_n1(scaled_case(load_case(peak["case_name"]), float(peak["load_scale"])), redispatch_worst=config.redispatch_worst,
                    rating_factor=config.rating_factor)  # fmt: skip
    df = screening_table(res).with_columns(pl.lit(day).alias("date"), pl.lit(peak["period_start"]).alias("period_start"),
                                           pl.lit(peak["case_name"]).alias("case_name"))  # fmt: skip
    w = lk.write_partition(TABLES["gold_n1_screening"], df, day)
    return MaterializeResult(metadata={
        "dagster/row_count": w.rows, "delta_version": w.version, "case": peak["case_name"], "peak_hour": str(peak["period_start"]),
        "load_scale": float(peak["load_scale"]), "outages_screened": int(res.base.branches.height - len(res.islanding)),
        "outages_with_overloads": res.contingencies.height, "islanding_outages": len(res.islanding),
        "screening_seconds": round(res.screening_seconds, 3), "redispatch_seconds": round(res.redispatch_seconds, 3),
        "redispatch": MetadataValue.json(res.redispatch.to_dicts()),
    })  # fmt: skip


N1_ASSETS = [gold_n1_screening]
