"""The optimisation settings a utility chooses, in ONE typed object with documented defaults.

:class:`OptimizationSettings` groups every operating limit and assumption the schedules and the safety
gate use (issue 16): the safety limits (ramp rate, SOC reserve, temperature derating, export and
transformer limits), V2G terms, frequency-regulation terms, the battery's economics, the EV
objective weights and the dispatch's emission factors and renewables. It is declared in the utility profile (``contracts.profile``, section
``optimization:`` of the profile YAML, every field optional) and re-exported here for the library;
the assets start from ``profile.optimization`` and apply their config's non-None overrides.

Units follow the library: power kW, energy kWh, prices $/MWh, regulation $/MW per hour, money in the
tariff's currency.
"""

from __future__ import annotations

from contracts.profile import (
    DispatchSettings,
    EconomicsSettings,
    EVObjectiveShares,
    OptimizationSettings,
    RegulationSettings,
    SafetySettings,
    V2GSettings,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "DispatchSettings",
    "EVObjectiveShares",
    "EconomicsSettings",
    "OptimizationSettings",
    "RegulationSettings",
    "SafetySettings",
    "V2GSettings",
]

#: the defaults, for library callers without a profile
DEFAULT_SETTINGS = OptimizationSettings()
