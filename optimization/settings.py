"""The optimisation settings a utility chooses, in ONE typed object with documented defaults.

:class:`OptimizationSettings` groups every operating limit and assumption the schedules and the safety
gate use (issue 16): the safety limits (ramp rate, SOC reserve, temperature derating, export and
transformer limits), V2G terms, frequency-regulation terms, the battery's economics and the EV
objective weights. It is a pydantic model, so the utility profile (issue 10, ``contracts/``) can load
it with ``OptimizationSettings.model_validate(profile_section)``; the assets build it from their
config (``None`` fields of an asset config mean "the default here").

Units follow the library: power kW, energy kWh, prices $/MWh, regulation $/MW per hour, money in the
tariff's currency.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SafetySettings(_Frozen):
    """Limits every battery/EV schedule is checked against before it is published (:mod:`optimization.safety`).

    Ramp limit, SOC reserve and derating are also constraints of the battery model, so a solver
    schedule passes the gate by construction; the gate catches what the model did not see (a changed
    rating, a schedule from elsewhere, a numerical slip, a bug).
    """

    ramp_frac_per_hour: float | None = Field(
        2.0, gt=0, description="largest change of battery net power between consecutive periods, as a fraction of the "
        "power rating per hour (2.0 = half the rating per 15-minute step); None = no ramp limit")  # fmt: skip
    soc_reserve_frac: float = Field(0.1, ge=0, le=1, description="backup reserve kept above soc_min: SOC must stay >= soc_min + reserve")
    derate_start_c: float = Field(35.0, description="ambient temperature above which the power rating is derated linearly")
    derate_full_c: float = Field(50.0, description="temperature at which the derating reaches derate_min_frac")
    derate_min_frac: float = Field(0.5, ge=0, le=1, description="fraction of the rating left at derate_full_c and above")
    export_limit_kw: float | None = Field(None, ge=0, description="site export limit (interconnection agreement); None = none")
    transformer_limit_kw: float | None = Field(None, ge=0, description="site import limit of the battery's transformer; None = none")
    tolerance_kw: float = Field(1e-3, gt=0, description="numerical tolerance of power checks, kW")
    tolerance_kwh: float = Field(1e-3, gt=0, description="numerical tolerance of energy checks, kWh")

    @model_validator(mode="after")
    def _derate_order(self) -> SafetySettings:
        if self.derate_full_c <= self.derate_start_c:
            raise ValueError(f"derate_full_c ({self.derate_full_c}) must be above derate_start_c ({self.derate_start_c})")
        return self


class V2GSettings(_Frozen):
    """Vehicle-to-grid terms: what an export earns, what it costs the car's battery, and who takes part."""

    export_price_per_mwh: float | None = Field(None, description="price paid for V2G exports, $/MWh; None = the tariff's price of the period")
    min_export_price_per_mwh: float = Field(150.0, description="discharge only in periods whose export price is at least this")
    wear_cost_per_mwh: float = Field(60.0, ge=0, description="battery wear cost of each MWh discharged, $/MWh")
    floor_frac: float = Field(0.8, ge=0, le=1, description="an opted-in car leaves with at least this share of its request")
    buffer_kwh: float = Field(5.0, ge=0, description="how far an opted-in car's energy may dip below its arrival level, kWh")


class RegulationSettings(_Frozen):
    """Symmetric frequency-regulation capacity offered by the battery."""

    price_per_mw_h: float = Field(0.0, ge=0, description="capacity price, $/MW per hour; 0 = no regulation offered")
    soc_buffer_h: float = Field(0.25, ge=0, description="hours an award must be sustainable from stored energy (the SOC buffer)")


class EconomicsSettings(_Frozen):
    """Cost assumptions of the battery project (``gold_battery_economics``, :func:`optimization.battery.project_roi`)."""

    capex_per_kwh: float = Field(300.0, gt=0, description="installed cost per kWh of capacity")
    capex_per_kw: float = Field(150.0, ge=0, description="installed cost per kW of power (inverter, interconnection)")
    opex_frac_per_year: float = Field(0.015, ge=0, description="fixed O&M per year as a fraction of capex")
    discount_rate: float = Field(0.07, gt=-1, description="real discount rate per year")
    years: int = Field(15, ge=1, description="project lifetime, years")
    calendar_fade_per_year: float = Field(0.01, ge=0, description="capacity lost per year from calendar ageing (fraction of new)")
    cycle_life: float = Field(6000.0, gt=0, description="equivalent full cycles to end of life")
    end_of_life_capacity: float = Field(0.8, gt=0, lt=1, description="capacity fraction at which the cells are replaced")
    replacement_cost_frac: float = Field(0.5, ge=0, description="cost of a cell replacement as a fraction of capex")
    lookback_days: int = Field(28, ge=1, description="days of produced schedules whose mean is annualised")


class EVObjectiveShares(_Frozen):
    """Weights of the EV objective's three terms, each normalised by a reference (see :func:`optimization.ev.weights_from_shares`)."""

    cost: float = Field(0.5, ge=0, description="weight of energy cost (per the cost of the requested energy at the mean price)")
    peak: float = Field(0.3, ge=0, description="weight of the day's peak site load (per the uncontrolled peak)")
    convenience: float = Field(0.2, ge=0, description="weight of charging late (per kWh requested, delay in horizons)")

    @model_validator(mode="after")
    def _some(self) -> EVObjectiveShares:
        if self.cost + self.peak + self.convenience <= 0:
            raise ValueError("EV objective shares: at least one must be > 0")
        return self


class OptimizationSettings(_Frozen):
    """Every setting of the optimisation library issue 16 added, with its default."""

    safety: SafetySettings = SafetySettings()
    v2g: V2GSettings = V2GSettings()
    regulation: RegulationSettings = RegulationSettings()
    economics: EconomicsSettings = EconomicsSettings()
    ev_objective: EVObjectiveShares = EVObjectiveShares()


DEFAULT_SETTINGS = OptimizationSettings()
