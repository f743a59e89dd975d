"""Every Delta table of the lake, by name (the PostgreSQL bridge tables of contracts.alerts are not Delta
tables, so not here)."""

from __future__ import annotations

from contracts.forecasts import FORECAST_TABLES
from contracts.grid import GRID_TABLES
from contracts.load import LOAD_TABLES
from contracts.optimisation import OPT_TABLES, SECURITY_TABLES
from contracts.reference import REFERENCE_TABLES, TRUTH_TABLES
from contracts.sources import SOURCE_TABLES
from contracts.stream import STREAM_TABLES
from contracts.tables import Table

TABLES: dict[str, Table] = {
    **REFERENCE_TABLES,
    **TRUTH_TABLES,
    **LOAD_TABLES,
    **FORECAST_TABLES,
    **GRID_TABLES,
    **OPT_TABLES,
    **SECURITY_TABLES,
    **STREAM_TABLES,
    **SOURCE_TABLES,
}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {sorted(TABLES)}") from None
