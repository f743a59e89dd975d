"""The Dagster UI as a user sees it: dagster-webserver on a free port, headless Chromium (Playwright
with the Debian browser), an instance holding real materialisations made by the real jobs.

The fixture simulates a tiny utility (24 meters, 2 feeders, 16 days: XGBoost load models need 15 days + a 1-day backtest), then runs, on a SQLite
instance in a temporary DAGSTER_HOME: ``load_reference``, ``daily_ingest`` over the 16 days (one
backfill run), ``forecast_training``, ``forecast_scoring`` and ``optimization_daily`` for the next
day. The browser then checks the global lineage, the forecast's latest materialisation (plot and row
count), a blocking check's result and the ingested partitions. Screenshots go to
``test-artifacts/ui/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
TZ = "America/New_York"
START = dt.date(2026, 11, 9)
DAYS = 16
DAYS_LIST = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
NEXT = (START + dt.timedelta(days=DAYS)).isoformat()  # scored and optimised: the day after the data

pytestmark = pytest.mark.slow

TRAIN_CONFIG = {"ops": {
    "load_forecast_models": {"config": {"history_days": DAYS, "backtest_days": 1, "n_estimators": 40}},
    "solar_forecast_models": {"config": {"history_days": DAYS, "backtest_days": 1, "n_estimators": 40}},
}}  # fmt: skip
OPT_CONFIG = {"ops": {"gold_opf_dispatch": {"config": {"case": "case14"}}}}
#: unit commitment is left out: its default 50-unit fleet runs into the 120 s MIP time limit on this
#: tiny utility's load shape, and 6- or 12-unit fleets are infeasible (minimum down time / integrality)
OPT_ASSETS = [
    "gold_battery_schedule",
    "gold_battery_daily",
    "gold_ev_schedule",
    "gold_ev_sessions",
    "gold_opf_dispatch",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_instance(root: Path) -> dict:
    """Materialise the tiny utility through the real jobs into ``root`` (DAGSTER_HOME root/home)."""
    from dagster import AssetKey, DagsterInstance, Definitions

    from assets.resources import (
        AlertingResource,
        CatalogResource,
        GridSettings,
        LakeResource,
        LandingResource,
        MlflowResource,
    )
    from lake.landing import LocalLanding
    from pipelines.definitions import ALL_ASSETS
    from pipelines.jobs import ALL_JOBS
    from simulator import SimConfig, Simulator, write_landing_day, write_landing_reference

    env = {
        "DAGSTER_HOME": str(root / "home"),
        "GRIDLAKE_LAKE_ROOT": str(root / "lake"),
        "GRIDLAKE_LANDING": str(root / "landing"),
        "GRIDLAKE_CATALOG": str(root / "gridlake.duckdb"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "GRIDLAKE_TIMEZONE": TZ,
        "GRIDLAKE_START_DATE": START.isoformat(),
    }
    (root / "home").mkdir(parents=True, exist_ok=True)
    (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # embedded SQLite storage
    sim = Simulator(SimConfig(n_meters=24, start=START, days=DAYS, seed=5, n_feeders=2, timezone=TZ))
    zone = LocalLanding(env["GRIDLAKE_LANDING"])
    write_landing_reference(sim, zone)
    for d in DAYS_LIST:
        write_landing_day(sim, dt.date.fromisoformat(d), zone, formats="parquet")
    resources = {
        "lake": LakeResource(root=env["GRIDLAKE_LAKE_ROOT"]), "landing": LandingResource(uri=env["GRIDLAKE_LANDING"]),
        "catalog": CatalogResource(path=env["GRIDLAKE_CATALOG"]), "grid": GridSettings(timezone=TZ),
        "mlflow": MlflowResource(tracking_uri=env["MLFLOW_TRACKING_URI"]),
        "alerting": AlertingResource(outbox_path=str(root / "batch_outbox.db")),
    }  # fmt: skip
    defs = Definitions(assets=ALL_ASSETS, jobs=ALL_JOBS, resources=resources)
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    runs = {}

    def run(job, **kw):
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, **kw)
        assert result.success, f"{job} failed"
        runs[job] = result
        return result

    run("load_reference")
    run(
        "daily_ingest",
        tags={"dagster/asset_partition_range_start": DAYS_LIST[0], "dagster/asset_partition_range_end": DAYS_LIST[-1]},
    )
    run("forecast_training", run_config=TRAIN_CONFIG)
    run("forecast_scoring", partition_key=NEXT)
    run(
        "optimization_daily",
        partition_key=NEXT,
        run_config=OPT_CONFIG,
        asset_selection=[AssetKey(k) for k in OPT_ASSETS],
    )
    from lake.delta import Lake

    lake = Lake(env["GRIDLAKE_LAKE_ROOT"])
    info = {
        "env": env,
        "forecast_rows": lake.read("gold_load_forecast", dt.date.fromisoformat(NEXT)).height,
        "silver_days": sorted(str(d) for d in lake.read("silver_meter_readings", columns=["date"])["date"].unique()),
    }
    instance.dispose()
    return info


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The built instance served by dagster-webserver on a free port; yields (base url, build info)."""
    root = tmp_path_factory.mktemp("ui")
    info = build_instance(root)
    port = _free_port()
    env = {**os.environ, **info["env"], "PYTHONPATH": str(REPO)}
    log = open(root / "webserver.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not come up: {(root / 'webserver.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, info
    finally:
        # the webserver and the code server it spawned share the group started above
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash .ci/services.sh` (it installs Debian's chromium)")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _open(page, url: str):
    """Go to ``url``; dismiss the first-visit "Join the Dagster community" modal if it shows."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        try:
            skip.first.click(timeout=5_000)
        except PlaywrightTimeoutError:
            # the page's locator handler (fixture dismiss_modal) intercepts this very click and dismisses the
            # modal itself; the button is then gone and our own click has nothing left to press
            if skip.count():
                raise
        page.wait_for_load_state("networkidle")


def _wait_on_screen(page, locator, timeout_s: float = 15.0):
    """Wait until one element of ``locator`` lies inside the browser window (graph nodes pan into view)."""
    vw, vh = page.viewport_size["width"], page.viewport_size["height"]
    deadline = time.monotonic() + timeout_s
    while True:
        for i in range(locator.count()):
            box = locator.nth(i).bounding_box()
            if (
                box
                and box["width"] > 0
                and 0 <= box["x"]
                and box["x"] + box["width"] <= vw
                and 0 <= box["y"]
                and box["y"] + box["height"] <= vh
            ):
                return box
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator} is not drawn inside the {vw}x{vh} window")
        page.wait_for_timeout(250)


def _shot(page, name: str):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def dismiss_modal(page):
    """The first visit to an instance shows a "Join the Dagster community" modal: skip it whenever it shows."""
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    return page


# ---------------------------------------------------------------------------------------- tests
def test_global_lineage_shows_ingestion_training_scoring_and_optimisation_assets(ui, page, dismiss_modal):
    from playwright.sync_api import expect

    base, _ = ui
    _open(page, f"{base}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for i, (name, group) in enumerate((
        ("silver_meter_readings", "silver"),  # ingestion
        ("load_forecast_models", "forecast_training"),  # training
        ("gold_load_forecast", "forecasts"),  # scoring
        ("gold_battery_schedule", "optimization"),  # optimisation
    )):  # fmt: skip
        # "Jump to…" finds the asset in the global graph, expands its group and selects it; reloading
        # that address draws the graph centred on the node (the jump's own pan races the re-layout)
        page.get_by_placeholder("Jump to…").fill(name)
        page.keyboard.press("Enter")
        page.wait_for_timeout(1000)
        page.reload()
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()  # the selected node's panel
        # the global graph moved to the asset, with its group expanded
        expect(page).to_have_url(re.compile(rf"/asset-groups/{name}\?.*expanded=[^&]*global%3A{group}(%2C|&|$)"))
        expect(page.get_by_role("link", name="View in Asset Catalog")).to_be_visible()
        # and its node is drawn in the visible part of the graph (long labels are middle-truncated)
        node = page.locator("foreignObject").filter(
            has_text=re.compile(re.escape(name[:8]) + ".*" + re.escape(name[-6:]))
        )
        _wait_on_screen(page, node)
        page.wait_for_timeout(800)  # let the graph finish panning before the picture
        _shot(page, f"1_lineage_{i}_{name}")


def test_forecast_latest_materialisation_shows_its_plot_and_row_count(ui, page, dismiss_modal):
    from playwright.sync_api import expect

    base, info = ui
    _open(page, f"{base}/assets/gold_load_forecast")
    status = page.get_by_text("Latest materialization").locator("..")
    expect(status).to_contain_text(NEXT)  # the partition the scoring run wrote
    rows = page.get_by_text("Row count", exact=True).locator("..")
    expect(rows).to_contain_text(str(info["forecast_rows"]))  # what the Delta table holds
    _shot(page, "2_forecast_overview")
    row = page.locator("tr", has=page.get_by_text("forecasts", exact=True))
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    imgs = dialog.locator('img[src^="data:image/png"]')
    expect(imgs.first).to_be_visible()
    # each plot decoded to a real picture (a broken data URI has naturalWidth 0)
    widths = imgs.evaluate_all("es => es.map(e => e.naturalWidth)")
    assert len(widths) >= 2 and min(widths) > 300, widths
    expect(dialog.get_by_role("img", name="system forecast")).to_be_visible()  # the whole-network plot, by its alt text
    _shot(page, "3_forecast_plots")
    page.keyboard.press("Escape")


def test_blocking_check_result_is_visible(ui, page, dismiss_modal):
    from playwright.sync_api import expect

    base, _ = ui
    _open(page, f"{base}/assets/silver_meter_readings?view=checks")
    page.get_by_text("reconciles", exact=True).first.click()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    expect(page.get_by_text("Evaluation result").locator("..")).to_contain_text("Passed")
    _shot(page, "4_blocking_check")


def test_partitions_view_shows_the_ingested_days(ui, page, dismiss_modal):
    from playwright.sync_api import expect

    base, info = ui
    assert info["silver_days"] == DAYS_LIST
    _open(page, f"{base}/assets/silver_meter_readings?view=partitions")
    expect(page.get_by_text(f"Materialized ({DAYS})")).to_be_visible()

    def item(d):  # a partition in the (virtualised) list, found through its name filter
        page.get_by_placeholder("Filter by name").fill(d)
        return page.locator(f'[title="{d}"]').first

    for d in DAYS_LIST:
        expect(item(d)).to_be_visible()
    # an ingested day has a materialisation by the daily_ingest run; the day after the data has none
    item(DAYS_LIST[0]).click()
    latest = page.get_by_text("Latest materialization", exact=True).locator("..")
    expect(latest).not_to_contain_text("None")
    expect(page.get_by_text("daily_ingest").first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()  # the selected partition's badge
    _shot(page, "5_partitions_ingested_day")
    item(NEXT).click()
    expect(page.get_by_text("Latest materialization", exact=True).locator("..")).to_contain_text("None")
    _shot(page, "6_partitions_missing_day")
