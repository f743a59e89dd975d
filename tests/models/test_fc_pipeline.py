"""models.forecast.pipeline: scoring takes the newest weather-forecast issue published by the origin
(then an older issue, then persistence) and nothing later; a champion that cannot be used gives the
documented fallback; training returns what the registry's champion policy needs (shared with grid ML)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.forecast import XGBoostForecaster
from models.forecast.pipeline import score_load_entity, train_load_entity
from models.registry import Trained

H24 = pd.Timedelta(hours=24)
HOUR = pd.Timedelta(hours=1)
GB = {"tz": "Europe/London", "country": "GB", "subdiv": "ENG"}


@pytest.fixture(scope="module")
def data(hourly_load_with_weather):
    df = hourly_load_with_weather.select("period_start", "mean_kw", "temp_air_c").head(24 * 40)
    hist = df.head(24 * 30)
    model = XGBoostForecaster(H24, exog=("temp_air_c",), n_estimators=30, **GB).fit(hist)
    return df, hist, model


def _issues(df: pl.DataFrame, until: pd.Timestamp) -> pd.DataFrame:
    """Issues every 6 h (published 04/10/16/22 UTC) up to ``until``, 54 h each: the observed temperature
    plus an offset that differs per issue (so which issue was read shows in the values)."""
    obs = df.to_pandas().set_index("period_start")["temp_air_c"]
    first = obs.index[0].floor("D") + pd.Timedelta(hours=4)
    rows = []
    for k, t in enumerate(pd.date_range(first, until, freq="6h")):
        valid = pd.date_range(t + HOUR, periods=54, freq="h")
        rows.append(
            pd.DataFrame(
                {"issued_at": t, "valid_at": valid, "temp_air_c": obs.reindex(valid).to_numpy() + 0.1 * (k % 7)}
            )
        )
    return pd.concat(rows, ignore_index=True)  # fmt: skip


def _observed(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(pl.col("period_start").alias("observation_time"), "temp_air_c")


def test_scoring_reads_the_newest_issue_published_by_the_origin_and_nothing_later(data):
    df, hist, model = data
    origin = pd.Timestamp(hist["period_start"].max()).tz_convert("UTC")
    known = origin + HOUR  # the origin hour's data is complete then
    issues = _issues(df, origin + pd.Timedelta(days=3))
    champion = lambda: (model, "7")  # noqa: E731
    a = score_load_entity(champion, hist, H24, weather_issues=issues, observed_weather=_observed(df))
    assert a.version == "7" and a.reason is None and a.issued_at == origin
    newest = issues.loc[issues["issued_at"] <= known, "issued_at"].max()
    assert a.weather["latest_issue"] == newest.isoformat()
    assert (a.weather["from_latest_issue"], a.weather["from_older_issue"], a.weather["persisted"]) == (24, 0, 0)

    # everything published after the origin hour and every observation after it, spoiled: same forecast
    spoiled = issues.copy()
    spoiled.loc[spoiled["issued_at"] > known, "temp_air_c"] = 45.0
    extra = spoiled[spoiled["issued_at"] == spoiled["issued_at"].max()].assign(
        issued_at=known + pd.Timedelta(seconds=1)
    )
    spoiled = pd.concat([spoiled, extra.assign(temp_air_c=-40.0)])
    obs = _observed(df).with_columns(
        pl.when(pl.col("observation_time") >= known.to_pydatetime()).then(45.0).otherwise(pl.col("temp_air_c")).alias("temp_air_c")
    )  # fmt: skip
    b = score_load_entity(champion, hist, H24, weather_issues=spoiled, observed_weather=obs)
    assert a.forecast.equals(b.forecast) and a.weather == b.weather

    assert 0 < a.weather["issue_age_h"] <= 6
    # the newest issue missing: the one before covers the day (its hours still within 54 h), 6 h older
    older = score_load_entity(champion, hist, H24, weather_issues=issues[issues["issued_at"] != newest],
                              observed_weather=_observed(df))  # fmt: skip
    assert (older.weather["from_latest_issue"], older.weather["persisted"]) == (24, 0)
    assert older.weather["latest_issue"] < newest.isoformat()
    assert older.weather["issue_age_h"] == a.weather["issue_age_h"] + 6
    assert not older.forecast.equals(a.forecast) or older.weather != a.weather
    # the feed stopped two days ago: what the last issue still covers, then persistence
    stale = issues[issues["issued_at"] <= known - pd.Timedelta(hours=40)]
    s = score_load_entity(champion, hist, H24, weather_issues=stale, observed_weather=_observed(df))
    assert s.weather["persisted"] > 0 and s.weather["from_latest_issue"] > 0 and s.weather["missing"] == 0
    assert sum(s.weather[k] for k in ("from_latest_issue", "from_older_issue", "persisted")) == 24
    # no feed at all: persistence of observations before the origin hour only
    none = score_load_entity(champion, hist, H24, weather_issues=None, observed_weather=_observed(df))
    assert none.weather["persisted"] == 24 and none.weather["latest_issue"] is None
    assert none.forecast["p50"].is_finite().all()


def test_a_champion_that_cannot_be_used_gives_the_seasonal_naive_fallback(data):
    _, hist, _ = data

    def no_champion():
        raise LookupError("registered model 'x' has no champion yet")

    s = score_load_entity(no_champion, hist, H24)
    assert s.version == "fallback" and s.reason.startswith("LookupError") and s.weather is None
    assert s.forecast.height == 24 and set(s.forecast["model"]) == {"seasonal_naive_daily"}
    # the same hour a day earlier
    day_before = hist.tail(24)["mean_kw"].to_numpy()
    np.testing.assert_allclose(s.forecast["p50"].to_numpy(), day_before)


def test_training_returns_the_candidate_with_what_the_champion_policy_needs(data):
    df, hist, _ = data
    series = hist.to_pandas()
    makers = {"xgboost": lambda: XGBoostForecaster(H24, exog=("temp_air_c",), n_estimators=20, **GB)}
    from models.forecast import SeasonalNaive

    t = train_load_entity("F1", series, makers=makers, baseline=lambda: SeasonalNaive(H24), horizon=H24,
                          backtest_days=2, rank_metric="mape", window_end=pd.Timestamp(series["period_start"].iloc[-1]) + HOUR)  # fmt: skip
    assert isinstance(t, Trained) and t.metric == "mape" and not t.higher_is_better
    assert set(t.report["candidate_scores"]) == {"xgboost"} and "forecast_vs_actual.png" in t.figures
    assert t.metrics["mape"] == pytest.approx(t.report["candidate_scores"]["xgboost"])
    # rescore: the champion's recipe refitted on the same origins scores the same as the candidate did
    again = t.rescore(t.model)
    assert again["mape"] == pytest.approx(t.metrics["mape"], rel=1e-9)
    assert t.params["entity_id"] == "F1" and t.params["model"] == "xgboost"


def test_training_backtests_with_the_weather_scoring_uses(data):
    """``future_exog`` (the NWP issues as known at each origin) is what every backtest origin sees,
    candidates and the champion's rescore alike, instead of the observed weather."""
    from models.forecast import SeasonalNaive
    from models.forecast.weather_inputs import exog_as_known_at

    df, hist, _ = data
    series = hist.to_pandas()
    end = pd.Timestamp(series["period_start"].iloc[-1]) + HOUR
    issues = _issues(df, end).assign(temp_air_c=lambda d: d["temp_air_c"] + 4.0)  # a warm-biased feed
    nwp, asked = exog_as_known_at(issues, _observed(df)), []

    def fx(origin, idx):
        asked.append(origin)
        return nwp(origin, idx)

    makers = {"xgboost": lambda: XGBoostForecaster(H24, exog=("temp_air_c",), n_estimators=20, **GB)}
    kw = dict(makers=makers, baseline=lambda: SeasonalNaive(H24), horizon=H24, backtest_days=2, rank_metric="mape",
              window_end=end)  # fmt: skip
    t = train_load_entity("F1", series, **kw, future_exog=fx)
    perfect = train_load_entity("F1", series, **kw)
    origins = set(t.report["backtest"]["origin"].to_list())
    assert len(origins) == 2 and {pd.Timestamp(o) for o in asked} == {pd.Timestamp(o) for o in origins}
    assert t.metrics["mape"] != pytest.approx(perfect.metrics["mape"], rel=1e-3)
    asked.clear()
    assert t.rescore(t.model)["mape"] == pytest.approx(t.metrics["mape"], rel=1e-9) and len(asked) == 2


def test_score_entities_collects_every_entity_and_reports_each_fallback(data):
    from models.forecast.pipeline import score_entities
    from models.forecast.tables import SYSTEM

    df, hist, model = data
    issues = _issues(df, pd.Timestamp(hist["period_start"].max()) + pd.Timedelta(days=2))

    def no_champion():
        raise LookupError("no champion yet")

    warned: list[str] = []
    jobs = [
        ("F1", lambda: score_load_entity(lambda: (model, "3"), hist, H24, weather_issues=issues, observed_weather=_observed(df))),
        (SYSTEM, lambda: score_load_entity(no_champion, hist, H24)),
    ]  # fmt: skip
    day = pd.Timestamp(hist["period_start"].max()).date()
    run = score_entities(jobs, day, fallback="the naive baseline", warn=warned.append)
    assert run.versions == {"F1": "3", SYSTEM: "fallback"}
    assert set(run.fallbacks) == {SYSTEM} and run.fallbacks[SYSTEM].startswith("LookupError")
    assert warned == [f"{SYSTEM}: champion not used ({run.fallbacks[SYSTEM]}); the naive baseline"]
    assert set(run.weather) == {"F1"} and run.weather["F1"]["from_latest_issue"] == 24
    rows = run.rows
    assert rows.height == 48 and set(rows["date"]) == {day}
    assert dict(rows.group_by("entity_id").agg(pl.col("level").first()).iter_rows()) == {"F1": "feeder", SYSTEM: SYSTEM}
    assert rows.filter(pl.col("entity_id") == SYSTEM)["fallback_reason"].null_count() == 0
    with pytest.raises(ValueError, match="no entity"):
        score_entities([], day, fallback="x")
