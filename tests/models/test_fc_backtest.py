"""Rolling-origin backtest, metrics, comparison table and the learned-weight ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.forecast import (
    DAY,
    WEEK,
    EnsembleForecaster,
    Forecaster,
    SeasonalNaive,
    comparison_table,
    learn_weights,
    rolling_ensemble,
    rolling_origin,
    score,
    score_backtest,
)


def test_metrics_known_values():
    m = score([100, 200], [90, 150], [110, 180], [120, 250])
    assert m["mape"] == pytest.approx(10.0)
    assert m["mae"] == pytest.approx(15.0)
    assert m["rmse"] == pytest.approx(np.sqrt((100 + 400) / 2))
    assert m["coverage_80"] == pytest.approx(1.0)
    m2 = score([100, 200], [101, 201], [110, 210], [120, 220])
    assert m2["coverage_80"] == 0.0 and m2["pinball"] > m["pinball"] * 0


class _Spy(Forecaster):
    """Records the last history timestamp seen at each fit/update (no-look-ahead check)."""

    name = "spy"
    seen: list = []

    def _fit(self, s):
        _Spy.seen.append(s.y.index[-1])

    def update(self, history):
        return self.fit(history)

    def _predict(self, steps, fx):
        v = float(self.series.y.iloc[-1])
        return np.full((steps, 3), v)


def test_backtest_never_shows_the_future(taylor):
    _Spy.seen = []
    origins = list(pd.date_range("2000-07-10", periods=4, freq="D", tz="UTC"))
    bt = rolling_origin(_Spy, taylor, origins, 48)
    assert [s + pd.Timedelta(minutes=30) for s in _Spy.seen] == origins
    assert bt.height == 4 * 48 and bt["actual"].is_not_null().all()
    first = bt.filter(pl.col("origin") == bt["origin"].min())
    assert (first["period_start"] >= first["origin"]).all()


def test_comparison_table_ranks(taylor):
    origins = list(pd.date_range("2000-07-31", periods=3, freq="D", tz="UTC"))
    bt = pl.concat(
        [
            rolling_origin(lambda: SeasonalNaive(DAY), taylor, origins, 48),
            rolling_origin(lambda: SeasonalNaive(WEEK), taylor, origins, 48),
        ]
    )
    t = comparison_table(score_backtest(bt), "mape")
    assert t["rank"].to_list() == [1, 2]
    assert t["mape"][0] <= t["mape"][1]
    assert comparison_table(score_backtest(bt), "r2")["r2"][0] >= comparison_table(score_backtest(bt), "r2")["r2"][1]
    with pytest.raises(ValueError, match="unknown metric"):
        comparison_table(score_backtest(bt), "smape")


def test_learn_weights_recovers_a_known_mix():
    rng = np.random.default_rng(0)
    a = 100 + rng.normal(0, 5, 500)
    b = 100 + rng.normal(0, 5, 500)
    c = 100 + rng.normal(0, 5, 500)
    actual = 0.7 * a + 0.3 * b
    w = learn_weights(np.column_stack([a, b, c]), actual)
    np.testing.assert_allclose(w, [0.7, 0.3, 0.0], atol=0.02)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()


def test_rolling_ensemble_uses_only_earlier_origins(taylor):
    origins = list(pd.date_range("2000-07-24", periods=6, freq="D", tz="UTC"))
    bt = pl.concat(
        [
            rolling_origin(lambda: SeasonalNaive(DAY), taylor, origins, 48),
            rolling_origin(lambda: SeasonalNaive(WEEK), taylor, origins, 48),
            rolling_origin(lambda: SeasonalNaive(WEEK, level_steps=2), taylor, origins, 48),
        ]
    )
    members = ["seasonal_naive_daily", "seasonal_naive_weekly", "seasonal_naive_weekly_adj"]
    ens, w = rolling_ensemble(bt, members, min_origins=3)
    assert ens["origin"].n_unique() == 3
    # corrupt the actuals of the last origin: weights used for it must not move
    last = bt["origin"].max()
    bad = bt.with_columns(
        pl.when(pl.col("origin") == last).then(pl.col("actual") * 3).otherwise(pl.col("actual")).alias("actual")
    )
    _, w2 = rolling_ensemble(bad, members, min_origins=3)
    assert w2[str(last)] == w[str(last)]
    s = {
        r["model"]: r["mape"]
        for r in score_backtest(pl.concat([bt.filter(pl.col("origin") >= ens["origin"].min()), ens])).iter_rows(
            named=True
        )
    }
    assert s["ensemble"] <= max(s[m] for m in members)


def test_ensemble_forecaster_learns_weights_on_history(taylor):
    hist = taylor.head(48 * 35)
    ens = EnsembleForecaster(
        [lambda: SeasonalNaive(DAY), lambda: SeasonalNaive(WEEK, level_steps=2)], DAY, n_origins=5
    ).fit(hist)
    assert set(ens.weights) == {"seasonal_naive_daily", "seasonal_naive_weekly_adj"}
    assert sum(ens.weights.values()) == pytest.approx(1.0)
    assert ens.weights["seasonal_naive_weekly_adj"] > ens.weights["seasonal_naive_daily"]
    fc = ens.predict(48)
    assert fc.height == 48 and (fc["p10"] < fc["p90"]).all() and set(fc["model"]) == {"ensemble"}
