"""Alerts about the pipeline itself: a failed Dagster run becomes an :class:`~streaming_bridge.alerts.Alert`.

The run-failure sensor (``pipelines.sensors.alert_on_run_failure``) calls :func:`run_failure_alert` and hands
the result to an :class:`~streaming_bridge.alerts.AlertSink`, the same seam grid alerts go through, so a
failed nightly ingest reaches the same Alertmanager routes (severity -> receivers) as a hot transformer.

Identity (labels): ``alertname=PipelineRunFailed``, the job and the partition. A job that keeps failing
on the same partition is therefore one alert in Alertmanager (re-sent, deduplicated), while another
partition or job is another alert. The run id, the failed steps and the error are annotations.

:class:`JsonlAlertSink` is a durable file sink (one Alertmanager-shaped JSON object per line, appended
and fsynced); it serves until the bridge's outbox is wired in its place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from streaming_bridge.alerts import SEVERITIES, Alert

ALERTNAME = "PipelineRunFailed"
ASSET_TYPE = "pipeline_job"
#: longest error text kept in an annotation (Alertmanager receivers truncate long bodies anyway)
MAX_ERROR_CHARS = 2000


def run_failure_alert(
    *,
    job_name: str,
    run_id: str,
    failed_at: datetime,
    error: str,
    partition: str | None = None,
    failed_steps: Sequence[str] = (),
    severity: str = "warning",
    run_url: str = "",
) -> Alert:
    """The alert for one failed run of ``job_name``.

    ``failed_at`` must be timezone-aware (the Alert contract rejects naive times); ``error`` is the
    run's failure message (cut to :data:`MAX_ERROR_CHARS`); ``run_url`` links the run in the Dagster UI.
    """
    if not job_name or not run_id:
        raise ValueError(f"run_failure_alert needs a job name and a run id, got job={job_name!r} run={run_id!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {SEVERITIES}")
    error = (error or "").strip() or "the run failed without an error message"
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 1] + "…"
    where = f"{job_name} [{partition}]" if partition else job_name
    steps = ", ".join(failed_steps)
    return Alert(
        labels={
            "alertname": ALERTNAME,
            "severity": severity,
            "asset_type": ASSET_TYPE,
            "asset_id": job_name,
            "job": job_name,
            "partition": partition or "",
        },
        annotations={
            "summary": f"Dagster run of {where} failed" + (f" in {steps}" if steps else ""),
            "description": error,
            "run_id": run_id,
            "failed_steps": steps,
        },
        starts_at=failed_at,
        generator_url=run_url,
    )


class JsonlAlertSink:
    """Appends each alert (Alertmanager JSON plus its fingerprint) as one line to ``path``, fsynced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def submit(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({**a.to_alertmanager(), "fingerprint": a.fingerprint()}, sort_keys=True) + "\n" for a in alerts
        )
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict]:
        """Every alert written so far, oldest first (a malformed line raises, naming the file and line)."""
        if not self.path.exists():
            return []
        out = []
        for i, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{self.path}:{i}: not a JSON alert line ({e})") from e
        return out
