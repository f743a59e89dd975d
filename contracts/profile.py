"""The utility profile: every setting that describes one utility, declared once.

A utility that adopts gridlake describes itself in one YAML file (the demo utility's ships as
``contracts/profiles/demo.yaml``): time zone, first partition day, tariffs (retail and wholesale
time-of-use with ONE peak window, demand charge, carbon intensity), voltage bands and quality
thresholds, the demand-response programme (per-segment shares and multipliers), alert bands and
the battery/EV site parameters. :func:`load_profile` reads it once (cached) into the pydantic model
:class:`UtilityProfile`, which validates every field (a bad value fails at load time naming the file
and the field).

Where it comes from: ``$GRIDLAKE_PROFILE`` (a YAML path) or the demo profile; then the environment
overrides ``GRIDLAKE_TIMEZONE`` (time zone) and ``GRIDLAKE_START_DATE`` (first daily partition).

Library code takes the profile, or the part it needs, as an argument and restates none of it;
Dagster partitions, schedules and resources read the same :func:`load_profile` (so they cannot
disagree on the zone).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: the profile shipped with the demo utility (package data)
DEMO_PROFILE = Path(__file__).with_name("profiles") / "demo.yaml"
PROFILE_ENV = "GRIDLAKE_PROFILE"
#: environment variables that override one profile field each
ENV_OVERRIDES = {"GRIDLAKE_TIMEZONE": "timezone", "GRIDLAKE_START_DATE": "partition_start"}


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hours(v: list[int]) -> list[int]:
    bad = [h for h in v if not 0 <= h <= 23]
    if bad:
        raise ValueError(f"local hours must be 0..23, got {bad}")
    return v


class PeakWindow(_Part):
    """The utility's peak window, local hours ``[start_hour, end_hour)``: priced at the peak rate, the
    window customers are asked to shift out of, the demand-response and segment peak-energy window."""

    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)

    @model_validator(mode="after")
    def _order(self) -> PeakWindow:
        if self.end_hour <= self.start_hour:
            raise ValueError(f"peak window end_hour {self.end_hour} must be after start_hour {self.start_hour}")
        return self

    @property
    def hours(self) -> list[int]:
        return list(range(self.start_hour, self.end_hour))

    @property
    def bounds(self) -> tuple[int, int]:
        return self.start_hour, self.end_hour


class RetailTariff(_Part):
    """What a customer pays, per kWh: a flat rate, or time-of-use (peak window / off-peak)."""

    flat_per_kwh: float = Field(ge=0)
    peak_per_kwh: float = Field(ge=0)
    offpeak_per_kwh: float = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> RetailTariff:
        if self.peak_per_kwh < self.offpeak_per_kwh:
            raise ValueError(f"retail peak_per_kwh {self.peak_per_kwh} < offpeak_per_kwh {self.offpeak_per_kwh}")
        return self


class WholesaleTariff(_Part):
    """The energy price the utility's own assets (battery, EV site) see, $/MWh by local hour: peak in the
    peak window, shoulder in ``shoulder_hours`` (outside the peak window), off-peak otherwise."""

    off_peak_per_mwh: float
    shoulder_per_mwh: float
    peak_per_mwh: float
    shoulder_hours: list[int]

    _check_hours = field_validator("shoulder_hours")(_hours)


class Tariffs(_Part):
    """Retail and wholesale prices side by side, with one peak window. Configuration, not market data."""

    currency: str = "USD"
    peak_window: PeakWindow
    retail: RetailTariff
    #: segment name -> the retail tariff of customers in that segment (others pay ``retail``)
    retail_by_segment: dict[str, RetailTariff] = Field(default_factory=dict)
    wholesale: WholesaleTariff
    demand_charge_per_kw_day: float = Field(
        ge=0, description="on the day's highest import, a monthly charge / ~30 days"
    )

    def retail_rate(self, name: str) -> dict[str, float]:
        """``{segment: rate}`` of one retail field (``flat_per_kwh`` | ``peak_per_kwh`` | ``offpeak_per_kwh``) for the
        segments with their own tariff; the others pay ``getattr(self.retail, name)``."""
        return {seg: getattr(t, name) for seg, t in self.retail_by_segment.items()}

    carbon_kg_per_mwh: list[float] = Field(description="grid carbon intensity: one flat value or 24 local-hour values")
    carbon_price_per_t: float = Field(
        0.0, ge=0, description="$/t CO2 added to import prices in the objective (0 = report only)"
    )

    @field_validator("carbon_kg_per_mwh")
    @classmethod
    def _carbon(cls, v: list[float]) -> list[float]:
        if len(v) not in (1, 24):
            raise ValueError(f"carbon_kg_per_mwh needs 1 (flat) or 24 (local-hour profile) values, got {len(v)}")
        if any(not (x == x and abs(x) != float("inf")) or x < 0 for x in v):
            raise ValueError(f"carbon_kg_per_mwh values must be finite and >= 0, got {v}")
        return v


class MeterQuality(_Part):
    nominal_v: float = Field(gt=0)
    warn_voltage_low: float
    warn_voltage_high: float
    anomaly_consumption_multiple: float = Field(gt=0)


class ScadaQuality(_Part):
    nominal_v: float = Field(gt=0)
    nominal_frequency_hz: float = Field(gt=0)
    warn_hot_spot_c: float
    anomaly_hot_spot_c: float
    warn_frequency_low: float
    warn_frequency_high: float


class WeatherQuality(_Part):
    warn_dhi_over_ghi_wm2: float = Field(ge=0)


class Quality(_Part):
    """Voltage bands and the soft quality thresholds (hard acceptance bounds are on the source
    declarations, contracts.sources)."""

    meter: MeterQuality
    scada: ScadaQuality
    weather: WeatherQuality


class DemandResponse(_Part):
    """The demand-response programme and per-segment behaviour (keys are the segment names of the
    utility's segment model; a segment not listed gets the default share and is not DR-eligible)."""

    events_per_month: float = Field(ge=0)
    base_incentive: float = Field(ge=0, description="per event")
    margin: float = Field(ge=0, le=1, description="reduction asked for on top of the exceedance")
    capacity_share: float = Field(gt=0, le=1, description="share of a feeder's summed transformer kVA it may carry")
    multiplier: dict[str, float] = Field(description="DR-eligible segments and their incentive multiplier")
    reduction_share: dict[str, float] = Field(description="share of its peak-window demand a participant sheds")
    shiftable_share: dict[str, float] = Field(description="share of peak energy a segment can move (time-shift advice)")
    default_shiftable_share: float = Field(ge=0, le=1)
    min_savings: float = Field(ge=0, description="a recommendation must save more than this per month")

    @field_validator("reduction_share", "shiftable_share")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"shares must be in [0, 1], got {bad}")
        return v


class Bands(_Part):
    """Score bands: ``[monitoring, alert)`` watched, ``>= alert`` raises an alert, ``>= critical`` critical."""

    monitoring: float = Field(ge=0, le=1)
    alert: float = Field(ge=0, le=1)
    critical: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> Bands:
        if not self.monitoring <= self.alert <= self.critical:
            raise ValueError(
                f"bands must satisfy monitoring <= alert <= critical, got {self.monitoring}, {self.alert}, {self.critical}"
            )
        return self


class AlertBands(_Part):
    """The utility's alert bands on the calibrated anomaly score and on P(transformer failure in 72 h)."""

    anomaly: Bands
    failure_risk: Bands


class BatterySite(_Part):
    power_frac_of_peak: float = Field(gt=0, description="battery power = this x the day's peak gross load")
    duration_h: float = Field(gt=0)
    efficiency: float = Field(gt=0, le=1, description="one-way charge and discharge efficiency")
    soc_initial_frac: float = Field(ge=0, le=1)
    degradation_cost_per_mwh: float = Field(ge=0)


class EVSite(_Part):
    transformer_limit_kw: float = Field(gt=0)


# --------------------------------------------------------------------------------------------
# optimisation settings (issue 16): safety limits, V2G, regulation, battery economics, EV objective.
# Unlike the rest of the profile these carry documented defaults: a profile may leave them out.
# The optimisation library reads them as ``optimization.settings.OptimizationSettings``.
# --------------------------------------------------------------------------------------------
class SafetySettings(_Part):
    """Limits every battery/EV schedule is checked against before it is published (:mod:`optimization.safety`).

    Ramp limit, SOC reserve and derating are also constraints of the battery model, so a solver
    schedule passes the gate by construction; the gate catches what the model did not see (a changed
    rating, a schedule from elsewhere, a numerical slip, a bug).
    """

    ramp_frac_per_hour: float | None = Field(
        2.0, gt=0, description="largest change of battery net power between consecutive periods, as a fraction of the "
        "power rating per hour (2.0 = half the rating per 15-minute step); None = no ramp limit")  # fmt: skip
    soc_reserve_frac: float = Field(
        0.1, ge=0, le=1, description="backup reserve kept above soc_min: SOC must stay >= soc_min + reserve"
    )
    derate_start_c: float = Field(
        35.0, description="ambient temperature above which the power rating is derated linearly"
    )
    derate_full_c: float = Field(50.0, description="temperature at which the derating reaches derate_min_frac")
    derate_min_frac: float = Field(
        0.5, ge=0, le=1, description="fraction of the rating left at derate_full_c and above"
    )
    export_limit_kw: float | None = Field(
        None, ge=0, description="site export limit (interconnection agreement); None = none"
    )
    transformer_limit_kw: float | None = Field(
        None, ge=0, description="site import limit of the battery's transformer; None = none"
    )
    tolerance_kw: float = Field(1e-3, gt=0, description="numerical tolerance of power checks, kW")
    tolerance_kwh: float = Field(1e-3, gt=0, description="numerical tolerance of energy checks, kWh")

    @model_validator(mode="after")
    def _derate_order(self) -> SafetySettings:
        if self.derate_full_c <= self.derate_start_c:
            raise ValueError(
                f"derate_full_c ({self.derate_full_c}) must be above derate_start_c ({self.derate_start_c})"
            )
        return self


class V2GSettings(_Part):
    """Vehicle-to-grid terms: what an export earns, what it costs the car's battery, and who takes part."""

    export_price_per_mwh: float | None = Field(
        None, description="price paid for V2G exports, $/MWh; None = the tariff's price of the period"
    )
    min_export_price_per_mwh: float = Field(
        150.0, description="discharge only in periods whose export price is at least this"
    )
    wear_cost_per_mwh: float = Field(60.0, ge=0, description="battery wear cost of each MWh discharged, $/MWh")
    floor_frac: float = Field(
        0.8, ge=0, le=1, description="an opted-in car leaves with at least this share of its request"
    )
    buffer_kwh: float = Field(
        5.0, ge=0, description="how far an opted-in car's energy may dip below its arrival level, kWh"
    )


class RegulationSettings(_Part):
    """Symmetric frequency-regulation capacity offered by the battery."""

    price_per_mw_h: float = Field(0.0, ge=0, description="capacity price, $/MW per hour; 0 = no regulation offered")
    soc_buffer_h: float = Field(
        0.25, ge=0, description="hours an award must be sustainable from stored energy (the SOC buffer)"
    )


class EconomicsSettings(_Part):
    """Cost assumptions of the battery project (``gold_battery_economics``, :func:`optimization.battery.project_roi`)."""

    capex_per_kwh: float = Field(300.0, gt=0, description="installed cost per kWh of capacity")
    capex_per_kw: float = Field(150.0, ge=0, description="installed cost per kW of power (inverter, interconnection)")
    opex_frac_per_year: float = Field(0.015, ge=0, description="fixed O&M per year as a fraction of capex")
    discount_rate: float = Field(0.07, gt=-1, description="real discount rate per year")
    years: int = Field(15, ge=1, description="project lifetime, years")
    calendar_fade_per_year: float = Field(
        0.01, ge=0, description="capacity lost per year from calendar ageing (fraction of new)"
    )
    cycle_life: float = Field(6000.0, gt=0, description="equivalent full cycles to end of life")
    end_of_life_capacity: float = Field(
        0.8, gt=0, lt=1, description="capacity fraction at which the cells are replaced"
    )
    replacement_cost_frac: float = Field(0.5, ge=0, description="cost of a cell replacement as a fraction of capex")
    lookback_days: int = Field(28, ge=1, description="days of produced schedules whose mean is annualised")


class EVObjectiveShares(_Part):
    """Weights of the EV objective's three terms, each normalised by a reference (see :func:`optimization.ev.weights_from_shares`)."""

    cost: float = Field(
        0.5, ge=0, description="weight of energy cost (per the cost of the requested energy at the mean price)"
    )
    peak: float = Field(0.3, ge=0, description="weight of the day's peak site load (per the uncontrolled peak)")
    convenience: float = Field(0.2, ge=0, description="weight of charging late (per kWh requested, delay in horizons)")

    @model_validator(mode="after")
    def _some(self) -> EVObjectiveShares:
        if self.cost + self.peak + self.convenience <= 0:
            raise ValueError("EV objective shares: at least one must be > 0")
        return self


#: generator types the dispatch settings know: thermal ones are assigned by merit order, renewable ones by name
RENEWABLE_TYPES = ("solar", "wind")


class MeritType(_Part):
    """One thermal generator type and the share of thermal capacity it takes in merit order."""

    type: str
    capacity_share: float = Field(gt=0, le=1)


class RenewableUnits(_Part):
    """Which generators (rows of the case's ppc ``gen`` table) are solar and which are wind."""

    solar: list[int] = Field(default_factory=list)
    wind: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> RenewableUnits:
        both = sorted(set(self.solar) & set(self.wind))
        if both or any(g < 0 for g in self.solar + self.wind):
            raise ValueError(
                f"renewable generators must be rows >= 0 and solar or wind, not both: {both or 'negative'}"
            )
        return self


class DispatchSettings(_Part):
    """Emissions and renewables of the DC-OPF and unit commitment (``gold_opf_dispatch``, ``gold_uc_schedule``).

    MATPOWER/pandapower cases carry no fuel: thermal generators are typed by merit order (marginal cost
    at mid output, cheapest first) into ``merit_types`` by share of thermal capacity; the synthetic UC
    fleet carries its own type. ``renewables`` names per case the generators that are solar or wind:
    they cost nothing to run (zero marginal cost) and are capped at their forecast each hour.
    """

    emission_factors_t_per_mwh: dict[str, float] = Field(
        default_factory=lambda: {"coal": 0.95, "gas_ccgt": 0.37, "gas_ocgt": 0.6, "solar": 0.0, "wind": 0.0},
        description="t CO2 per MWh of output by generator type (coal steam ~0.9-1.0, CCGT ~0.35-0.4, OCGT ~0.5-0.65: IPCC/EIA ballparks)",
    )
    merit_types: list[MeritType] = Field(
        default_factory=lambda: [MeritType(type="coal", capacity_share=0.4), MeritType(type="gas_ccgt", capacity_share=0.4),
                                 MeritType(type="gas_ocgt", capacity_share=0.2)],
        description="thermal types of a case without fuel data, cheapest first, by share of thermal capacity",
    )  # fmt: skip
    renewables: dict[str, RenewableUnits] = Field(
        default_factory=lambda: {"case118": RenewableUnits(solar=[5, 28, 29], wind=[36, 39])},
        description="case name -> its solar and wind generators (ppc gen rows); a case not listed has none",
    )
    wind_capacity_factor: float = Field(
        0.35,
        ge=0,
        le=1,
        description="fallback wind forecast, a flat share of Pmax (gridlake has no wind forecast table)",
    )

    @model_validator(mode="after")
    def _known_types(self) -> DispatchSettings:
        if abs(sum(m.capacity_share for m in self.merit_types) - 1.0) > 1e-9:
            raise ValueError("merit_types capacity shares must add up to 1")
        missing = sorted({m.type for m in self.merit_types} - set(self.emission_factors_t_per_mwh))
        missing += [r for r in RENEWABLE_TYPES if r not in self.emission_factors_t_per_mwh]
        if missing:
            raise ValueError(f"emission_factors_t_per_mwh lacks generator type(s) {missing}")
        bad = {k: v for k, v in self.emission_factors_t_per_mwh.items() if not (v == v and 0 <= v < float("inf"))}
        if bad:
            raise ValueError(f"emission factors must be finite and >= 0, got {bad}")
        return self


class OptimizationSettings(_Part):
    """Every setting of the optimisation library issue 16 added, with its default."""

    safety: SafetySettings = SafetySettings()
    v2g: V2GSettings = V2GSettings()
    regulation: RegulationSettings = RegulationSettings()
    economics: EconomicsSettings = EconomicsSettings()
    ev_objective: EVObjectiveShares = EVObjectiveShares()
    dispatch: DispatchSettings = DispatchSettings()


class EnergyBalanceSettings(_Part):
    """Non-technical-loss (theft) detection from the transformer energy balance (models.grid.energy_balance):
    when a transformer's unexplained loss counts as significant, and how much of it a suspect must explain.
    Defaults are the demo utility's; thresholds in kWh/day and shares of the transformer's daily supply."""

    #: technical loss per hour as shares of the rating: no-load (core) and load (copper, at full load)
    no_load_loss: float = Field(0.002, ge=0, le=0.1)
    load_loss: float = Field(0.01, ge=0, le=0.1)
    #: days of history a transformer's own baseline (level, noise, each meter's usual energy) comes from
    baseline_days: int = Field(14, ge=3, le=90)
    min_baseline_days: int = Field(7, ge=2, le=90)
    baseline_quantile: float = Field(0.25, gt=0, lt=1)
    #: materiality: a rise of the unexplained loss below this (kWh/day) or this share of the supply is ignored
    min_rise_kwh: float = Field(1.0, ge=0)
    min_rise_share: float = Field(0.004, ge=0, le=1)
    #: significance: one-sided CUSUM of the daily rise in robust sigmas (allowance k, decision level h)
    cusum_k: float = Field(1.0, ge=0)
    cusum_h: float = Field(4.0, gt=0)
    #: days since the change the hourly attribution looks at, and the hours a suspect's change must precede
    window_days: int = Field(7, ge=1, le=30)
    min_change_hours: int = Field(24, ge=1, le=240)
    #: share of the new loss the first suspect must explain, and of what is left each further one (joint_fit: the
    #: thieves together min_explained, each min_gain of what the others leave)
    min_explained: float = Field(0.6, gt=0, le=1)
    min_gain: float = Field(0.5, gt=0, le=1)
    #: share of the new loss a new meter fault (exact zeros / frozen readings) must explain: its missing energy
    #: is estimated from the meter's usual profile, so it cannot explain the hourly noise the way a thief does
    min_fault_explained: float = Field(0.25, gt=0, le=1)
    #: how far a suspect's own drop may differ from the hidden share the fit implies (soft, a Gaussian width)
    drop_tolerance: float = Field(0.15, gt=0, le=1)
    top_n: int = Field(3, ge=1, le=20)
    #: exact zeros / frozen readings are a new meter fault when the baseline had fewer than this share of them
    max_baseline_fault_share: float = Field(0.05, ge=0, le=1)
    #: a theft suspect is listed once the ranking named it on this many consecutive days (utilities open a
    #: case on a stable suspicion, not a one-day blip); 1 lists it the first day
    persist_days: int = Field(1, ge=1, le=7)
    #: the smallest share of a customer's use a bypass hides that is named theft, both as the share the fit
    #: implies and as the meter's own drop: a big neighbour can explain a loss with a small implied share,
    #: and a household's week-to-week swings (+-0.2 of its usual) make smaller drops indistinguishable
    min_theft_share: float = Field(0.25, ge=0, lt=1)
    #: the first suspect's bar (min_explained) is a share of the window's residual beyond what the baseline
    #: hours' noise alone leaves there (else of the whole residual, noise included)
    excess_over_noise: bool = True
    #: min_explained is a bar for the theft suspects together (each must add min_gain of what is left): two
    #: thieves on one transformer each explain about half of its new loss, and neither passes a bar alone
    joint_bar: bool = False
    #: the thieves of a transformer-day are fitted together (non-negative least squares of the new loss on the
    #: step regressors of every meter whose own use dropped), each keeping at least 1 - min_explained of it
    #: (its unique part, weighted by how its drop matches the share its joint coefficient implies), all of
    #: them min_explained; else one at a time (greedy)
    joint_fit: bool = True
    #: (with joint_fit) the thieves are fitted on the window's hours without a new meter fault (zeros / frozen
    #: readings hide that meter's real use); while those hours are more than half of the window, the fault is
    #: the day's explanation and no thief is named
    mask_fault_hours: bool = True
    #: SCADA sample_time stamps the end of the interval it averages (True) or its start
    scada_time_is_end: bool = True

    @model_validator(mode="after")
    def _days(self) -> EnergyBalanceSettings:
        if self.min_baseline_days > self.baseline_days:
            raise ValueError(
                f"min_baseline_days {self.min_baseline_days} must be <= baseline_days {self.baseline_days}"
            )
        return self


class UtilityProfile(_Part):
    name: str
    timezone: str
    partition_start: dt.date
    holiday_country: str = Field(description="holidays-package country code for working days vs days off")
    tariffs: Tariffs
    quality: Quality
    demand_response: DemandResponse
    alert_bands: AlertBands
    battery: BatterySite
    ev: EVSite
    optimization: OptimizationSettings = Field(
        default_factory=OptimizationSettings, description="optimisation settings (defaults documented)"
    )
    energy_balance: EnergyBalanceSettings = Field(
        default_factory=EnergyBalanceSettings, description="theft / non-technical-loss detection (defaults documented)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v


class ProfileError(ValueError):
    """A profile file that cannot be read or does not validate (the message names file and fields)."""


def read_profile(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> UtilityProfile:
    """Read and validate one profile file; ``overrides`` replace top-level fields before validation."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ProfileError(f"utility profile {p}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"utility profile {p}: expected a mapping at the top, got {type(data).__name__}")
    data.update(overrides or {})
    try:
        return UtilityProfile.model_validate(data)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ProfileError(f"utility profile {p}: {errs}") from None


@functools.cache
def _load(path: str, overrides: tuple[tuple[str, str], ...]) -> UtilityProfile:
    return read_profile(path, dict(overrides))


def load_profile() -> UtilityProfile:
    """The utility's profile: ``$GRIDLAKE_PROFILE`` or the demo one, with the environment overrides.
    Read once per (path, overrides): later calls return the same object."""
    path = os.environ.get(PROFILE_ENV) or str(DEMO_PROFILE)
    overrides = tuple((field, os.environ[var]) for var, field in ENV_OVERRIDES.items() if os.environ.get(var))
    return _load(path, overrides)
