"""Thin Dagster asset definitions; the work is done by the library packages they call."""
