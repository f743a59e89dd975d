"""Reference (topology) and simulator-truth tables, loaded from ``reference/`` and ``truth/`` in the landing zone."""

import io

import polars as pl
from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, multi_asset

from assets.queues import queue_tags
from assets.resources import LakeResource, LandingResource
from contracts import TABLES

REFERENCE = ("ref_meters", "ref_transformers", "ref_weather_stations")
TRUTH = ("truth_customers", "truth_events")


def _load(
    context: AssetExecutionContext, lake: LakeResource, landing: LandingResource, folder: str, names: tuple[str, ...]
):
    zone, lk = landing.zone(), lake.lake()
    for name in names:
        if name not in context.selected_output_names:
            continue
        key = f"{folder}/{name}.parquet"
        if not zone.exists(key):
            raise FileNotFoundError(
                f"{name}: landing file {zone.uri}/{key} is missing (run the simulator or deliver it)"
            )
        try:
            df = TABLES[name].conform(pl.read_parquet(io.BytesIO(zone.get_bytes(key))))
        except ValueError as e:
            raise ValueError(f"{zone.uri}/{key}: {e}") from e
        w = lk.write_partition(TABLES[name], df, None)
        context.log.info(f"{name}: {w.rows} rows -> {w.uri} (v{w.version})")
        yield MaterializeResult(asset_key=name, metadata={"rows": w.rows, "delta_version": w.version, "uri": w.uri})


@multi_asset(
    op_tags=queue_tags("ingest"),
    specs=[
        AssetSpec(n, group_name="reference", description=TABLES[n].description, kinds={"delta", "polars"})
        for n in REFERENCE
    ],
    can_subset=True,
)
def reference_tables(context: AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """Network topology and stations: meters -> transformers -> feeders -> substations."""
    yield from _load(context, lake, landing, "reference", REFERENCE)


@multi_asset(
    op_tags=queue_tags("ingest"),
    specs=[
        AssetSpec(n, group_name="truth", description=TABLES[n].description, kinds={"delta", "polars"}) for n in TRUTH
    ],
    can_subset=True,
)
def truth_tables(context: AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """The simulator's labelled ground truth (customer archetypes, injected events) for model evaluation."""
    yield from _load(context, lake, landing, "truth", TRUTH)
