"""The executor switch: the same Definitions run in one process (default) or on Celery workers.

``GRIDLAKE_EXECUTOR``:

- unset / ``default``: Dagster's default (``multi_or_in_process_executor``: one subprocess per step);
- ``in_process``: every step in the run's own process (what the tests and ``make demo`` do through ``materialize``);
- ``multiprocess``: one subprocess per step, at most ``GRIDLAKE_MAX_CONCURRENT_STEPS`` (default 2) at once;
- ``celery``: dagster-celery; each step is a Celery task on the queue of its kind (``assets.queues``),
  executed by ``celery -A pipelines.celery_app worker -Q <prefix>-<kind>`` processes (docs/DEPLOYMENT.md).

Celery settings come from the environment, never from code or run config: ``GRIDLAKE_CELERY_BROKER`` (default
``pyamqp://guest:guest@127.0.0.1:5672//``, the local RabbitMQ) and ``GRIDLAKE_CELERY_BACKEND`` (default ``rpc://``:
results travel back over the broker to the orchestrating process). The run's process and the workers must share
the Dagster instance (PostgreSQL: deploy/dagster.yaml), the lake (a shared folder or S3) and the step-output storage
(the instance's ``storage`` folder on one machine; an S3 IO manager across machines).
"""

from __future__ import annotations

import os

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

EXECUTORS = ("default", "in_process", "multiprocess", "celery")
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "rpc://"


def executor_kind() -> str:
    kind = os.environ.get("GRIDLAKE_EXECUTOR", "default").strip() or "default"
    if kind not in EXECUTORS:
        raise ValueError(f"GRIDLAKE_EXECUTOR={kind!r}: one of {', '.join(EXECUTORS)}")
    return kind


def _env_or(var: str, default: str):
    """A StringSource: read from the environment at run time when set (the URL may hold a password), else the default."""
    return {"env": var} if os.environ.get(var) else default


def celery_settings() -> dict:
    """broker/backend for the Celery app, resolved now (the worker side: pipelines.celery_app)."""
    return {
        "broker": os.environ.get("GRIDLAKE_CELERY_BROKER") or DEFAULT_BROKER,
        "backend": os.environ.get("GRIDLAKE_CELERY_BACKEND") or DEFAULT_BACKEND,
    }


def executor_from_env() -> ExecutorDefinition | None:
    """The executor of every job of the code location; None = Dagster's default."""
    kind = executor_kind()
    if kind == "in_process":
        return in_process_executor
    if kind == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": int(os.environ.get("GRIDLAKE_MAX_CONCURRENT_STEPS", "2"))}
        )
    if kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {
                "broker": _env_or("GRIDLAKE_CELERY_BROKER", DEFAULT_BROKER),
                "backend": _env_or("GRIDLAKE_CELERY_BACKEND", DEFAULT_BACKEND),
            },
            name="celery",
        )
    return None
