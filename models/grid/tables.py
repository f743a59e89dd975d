"""Gold tables of the grid ML layer: declared once, in :mod:`lake.schemas`; re-exported here.

``gold_alerts`` is the streaming bridge's input: its columns are a contract. ``fingerprint`` is
``sha1(asset_type|asset_id|rule|window_start)`` (see :func:`models.grid.alerts.fingerprint`), stable
across reruns, so a consumer deduplicates by it (Alertmanager-style: same labels, same alert).
"""

from lake.schemas import (  # noqa: F401 - re-exports
    ALERT_STATUSES,
    GOLD_ALERTS,
    GOLD_ANOMALY_SCORES,
    GOLD_CUSTOMER_SEGMENTS,
    GOLD_DR_EVENTS,
    GOLD_DR_PARTICIPATIONS,
    GOLD_RECOMMENDATIONS,
    GOLD_TRANSFORMER_RISK,
    GRID_TABLES,
    ASSET_TYPES,
    RECOMMENDATION_KINDS,
    RULES,
    SEVERITIES,
)
