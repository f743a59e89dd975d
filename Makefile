# gridlake: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY    := .venv/bin/python
PIP   := .venv/bin/pip
STAMP := .venv/.installed-$(shell cat requirements.txt constraints.txt pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo test test-fast lint bench-ingest bench-ingest-big bench-ingest-base bench-manifest bench-forecast bench-ml bench-opt bench-alert-delivery bench-bridge bench-bridge-batch bench-bridge-cpu bench-pipeline bench-backfill bench services clean dev

install: $(STAMP)

# torch==2.13.0 FIRST (the local CPU wheel); any other torch spec would pull GBs of CUDA packages.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PIP) install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f .venv/.installed-*; touch $@

demo: install services
	$(PY) -m pipelines.demo

services:
	@bash .ci/services.sh

test: install services
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# ruff (pinned in requirements.txt), configured in pyproject.toml
lint: install
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench-ingest: install
	$(PY) -m benchmarks.bench_ingest

# only the single large CSV file cases of bench-ingest (2 M and 20 M rows: peak RSS, rows/s); bigmem lock held
bench-ingest-big: install
	flock /tmp/gridlake-bigmem.lock $(PY) -m benchmarks.bench_ingest --only-big

# clean-data ingestion now against the pre-issue-9 tree (git worktree), alternating runs, same files
bench-ingest-base: install
	$(PY) -m benchmarks.bench_ingest_base

bench-manifest: install
	$(PY) -m benchmarks.bench_manifest_read

bench-forecast: install
	$(PY) -m benchmarks.bench_forecast

bench-ml: install
	$(PY) -m benchmarks.bench_ml

bench-opt: install
	$(PY) -m benchmarks.bench_opt

bench-alert-delivery: install services
	$(PY) -m benchmarks.bench_alert_delivery

bench-bridge: install services
	$(PY) -m benchmarks.bench_bridge

bench-bridge-batch: install
	$(PY) -m benchmarks.bench_bridge_batch

bench-bridge-cpu: install
	$(PY) -m benchmarks.bench_bridge_cpu

# the nightly graph at 1,000/3,000/10,000 meters, the year backfill (in-process and 2 Celery workers), capacity plan;
# BENCH_PIPELINE_ARGS e.g. "--sizes 1000,3000 --backfill-meters 1000 --backfill-days 7" on a small machine
bench-pipeline: install services
	flock /tmp/gridlake-bigmem.lock $(PY) -m benchmarks.bench_pipeline $(BENCH_PIPELINE_ARGS)

# a real year backfill (daily_ingest, 10,000 meters x 365 days from bench-pipeline's cached simulation) as the
# backfill's range runs, two at a time: benchmarks/results/backfill.json (wall, CPU, rows/s, peak RSS, stages)
bench-backfill: install services
	flock /tmp/gridlake-bigmem.lock $(PY) -m benchmarks.bench_backfill $(BENCH_BACKFILL_ARGS)

dev: install
	DAGSTER_HOME=$(CURDIR)/.demo/dagster_home .venv/bin/dagster dev -w workspace.yaml

clean:
	rm -rf .demo warehouse .pytest_cache benchmarks/work
