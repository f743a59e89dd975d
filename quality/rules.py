"""The utility's data-quality rules, as configuration.

Hard bounds (reject -> quarantine) live on the column declarations in ``contracts``; this module
adds the *soft* rules that keep a record but flag it:

- meters: accept 200-260 V (hard); 'warning' outside 210-250 V; 'anomaly' when the interval's
  consumption exceeds 3x the meter's average consumption in the partition.
- SCADA: 'warning' when the hot-spot exceeds 110 degC or frequency leaves 59.9-60.1 Hz; 'anomaly'
  when the hot-spot exceeds 140 degC.
- weather: 'warning' when diffuse irradiance exceeds global irradiance by more than 20 W/m2 (a
  sensor/shading inconsistency).
- weather forecasts: 'warning' as weather for diffuse over global irradiance, and for an hour valid
  before the issue was published (an analysis hour, not a forecast).
- incidents: 'warning' when a work order's end_time precedes its start_time (kept: the outcome counts).

The numbers come from the utility profile (``quality`` in contracts/profiles/demo.yaml), so a utility
changes them without touching code, and the great-expectations suites (quality.expectations) read the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from contracts.profile import Quality, load_profile


@dataclass(frozen=True)
class MeterRules:
    warn_voltage_low: float
    warn_voltage_high: float
    anomaly_consumption_multiple: float


@dataclass(frozen=True)
class ScadaRules:
    warn_hot_spot_c: float
    anomaly_hot_spot_c: float
    warn_frequency_low: float
    warn_frequency_high: float


@dataclass(frozen=True)
class WeatherRules:
    warn_dhi_over_ghi_wm2: float


@dataclass(frozen=True)
class QualityRules:
    meter: MeterRules
    scada: ScadaRules
    weather: WeatherRules

    @classmethod
    def from_profile(cls, q: Quality) -> QualityRules:
        """The soft rules of a utility profile's ``quality`` section."""
        m, s = q.meter, q.scada
        return cls(
            MeterRules(m.warn_voltage_low, m.warn_voltage_high, m.anomaly_consumption_multiple),
            ScadaRules(s.warn_hot_spot_c, s.anomaly_hot_spot_c, s.warn_frequency_low, s.warn_frequency_high),
            WeatherRules(q.weather.warn_dhi_over_ghi_wm2),
        )

    def flag_expr(self, source: str, entity: str | None = None) -> pl.Expr:
        """A polars expression giving 'ok' | 'warning' | 'anomaly' for a typed, valid frame of ``source``.

        ``entity`` names the column that identifies a meter for the per-meter average (default
        ``meter_id``; ingestion passes an integer index of it, which groups faster than strings).
        """
        if source == "meter_readings":
            r = self.meter
            mean = pl.col("consumption_kwh").mean().over(entity or "meter_id")
            anomaly = (pl.col("consumption_kwh") > r.anomaly_consumption_multiple * mean) & (mean > 0)
            warning = (pl.col("voltage") < r.warn_voltage_low) | (pl.col("voltage") > r.warn_voltage_high)
        elif source == "scada":
            r = self.scada
            anomaly = pl.col("hot_spot_temp_c") > r.anomaly_hot_spot_c
            warning = (
                (pl.col("hot_spot_temp_c") > r.warn_hot_spot_c)
                | (pl.col("frequency_hz") < r.warn_frequency_low)
                | (pl.col("frequency_hz") > r.warn_frequency_high)
            )
        elif source == "weather":
            anomaly = pl.lit(False)
            warning = pl.col("dhi_wm2") > pl.col("ghi_wm2") + self.weather.warn_dhi_over_ghi_wm2
        elif source == "weather_forecast":
            # an hour valid before the issue was published is an analysis, not a forecast: kept, flagged
            anomaly = pl.lit(False)
            warning = (pl.col("dhi_wm2") > pl.col("ghi_wm2") + self.weather.warn_dhi_over_ghi_wm2) | (
                pl.col("valid_at") < pl.col("issued_at")
            )
        elif source == "incidents":
            # a work order whose end precedes its start is kept (the outcome still counts) but flagged
            anomaly = pl.lit(False)
            warning = pl.col("end_time") < pl.col("start_time")
        else:
            raise KeyError(f"no quality rules for source {source!r}")
        return (
            pl.when(anomaly.fill_null(False))
            .then(pl.lit("anomaly"))
            .when(warning.fill_null(False))
            .then(pl.lit("warning"))
            .otherwise(pl.lit("ok"))
        )


#: the rules of the utility's profile (contracts.profile.load_profile)
DEFAULT_RULES = QualityRules.from_profile(load_profile().quality)
