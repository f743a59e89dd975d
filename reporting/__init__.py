"""Reports people look at: the daily operator report (reporting.report). No Dagster here."""
