"""Fixtures shared by the lake ingestion tests."""

import pytest


@pytest.fixture()
def env(lake_and_landing):
    """(lake, landing zone, first meter id, second meter id) over the small simulator's reference data."""
    lake, zone = lake_and_landing
    ids = lake.read("ref_meters", columns=["meter_id"])["meter_id"]
    return lake, zone, ids[0], ids[1]
