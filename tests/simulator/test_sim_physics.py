"""Physical sanity: weather is the TMY3 record re-timed, PV follows the sun, HVAC follows the
temperature, transformer temperatures follow the load, and every frame keeps the raw contract."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pvlib
import pytest

from contracts import SOURCES, TABLES, UTC_TS
from simulator import ARCHETYPE_NAMES, thermal
from simulator.weather import tmy3_path

TZ = "America/New_York"


@pytest.fixture(scope="module")
def tmy():
    data, meta = pvlib.iotools.read_tmy3(tmy3_path(), map_variables=True)
    return data.reset_index(drop=True), meta


def _local(df: pl.DataFrame, col: str) -> pl.DataFrame:
    return df.with_columns(pl.col(col).dt.convert_time_zone(TZ).alias("_local"))


def _tmy_day_stats(tmy, month: int) -> pl.DataFrame:
    data, _ = tmy
    df = pl.from_pandas(data[["Date (MM/DD/YYYY)", "temp_air", "ghi"]].rename(columns={"Date (MM/DD/YYYY)": "d"}))
    df = df.with_columns(
        pl.col("d").str.slice(0, 2).cast(pl.Int32).alias("m"), pl.col("d").str.slice(3, 2).cast(pl.Int32).alias("dd")
    )
    return (
        df.filter(pl.col("m") == month)
        .group_by("dd")
        .agg(
            pl.col("temp_air").min().alias("tmin"),
            pl.col("temp_air").max().alias("tmax"),
            pl.col("ghi").max().alias("gmax"),
        )
    )


def _working_day(year: int, month: int, dd: int) -> bool:
    from simulator.core import is_day_off

    return not is_day_off(date(year, month, dd))


# ------------------------------------------------------------------------------ contract
def test_frames_follow_the_raw_contract_and_the_local_day(year):
    d = date(2026, 4, 14)
    frames = year.day(d)
    n_m = year.reference()["ref_meters"].height
    n_t = year.reference()["ref_transformers"].height
    expected_rows = {"meter_readings": n_m * 48, "scada": n_t * 96, "weather": 24}
    for name, df in frames.items():
        src = SOURCES[name]
        assert df.columns == src.raw_columns
        assert df.schema[src.time] == UTC_TS and df.schema[src.entity] == pl.Utf8
        assert all(df.schema[m.name] == pl.Float64 for m in src.measures)
        assert df.height == expected_rows[name]
        local_days = df.select(pl.col(src.time).dt.convert_time_zone(TZ).dt.date().unique())[src.time].to_list()
        assert local_days == [d], name
        assert df.select(pl.struct(src.entity, src.time).is_duplicated().any()).item() is False
        # clean data respects the hard acceptance bounds of the contract
        for m in src.measures:
            col = df[m.name].drop_nulls()
            if m.min is not None:
                assert col.min() >= m.min, (name, m.name)
            if m.max is not None:
                assert col.max() <= m.max, (name, m.name)
    ref = year.reference()
    for name, df in ref.items():
        assert df.equals(TABLES[name].conform(df))
    assert set(frames["meter_readings"]["meter_id"]) == set(ref["ref_meters"]["meter_id"])
    assert set(frames["scada"]["transformer_id"]) == set(ref["ref_transformers"]["transformer_id"])
    truth = year.truth()
    for name, df in truth.items():
        assert df.equals(TABLES[name].conform(df))
    # an even mix: each of the 12 archetypes has n/12 customers
    counts = truth["truth_customers"]["archetype"].value_counts()
    assert sorted(counts["archetype"].to_list()) == sorted(ARCHETYPE_NAMES)
    assert counts["count"].min() == counts["count"].max() == n_m // 12


def test_topology_is_a_tree_and_transformers_are_sized(year):
    ref = year.reference()
    m, t = ref["ref_meters"], ref["ref_transformers"]
    per_tx = m.group_by("transformer_id").len()["len"]
    assert per_tx.max() <= 12 and per_tx.filter(per_tx < 8).len() <= 1  # only the last group may be short
    joined = m.join(t, on="transformer_id", suffix="_t")
    assert (joined["feeder_id"] == joined["feeder_id_t"]).all()
    assert (joined["substation_id"] == joined["substation_id_t"]).all()
    assert m.filter(pl.col("has_pv"))["pv_kw_dc"].min() > 0
    assert m.filter(~pl.col("has_pv"))["pv_kw_dc"].max() == 0


# ------------------------------------------------------------------------------ weather
def test_weather_is_the_tmy3_record_retimed(year, tmy):
    data, meta = tmy
    assert meta["TZ"] == -5.0
    by_key = {(ds[:5], ts): i for i, (ds, ts) in enumerate(zip(data["Date (MM/DD/YYYY)"], data["Time (HH:MM)"]))}
    for d in (date(2026, 1, 1), date(2026, 3, 8), date(2026, 7, 4), date(2026, 12, 31)):
        w = year.weather(d)
        for row in w.iter_rows(named=True):
            lst = row["observation_time"].replace(tzinfo=None) - timedelta(hours=5)
            if lst.hour == 0:  # TMY3 writes midnight as 24:00 of the day before
                key = ((lst - timedelta(days=1)).strftime("%m/%d"), "24:00")
            else:
                key = (lst.strftime("%m/%d"), f"{lst.hour:02d}:00")
            i = by_key[key]
            assert row["ghi_wm2"] == data["ghi"][i]
            assert row["dni_wm2"] == data["dni"][i]
            assert row["dhi_wm2"] == data["dhi"][i]
            assert row["temp_air_c"] == data["temp_air"][i]
            assert row["wind_speed_ms"] == data["wind_speed"][i]
            assert 0.0 <= row["cloud_cover"] <= 1.0


def test_cloud_proxy_tracks_the_clear_sky_index(year):
    # a clear July noon has a small proxy, an overcast one a large proxy
    w = pl.concat([year.weather(date(2026, 7, 1) + timedelta(days=i)) for i in range(20)])
    noon = _local(w, "observation_time").filter(pl.col("_local").dt.hour() == 13)
    bright = noon.sort("ghi_wm2")[-1]
    dull = noon.sort("ghi_wm2")[0]
    assert bright["cloud_cover"].item() < 0.25 < 0.6 < dull["cloud_cover"].item()


# ------------------------------------------------------------------------------ PV
def test_pv_is_zero_at_night_and_strong_at_a_clear_summer_noon(year, tmy):
    stats = _tmy_day_stats(tmy, 7).sort("gmax", descending=True)
    dd = stats["dd"][0]
    d = date(2026, 7, dd)
    pv = year.pv_kw(d)
    ref = year.reference()["ref_meters"].filter(pl.col("has_pv"))
    kw_dc = ref["pv_kw_dc"].to_numpy()
    t0, t1 = year.day_bounds(d)
    times = np.arange(t0, t1, np.timedelta64(30, "m"))
    hours = np.array([datetime.fromisoformat(str(t)).hour for t in times])  # UTC hour
    local = (hours - 4) % 24  # EDT
    night = (local < 5) | (local >= 21)
    assert np.all(pv[night] == 0.0)
    noon = (local >= 12) & (local < 14)
    spec = pv[noon] / kw_dc[None, :]
    assert np.all(spec > 0.3) and np.all(spec < 1.0)  # kW AC per kW DC, below the DC/AC-clipped max
    # net metering: exports show as negative demand, consumption counts imports only
    mr = year.meter_readings(d).filter(pl.col("meter_id").is_in(ref["meter_id"].implode()))
    assert mr.filter(pl.col("demand_kw") < 0).height > 0  # someone exports once the battery is full
    # PV + battery carry the middle of the day: midday grid demand is a fraction of the evening's
    lm = _local(mr, "reading_time").with_columns(pl.col("_local").dt.hour().alias("h"))
    per = lm.group_by("meter_id").agg(
        pl.col("demand_kw").filter(pl.col("h").is_between(11, 14)).mean().alias("midday"),
        pl.col("demand_kw").filter(pl.col("h").is_between(20, 23)).mean().alias("late"),
    )
    assert (per["midday"] < 0.25 * per["late"]).all()
    assert mr.filter(pl.col("demand_kw") <= 0)["consumption_kwh"].max() == 0.0
    pos = mr.filter(pl.col("demand_kw") > 0)
    assert np.allclose(pos["consumption_kwh"], pos["demand_kw"] * 0.5, atol=1e-4)


# ------------------------------------------------------------------------------ HVAC
def _mean_demand(sim, d: date, archetype: str, hours: tuple[int, int]) -> float:
    ids = sim.truth()["truth_customers"].filter(pl.col("archetype") == archetype)["meter_id"].implode()
    mr = _local(sim.meter_readings(d).filter(pl.col("meter_id").is_in(ids)), "reading_time")
    return mr.filter(pl.col("_local").dt.hour().is_between(*hours))["demand_kw"].mean()


def test_heavy_hvac_load_follows_cold_mornings_and_hot_afternoons(year, tmy):
    jan = _tmy_day_stats(tmy, 1).filter(
        pl.struct("dd").map_elements(lambda s: _working_day(2026, 1, s["dd"]), return_dtype=pl.Boolean)
    )
    cold = date(2026, 1, jan.sort("tmin")["dd"][0])
    mild = date(2026, 1, jan.sort("tmin", descending=True)["dd"][0])
    jul = _tmy_day_stats(tmy, 7).filter(
        pl.struct("dd").map_elements(lambda s: _working_day(2026, 7, s["dd"]), return_dtype=pl.Boolean)
    )
    hot = date(2026, 7, jul.sort("tmax", descending=True)["dd"][0])
    cool = date(2026, 7, jul.sort("tmax")["dd"][0])

    hvac_cold = _mean_demand(year, cold, "seasonal_heavy_hvac", (6, 9))
    hvac_mild = _mean_demand(year, mild, "seasonal_heavy_hvac", (6, 9))
    assert hvac_cold > 1.5 * hvac_mild
    hvac_hot = _mean_demand(year, hot, "seasonal_heavy_hvac", (14, 18))
    hvac_cool = _mean_demand(year, cool, "seasonal_heavy_hvac", (14, 18))
    assert hvac_hot > 1.3 * hvac_cool
    # weather-insensitive customers barely move between the same days
    flat_cold = _mean_demand(year, cold, "efficiency_optimiser", (6, 9))
    flat_mild = _mean_demand(year, mild, "efficiency_optimiser", (6, 9))
    assert hvac_cold / hvac_mild > 1.5 * (flat_cold / flat_mild)


def test_commercial_load_drops_on_weekends_and_us_holidays(year):
    workday = _mean_demand(year, date(2026, 7, 2), "business_hours_commercial", (10, 15))
    holiday = _mean_demand(year, date(2026, 7, 3), "business_hours_commercial", (10, 15))  # Independence Day observed
    sunday = _mean_demand(year, date(2026, 7, 5), "business_hours_commercial", (10, 15))
    assert holiday < 0.4 * workday and sunday < 0.4 * workday


def test_ev_customers_charge_several_kwh_in_the_evening(year):
    d = date(2026, 4, 15)
    evening = _mean_demand(year, d, "ev_charging", (19, 23))
    midday = _mean_demand(year, d, "ev_charging", (10, 15))
    assert evening > 2.5 * midday
    ids = year.truth()["truth_customers"].filter(pl.col("archetype") == "ev_charging")["meter_id"].implode()
    peak = (
        year.meter_readings(d).filter(pl.col("meter_id").is_in(ids)).group_by("meter_id").agg(pl.col("demand_kw").max())
    )
    assert (peak["demand_kw"] > 6.0).mean() > 0.5  # most EVs plugged in at ~7 kW that evening


# ------------------------------------------------------------------------------ transformers
def test_thermal_model_reaches_the_ieee_rated_temperatures():
    # 65 degC-rise ONAN unit at rated load, 30 degC ambient: 85 degC top oil, 110 degC hot spot
    n = 400  # 100 h at 15 min
    top, hot = thermal.simulate(np.ones((n, 1)), np.full(n, 30.0), 15.0)
    assert top[-1, 0] == pytest.approx(85.0, abs=1e-6) and hot[-1, 0] == pytest.approx(110.0, abs=1e-6)
    # a step from half to 1.3 pu: temperatures rise monotonically with the 3 h oil time constant
    k = np.concatenate([np.full(200, 0.5), np.full(200, 1.3)])[:, None]
    top, hot = thermal.simulate(k, np.full(400, 25.0), 15.0)
    rise = top[200:, 0]
    assert np.all(np.diff(rise) > 0)
    frac_3h = (rise[11] - top[199, 0]) / (rise[-1] - top[199, 0])  # 12 steps = 3 h = one tau
    assert frac_3h == pytest.approx(1 - np.exp(-1), abs=0.02)
    assert np.all(hot >= top)


def test_scada_temperatures_rise_with_loading(year):
    d = date(2026, 7, 15)
    s = year.scada(d)
    w = year.weather(d)
    amb = w["temp_air_c"].mean()
    rating = year.reference()["ref_transformers"].select("transformer_id", "rating_kva")
    agg = (
        s.join(rating, on="transformer_id")
        .group_by("transformer_id")
        .agg(
            (pl.col("load_kva") / pl.col("rating_kva")).mean().alias("pu"), pl.col("hot_spot_temp_c").mean().alias("hs")
        )
    )
    rho = np.corrcoef(agg["pu"].rank().to_numpy(), agg["hs"].rank().to_numpy())[0, 1]
    assert rho > 0.9
    assert (agg["hs"] > amb).all()
    # frequency close to 60 Hz, secondary voltage in the 230 V class
    assert abs(s["frequency_hz"].mean() - 60.0) < 0.02 and s["frequency_hz"].std() < 0.05
    assert 220 < s["voltage_v"].median() < 240


def test_transformer_load_is_the_sum_of_its_meters(year):
    d = date(2026, 2, 10)
    mr = year.meter_readings(d)
    ref = year.reference()["ref_meters"].select("meter_id", "transformer_id")
    p = mr.join(ref, on="meter_id").group_by("transformer_id", "reading_time").agg(pl.col("demand_kw").sum())
    s = year.scada(d).with_columns((pl.col("sample_time") - pl.duration(minutes=15)).alias("reading_time"))
    j = s.join(p, on=["transformer_id", "reading_time"])  # samples at :15/:45 report the interval just begun
    assert j.height > 0
    ratio = j["load_kva"] / j["demand_kw"].abs()
    # kVA >= |kW| (power factor <= 1), and not by more than a poor power factor allows
    assert ratio.min() > 0.99 * 1.0 and ratio.quantile(0.5) < 1.15


def test_leap_day_reuses_the_28th_of_february():
    from simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(n_meters=12, start=date(2028, 2, 27), days=4))
    feb28 = sim.weather(date(2028, 2, 28))
    feb29 = sim.weather(date(2028, 2, 29))
    cols = ["ghi_wm2", "dni_wm2", "dhi_wm2", "temp_air_c", "wind_speed_ms"]
    mar1 = sim.weather(date(2028, 3, 1))
    # local midnight's hour-ending value covers the last hour of the day before; the other 23 hours
    # of the 29th are the 28th's TMY3 hours again, and the hour ending at midnight of the 29th is the
    # 28th's last hour as well
    assert feb29.select(cols)[1:].equals(feb28.select(cols)[1:])
    assert mar1.select(cols)[0].equals(feb29.select(cols)[0])
    assert (feb29["observation_time"] - feb28["observation_time"]).unique().to_list() == [timedelta(days=1)]
    assert not mar1.select(cols)[1:].equals(feb28.select(cols)[1:])
