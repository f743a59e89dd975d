"""deploy/dagster.yaml's PostgreSQL storage keeps one connection per process instead of one per stored event."""

from __future__ import annotations

import uuid

import sqlalchemy
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.dagster_run import DagsterRun

from pipelines.pg_storage import PooledPostgresEventLogStorage, PooledPostgresRunStorage


def _count_connects(engine: sqlalchemy.Engine) -> list:
    opened: list = []
    sqlalchemy.event.listen(engine, "connect", lambda *a: opened.append(1))
    return opened


def test_the_instance_stores_runs_and_events_on_one_pooled_connection(pg_dagster_home):
    with DagsterInstance.get() as instance:
        runs, events = instance.run_storage, instance.event_log_storage
        assert isinstance(runs, PooledPostgresRunStorage) and isinstance(events, PooledPostgresEventLogStorage)
        opened_ev, opened_run = _count_connects(events._engine), _count_connects(runs._engine)
        run_id = f"pgpool-{uuid.uuid4().hex[:12]}"
        instance.add_run(DagsterRun(job_name="pg_pool_probe", run_id=run_id, status=DagsterRunStatus.STARTED))
        for i in range(40):
            events.store_event(
                EventLogEntry(error_info=None, level=20, user_message=f"probe {i}", run_id=run_id, timestamp=1.0e9 + i)
            )
        # every event is stored and read back ...
        logs = instance.all_logs(run_id)
        assert [e.user_message for e in logs] == [f"probe {i}" for i in range(40)]
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
        # ... on the connection the pool keeps: dagster-postgres' NullPool opened one (or more) per event
        assert len(opened_ev) <= 1, opened_ev
        assert len(opened_run) <= 1, opened_run
        instance.delete_run(run_id)
