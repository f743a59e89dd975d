"""Work queues: each asset's op carries the Celery queue of its kind, so heavy training cannot starve ingestion.

Four kinds (``KINDS``); a deployment runs Celery workers per queue (docs/DEPLOYMENT.md):

- ``ingest``: reference tables, landing -> bronze/silver/quarantine, gold rollups, the DuckDB catalog;
- ``train``: nightly forecast and grid-ML training (MLflow champion/challenger);
- ``score``: forecasts, peak demand, grid-ML scoring, alert posting, the daily report;
- ``optimise``: battery, EV, DC-OPF and unit-commitment schedules.

Queue names are ``<GRIDLAKE_CELERY_QUEUE_PREFIX>-<kind>`` (default prefix ``gridlake``), so several deployments
(or test sessions) can share one broker without taking each other's tasks. The prefix is read once, at import:
the run's orchestrating process and every worker must see the same value. The tags only matter to the Celery
executor (``pipelines.executors``); the default executors ignore them.
"""

from __future__ import annotations

import os
import re

KINDS = ("ingest", "train", "score", "optimise")
#: dagster-celery reads a step's queue from this op tag (dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG)
QUEUE_TAG = "dagster-celery/queue"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def queue_prefix() -> str:
    prefix = os.environ.get("GRIDLAKE_CELERY_QUEUE_PREFIX", "gridlake")
    if not _SAFE.fullmatch(prefix):
        raise ValueError(
            f"GRIDLAKE_CELERY_QUEUE_PREFIX={prefix!r}: use 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"
        )
    return prefix


PREFIX = queue_prefix()


def queue_name(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"queue kind {kind!r}: one of {KINDS}")
    return f"{PREFIX}-{kind}"


def queue_tags(kind: str, **more: str) -> dict[str, str]:
    """The op tags routing an asset's step to the queue of ``kind`` (plus any other op tags)."""
    return {QUEUE_TAG: queue_name(kind), **more}
