"""Dagster resources: thin, typed wrappers that hand library objects to the assets.

Every setting can come from the environment (see README), never a secret in code: S3 credentials
are read by boto3/delta-rs from the standard AWS_* variables.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import field_validator

from contracts.profile import UtilityProfile, load_profile
from lake.delta import Lake
from lake.landing import LocalLanding, S3Landing, open_landing


def _default(var: str, fallback: str) -> str:
    return os.environ.get(var, fallback)


class LakeResource(ConfigurableResource):
    """Where the Delta tables live: a local folder or an s3://bucket/prefix URI."""

    root: str = _default("GRIDLAKE_LAKE_ROOT", ".demo/lake")

    def lake(self) -> Lake:
        return Lake(self.root)


class LandingResource(ConfigurableResource):
    """Where raw files arrive: a local folder or an s3://bucket/prefix URI (boto3)."""

    uri: str = _default("GRIDLAKE_LANDING", ".demo/landing")
    endpoint_url: str | None = os.environ.get("AWS_ENDPOINT_URL")

    def zone(self) -> LocalLanding | S3Landing:
        return open_landing(self.uri, endpoint_url=self.endpoint_url)


class CatalogResource(ConfigurableResource):
    """The DuckDB catalog file analysts and BI tools open."""

    path: str = _default("GRIDLAKE_CATALOG", "warehouse/gridlake.duckdb")

    def file(self) -> Path:
        p = Path(self.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


class GridSettings(ConfigurableResource):
    """Utility-wide settings: a thin wrapper over the utility profile (contracts.profile.load_profile:
    ``$GRIDLAKE_PROFILE``, ``$GRIDLAKE_TIMEZONE``), the one the partitions and schedules were built with.

    ``timezone`` is there to be read (and for explicit resources in tests); set to a zone other than
    the profile's it is refused, since partition days, day bounds and peaks would then disagree.
    """

    timezone: str = load_profile().timezone

    @field_validator("timezone")
    @classmethod
    def _same_zone(cls, v: str) -> str:
        if v != load_profile().timezone:
            raise ValueError(
                f"GridSettings.timezone {v!r} differs from the utility profile's {load_profile().timezone!r} "
                "(the zone of the partitions and schedules): set GRIDLAKE_TIMEZONE or GRIDLAKE_PROFILE instead"
            )
        return v

    def profile(self) -> UtilityProfile:
        return load_profile()


class MlflowResource(ConfigurableResource):
    """MLflow tracking + model registry (models.registry.ModelRegistry), any tracking URI.

    ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else a local SQLite store next to the
    demo data (MLflow 3.17's file store is in maintenance mode and weak on the registry). For a
    SQLite store without an explicit ``artifact_location`` the artefacts go next to the database
    file (``<db dir>/mlflow-artifacts``), not into the process's working directory.
    """

    tracking_uri: str = _default("MLFLOW_TRACKING_URI", "sqlite:///.demo/mlflow.db")
    experiment: str = "gridlake"
    artifact_location: str | None = None

    def registry(self):
        from models.registry import ModelRegistry

        artifacts = self.artifact_location
        if self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri[len("sqlite:///") :])
            db.parent.mkdir(parents=True, exist_ok=True)
            if artifacts is None:
                artifacts = (db.parent.resolve() / "mlflow-artifacts").as_uri()
        return ModelRegistry(self.tracking_uri, experiment=self.experiment, artifact_location=artifacts)


class AlertingResource(ConfigurableResource):
    """Alert delivery for the batch path and the critical-alert sensor (library: streaming_bridge).

    ``alertmanager_url`` / ``outbox_path``: where batch alerts go (through a durable outbox file, as the
    stream's); ``alerts_schema``: the PostgreSQL schema of the bridge's ``alerts`` table (connection from
    ``GRIDLAKE_PG_*``).
    """

    alertmanager_url: str = _default("GRIDLAKE_ALERTMANAGER_URL", "http://127.0.0.1:9093")
    outbox_path: str = _default("GRIDLAKE_BATCH_OUTBOX", ".demo/batch_alert_outbox.db")
    alerts_schema: str = _default("GRIDLAKE_ALERTS_SCHEMA", "public")
    flush_timeout_s: float = 30.0
    #: the critical-alert sensor reads rows received at least this long ago (receiver transactions settle)
    settle_s: float = 5.0

    def outbox(self):
        from streaming_bridge.am_client import AlertmanagerClient
        from streaming_bridge.outbox import Outbox

        return Outbox(self.outbox_path, AlertmanagerClient(self.alertmanager_url))

    def store(self):
        from streaming_bridge.receiver import AlertStore

        return AlertStore(schema=self.alerts_schema, maxconn=1)

    def table_snapshots(self, log) -> dict:
        """``alerts`` / ``alert_deliveries`` as frames for the DuckDB catalog; none (with a warning) if the
        bridge's tables are absent or PostgreSQL does not answer: the catalog must not fail for that."""
        import psycopg2

        from contracts import BRIDGE_PG_TABLES

        try:
            store = self.store()
        except psycopg2.Error as e:
            log.warning(f"catalog without the bridge's alert tables: PostgreSQL: {e}")
            return {}
        try:
            if not store.exists():
                return {}
            return {name: store.snapshot(t) for name, t in BRIDGE_PG_TABLES.items()}
        finally:
            store.close()


class AlertSinkResource(ConfigurableResource):
    """Where the pipeline hands its own alerts (a failed run): the streaming bridge's durable outbox, drained
    to Prometheus Alertmanager (``streaming_bridge.outbox.Outbox``), the same path as batch and stream alerts.
    ``ui_url`` (the Dagster webserver's address, ``$GRIDLAKE_DAGSTER_URL``) makes each alert link its run;
    empty = no link.
    """

    alertmanager_url: str = _default("GRIDLAKE_ALERTMANAGER_URL", "http://127.0.0.1:9093")
    outbox_path: str = _default("GRIDLAKE_PIPELINE_OUTBOX", ".demo/pipeline_alert_outbox.db")
    ui_url: str = _default("GRIDLAKE_DAGSTER_URL", "")
    flush_timeout_s: float = 10.0

    def sink(self):
        from streaming_bridge.am_client import AlertmanagerClient
        from streaming_bridge.outbox import Outbox

        Path(self.outbox_path).parent.mkdir(parents=True, exist_ok=True)
        return Outbox(self.outbox_path, AlertmanagerClient(self.alertmanager_url))

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}" if self.ui_url else ""
