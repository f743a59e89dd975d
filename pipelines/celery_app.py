"""The Celery app the gridlake workers run: ``celery -A pipelines.celery_app worker -Q gridlake-ingest ...``.

dagster-celery's own ``dagster_celery.app`` takes its broker from a generated module or
``DAGSTER_CELERY_BROKER_HOST`` (no credentials); this one takes the same ``GRIDLAKE_CELERY_BROKER`` /
``GRIDLAKE_CELERY_BACKEND`` as the executor (pipelines.executors), so a run and its workers cannot disagree.
A worker executes one Dagster step per task: it loads the job from the run's code origin
(``pipelines.definitions``) and the instance from the run's instance reference (deploy/dagster.yaml).
"""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from pipelines.executors import celery_settings

app = make_app(CeleryExecutor.for_cli(**celery_settings()).app_args())
execute_plan = create_task(app)
