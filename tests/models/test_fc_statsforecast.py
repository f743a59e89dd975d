"""statsforecast peers behind the Forecaster interface, on real Taylor demand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.forecast import WEEK, SeasonalNaive, rolling_origin, score_backtest
from models.forecast.statsforecast_models import PEERS, StatsForecaster


def test_sf_seasonal_naive_equals_gridlake_weekly_naive(taylor):
    hist = taylor.head(24 * 48)
    sf = StatsForecaster("sf_seasonal_naive").fit(hist).predict(48)
    gl = SeasonalNaive(WEEK).fit(hist).predict(48)
    assert sf.columns == gl.columns and set(sf["model"]) == {"sf_seasonal_naive"}
    np.testing.assert_allclose(sf["p50"].to_numpy(), gl["p50"].to_numpy())
    assert (sf["p10"] < sf["p50"]).all() and (sf["p50"] < sf["p90"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sf_mstl_ets", "sf_mfles"])
def test_peer_forecasts_one_day_and_beats_weekly_naive(taylor, kind):
    origins = list(pd.date_range("2000-07-31", periods=2, freq="D", tz="UTC"))
    bt = pl.concat(
        [
            rolling_origin(lambda: StatsForecaster(kind), taylor, origins, 48),
            rolling_origin(lambda: SeasonalNaive(WEEK), taylor, origins, 48),
        ]
    )
    s = {r["model"]: r for r in score_backtest(bt).iter_rows(named=True)}
    assert s[kind]["n_points"] == 96
    assert (bt["p10"] <= bt["p50"]).all() and (bt["p50"] <= bt["p90"]).all()
    assert (bt.filter(pl.col("model") == kind)["p90"] > bt.filter(pl.col("model") == kind)["p10"]).all()
    assert s[kind]["mape"] < 3.0  # a day-ahead national demand forecast, not a broken one


def test_log_scale_and_bad_kind(taylor):
    hist = taylor.head(21 * 48)
    fc = StatsForecaster("sf_seasonal_naive", log=True).fit(hist).predict(48)
    assert set(fc["model"]) == {"sf_seasonal_naive_log"}
    np.testing.assert_allclose(fc["p50"].to_numpy(), hist["mean_kw"].to_numpy()[-336:-288], rtol=1e-9)
    with pytest.raises(ValueError, match="unknown statsforecast peer"):
        StatsForecaster("nope")
    assert set(PEERS) == {"sf_mstl_ets", "sf_mfles", "sf_seasonal_naive"}
