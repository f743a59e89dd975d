"""Exceptions raised by the optimisation library.

Both derive from ``ValueError`` so callers that only want "bad input" can catch one type, while
:class:`InfeasibleError` carries *which constraint group* cannot be met and by how much, so an
asset can put it in its failure metadata instead of a bare "solver status: infeasible".
"""

from __future__ import annotations


class InputError(ValueError):
    """Malformed input data: wrong shape, missing column, NaN, negative capacity, ..."""


class InfeasibleError(ValueError):
    """The problem has no solution; ``groups`` maps constraint group -> minimum total violation.

    ``groups`` is filled either by a model's own pre-checks (which know the physics, e.g.
    "demand above capacity") or by :func:`optimization.core.diagnose_infeasibility`, an elastic
    LP that finds the smallest violation per constraint group. ``hint`` names the opt-in slack
    formulation that would return a schedule with the unmet amount instead of raising.
    """

    def __init__(self, message: str, groups: dict[str, float] | None = None, hint: str = "") -> None:
        self.groups = dict(groups or {})
        self.hint = hint
        full = message + (f" ({hint})" if hint else "")
        super().__init__(full)
