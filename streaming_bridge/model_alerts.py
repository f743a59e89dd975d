"""Alerts about the models themselves: input/score drift or poor realised precision becomes an
:class:`~streaming_bridge.alerts.Alert` on the same path as grid alerts (outbox -> Alertmanager).

Identity (labels): ``alertname=ModelDrift``, the model and the drifted metric; the value, threshold,
day and what to do (retrain) are annotations. Severity ``warning``: a drifted model still scores, but
its bands no longer mean what they did at training time.
"""

from __future__ import annotations

from datetime import datetime

from streaming_bridge.alerts import Alert

ALERTNAME = "ModelDrift"
ASSET_TYPE = "model"


def model_drift_alert(
    *, model: str, metric: str, value: float, threshold: float, day: str, at: datetime, version: str = "", url: str = ""
) -> Alert:
    """The alert for one drifted quantity of ``model`` (``metric``: ``input:<feature>``, ``score`` or
    ``realised_precision``) on scoring day ``day``; ``at`` (timezone-aware) is when it was found."""
    if not model or not metric:
        raise ValueError(f"model_drift_alert needs a model and a metric, got {model!r}, {metric!r}")
    below = metric == "realised_precision"
    what = (
        f"realised precision {value:.3f} below {threshold:.3f}"
        if below
        else f"PSI {value:.3f} above {threshold:.3f} against the training window"
    )
    return Alert(
        labels={
            "alertname": ALERTNAME,
            "severity": "warning",
            "asset_type": ASSET_TYPE,
            "asset_id": model,
            "metric": metric,
        },
        annotations={
            "summary": f"{model}: {metric} drifted on {day} ({what})",
            "value": f"{value:.4f}",
            "threshold": f"{threshold:.4f}",
            "day": day,
            "model_version": version,
            "runbook": "Retrain the model (grid_ml_training with a window ending today) and compare it with the "
            "champion; check the input feed for a unit or meter-firmware change first.",
        },
        starts_at=at,
        generator_url=url,
    )
