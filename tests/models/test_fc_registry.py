"""MLflow registry on a temporary local store: log, register, champion/challenger, load."""

from __future__ import annotations

import numpy as np
import pytest

from models.forecast import DAY, WEEK, SeasonalNaive, rolling_origin, score_backtest
from models.forecast.plots import forecast_vs_actual
from models.registry import ModelRegistry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    return ModelRegistry(f"sqlite:///{d}/mlflow.db", experiment="test-forecast", artifact_location=str(d / "artifacts"))


@pytest.fixture(scope="module")
def trained(taylor):
    import pandas as pd

    origins = list(pd.date_range("2000-07-31", periods=3, freq="D", tz="UTC"))
    out = {}
    for make in (lambda: SeasonalNaive(DAY), lambda: SeasonalNaive(WEEK), lambda: SeasonalNaive(WEEK, level_steps=2)):
        bt = rolling_origin(make, taylor, origins, 48)
        m = score_backtest(bt).row(0, named=True)
        model = make().fit(taylor.head(48 * 56))
        out[model.name] = (model, {k: m[k] for k in ("mape", "rmse", "mae", "r2", "pinball", "coverage_80")}, bt)
    return out


def test_champion_challenger_lifecycle(registry, trained):
    name = "load-e2e"
    daily, weekly, adj = (
        trained["seasonal_naive_daily"],
        trained["seasonal_naive_weekly"],
        trained["seasonal_naive_weekly_adj"],
    )
    assert adj[1]["mape"] < weekly[1]["mape"] < daily[1]["mape"]  # real ordering on the backtest

    r1 = registry.train_register_promote(
        name,
        params=weekly[0].params(),
        metrics=weekly[1],
        backtest_id="bt1",
        model=weekly[0],
        figures={"forecast_vs_actual.png": forecast_vs_actual(weekly[2])},
    )
    assert r1["promoted"] and r1["promotion_reason"] == "no champion yet" and r1["version"] == "1"
    run = registry.client.get_run(r1["run_id"])
    assert run.data.metrics["mape"] == pytest.approx(weekly[1]["mape"])
    assert run.data.params["season"] == str(WEEK)
    arts = {a.path for a in registry.client.list_artifacts(r1["run_id"])}
    assert {"forecast_vs_actual.png", "model"} <= arts

    r2 = registry.train_register_promote(
        name, params=daily[0].params(), metrics=daily[1], backtest_id="bt1", model=daily[0]
    )
    assert not r2["promoted"] and r2["alias"] == "challenger"
    assert str(registry.champion(name).version) == "1"
    assert str(registry.client.get_model_version_by_alias(name, "challenger").version) == "2"

    r3 = registry.train_register_promote(name, params=adj[0].params(), metrics=adj[1], backtest_id="bt1", model=adj[0])
    assert r3["promoted"] and r3["champion_version_before"] == "1"
    assert str(registry.champion(name).version) == "3"

    # a better number on a *different* backtest does not promote
    better = dict(adj[1], mape=adj[1]["mape"] / 2)
    r4 = registry.train_register_promote(name, params=adj[0].params(), metrics=better, backtest_id="bt2", model=adj[0])
    assert not r4["promoted"] and "not comparable" in r4["promotion_reason"]
    assert str(registry.champion(name).version) == "3"

    # scoring loads the champion by alias and forecasts
    champ = registry.load_champion(name)
    assert champ.name == "seasonal_naive_weekly_adj"
    fc = champ.predict(48)
    np.testing.assert_allclose(fc["p50"].to_numpy(), adj[0].predict(48)["p50"].to_numpy())


def test_non_finite_metrics_are_rejected(registry):
    with pytest.raises(ValueError, match="finite"):
        registry.log_training_run(params={}, metrics={"mape": float("nan")})


def test_load_without_champion_is_a_clear_error(registry):
    with pytest.raises(LookupError, match="no 'champion' alias"):
        registry.load_champion("never-registered")


def test_sklearn_flavour_round_trip(registry):
    from sklearn.linear_model import LinearRegression

    X = np.arange(20, dtype=float).reshape(-1, 1)
    lr = LinearRegression().fit(X, 3 * X.ravel() + 1)
    out = registry.train_register_promote(
        "grid-linear",
        params={"kind": "ols"},
        metrics={"rmse": 0.0 + 1e-9},
        backtest_id="b",
        model=lr,
        flavor="sklearn",
        metric="rmse",
    )
    assert out["promoted"]
    loaded = registry.load_champion("grid-linear")
    assert loaded.predict(np.array([[10.0]]))[0] == pytest.approx(31.0)


def test_backtest_id_is_stable_and_tells_different_backtests_apart():
    from models.registry import backtest_id

    a = backtest_id("system", "2026-01-01", "2026-02-01", 7, "48h")
    assert a == backtest_id("system", "2026-01-01", "2026-02-01", 7, "48h") and len(a) == 16
    assert a != backtest_id("system", "2026-01-01", "2026-02-02", 7, "48h")


def test_a_gain_within_float_rounding_does_not_promote(registry, trained):
    """The same model re-scored can differ in the last bits (observed: MAPE 1.8e-15 apart on the demo's
    retrain); that must not move the champion, while a real gain still does."""
    name = "load-float-tie"
    model, m, _ = trained["seasonal_naive_weekly"]
    registry.train_register_promote(name, params=model.params(), metrics=m, backtest_id="bt", model=model)
    noise = dict(m, mape=m["mape"] * (1 - 1e-15))
    r = registry.train_register_promote(name, params=model.params(), metrics=noise, backtest_id="bt", model=model)
    assert not r["promoted"] and str(registry.champion(name).version) == "1"
    real = dict(m, mape=m["mape"] * (1 - 1e-6))
    r = registry.train_register_promote(name, params=model.params(), metrics=real, backtest_id="bt", model=model)
    assert r["promoted"] and str(registry.champion(name).version) == "3"
