"""gridlake optimisation library: battery, EV charging, DC-OPF and unit commitment on pyomo + HiGHS.

Pure library code (no Dagster). Every model is a pyomo ``ConcreteModel`` solved through
:mod:`optimization.core`, which compiles it to sparse matrices and hands them to ``highspy`` in
one call (see that module for why the default pyomo interfaces are 5x slower on large LPs).
Inputs are numpy/pandas/polars series; outputs are polars DataFrames.
"""

from optimization.battery import BatteryResult, BatterySpec, optimize_battery, project_roi
from optimization.core import CompiledModel, Solution, solve
from optimization.dcopf import REFERENCE_OBJECTIVES, OPFResult, solve_dcopf
from optimization.errors import InfeasibleError, InputError
from optimization.ev import (
    EVResult,
    EVWeights,
    earliest_deadline_first,
    load_caltech_sessions,
    max_energy_sweep,
    optimize_ev,
    simulate_sessions,
    uncontrolled,
)
from optimization.safety import GateResult, Violation, gate_battery, gate_ev
from optimization.settings import OptimizationSettings
from optimization.unit_commitment import UCResult, solve_unit_commitment, synthetic_day, synthetic_fleet

__all__ = [
    "BatteryResult",
    "BatterySpec",
    "CompiledModel",
    "EVResult",
    "EVWeights",
    "GateResult",
    "InfeasibleError",
    "InputError",
    "OPFResult",
    "OptimizationSettings",
    "REFERENCE_OBJECTIVES",
    "Solution",
    "UCResult",
    "Violation",
    "earliest_deadline_first",
    "gate_battery",
    "gate_ev",
    "load_caltech_sessions",
    "max_energy_sweep",
    "optimize_ev",
    "optimize_battery",
    "project_roi",
    "simulate_sessions",
    "solve",
    "solve_dcopf",
    "solve_unit_commitment",
    "synthetic_day",
    "synthetic_fleet",
    "uncontrolled",
]
