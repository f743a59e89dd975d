"""Dagster's PostgreSQL storage with its connections kept open in each process (deploy/dagster.yaml).

dagster-postgres opens its run and event-log engines with SQLAlchemy's ``NullPool``: every stored event opens a
new PostgreSQL connection (a TCP handshake, authentication and a forked server backend) and closes it again,
~2.5 connections an event. A backfill range run stores ~60 events a day (the materialisations of each partition
of 23 assets, the planned ones, the checks): measured in a 10-day run at 10,000 meters, 1,522 connections, 5.4 s
of a 40 s run waiting in ``psycopg2.connect`` on a quiet machine (21 s of 175 s at load 25), plus the server's
CPU for the backends. These storages are dagster-postgres' own, with the pooled engine its webserver uses
(``optimize_for_webserver``: pool of 1, overflow for concurrent threads, recycled hourly) and no statement
timeout: one connection per process, reused. docs/DECISIONS.md "Year backfill: ...".
"""

from __future__ import annotations

from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

#: connections a process may hold beyond the pooled one (threads logging at once: the ingestion's writer thread)
MAX_OVERFLOW = 4
POOL_RECYCLE_S = 3600


def _pooled(storage) -> None:
    """Swap a dagster-postgres storage's NullPool engine for a pooled one on the same URL."""
    old = storage._engine
    storage._engine = create_pg_engine(
        storage.postgres_url,
        getattr(storage, "_token_provider", None),
        isolation_level="AUTOCOMMIT",
        pool_size=1,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_S,
        pool_pre_ping=True,  # a connection the server closed meanwhile is replaced, not an error
    )
    old.dispose()


class _Pooled:
    """The dagster-postgres storage it is mixed into, on a pooled engine; built from the same config."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _pooled(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    """dagster-postgres' run storage, its connection pooled (``run_storage`` in deploy/dagster.yaml)."""


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    """dagster-postgres' event-log storage, its connection pooled (``event_log_storage`` in deploy/dagster.yaml)."""

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # the pooled connection closes with the instance
