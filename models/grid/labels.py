"""Labels from operations: the ``incidents`` a utility records (work orders, investigations).

A utility has no ground truth. What it has arrives late (an incident is confirmed hours to weeks
after it starts), is incomplete (most thefts are never found) and is sometimes wrong (a false
report, a wrong type). The models learn from what was *known at training time*: confirmed
incidents whose ``confirmed_at`` lies before the cut-off, in the shape the evaluation helpers
(:mod:`models.grid.evaluate`) and :func:`models.grid.failure.failure_targets` take
(``event_id, event_type, asset_type, asset_id, start_time, end_time``).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from .features import require_columns

INCIDENT_COLUMNS = (
    "incident_id",
    "asset_type",
    "asset_id",
    "incident_type",
    "start_time",
    "end_time",
    "reported_at",
    "confirmed_at",
    "outcome",
)
EVENT_COLUMNS = ("event_id", "event_type", "asset_type", "asset_id", "start_time", "end_time")


def empty_events() -> pl.DataFrame:
    utc = pl.Datetime("us", "UTC")
    return pl.DataFrame(
        schema={
            "event_id": pl.Utf8,
            "event_type": pl.Utf8,
            "asset_type": pl.Utf8,
            "asset_id": pl.Utf8,
            "start_time": utc,
            "end_time": utc,
        }
    )


def incident_events(
    incidents: pl.DataFrame | None, known_by: dt.datetime | None = None, types: tuple[str, ...] | None = None
) -> pl.DataFrame:
    """Confirmed incidents known by ``known_by`` (``confirmed_at`` before it) as labelled events.

    False reports are left out; an incident still open (no ``end_time``) lasts until it was
    confirmed; one whose end precedes its start (flagged ``warning`` in silver) is left out, since
    its window cannot be placed. ``types`` keeps only those incident types. None or an empty frame
    gives no events (cold start).
    """
    if incidents is None or incidents.height == 0:
        return empty_events()
    require_columns(incidents, INCIDENT_COLUMNS, "incidents")
    inc = incidents.filter(pl.col("outcome") == "confirmed")
    if known_by is not None:
        inc = inc.filter(pl.col("confirmed_at") < pl.lit(known_by).cast(pl.Datetime("us", "UTC")))
    if types is not None:
        inc = inc.filter(pl.col("incident_type").is_in(list(types)))
    inc = inc.with_columns(pl.coalesce("end_time", "confirmed_at").alias("end_time")).filter(
        pl.col("end_time") >= pl.col("start_time")
    )
    return (
        inc.unique("incident_id", keep="last", maintain_order=True)
        .select(
            pl.col("incident_id").alias("event_id"),
            pl.col("incident_type").alias("event_type"),
            "asset_type",
            "asset_id",
            pl.col("start_time").cast(pl.Datetime("us", "UTC")),
            pl.col("end_time").cast(pl.Datetime("us", "UTC")),
        )
        .sort("start_time", "event_id")
    )


def label_summary(events: pl.DataFrame) -> dict[str, int]:
    """Labelled events per type (what a training run learnt from)."""
    return (
        {t: int(n) for t, n in events.group_by("event_type").len().sort("event_type").iter_rows()}
        if events.height
        else {}
    )
