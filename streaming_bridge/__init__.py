"""Streaming bridge: live telemetry over MQTT -> scoring -> high-priority alerts pushed in near real time.

Not built yet (no issue filed for it so far). Its input contract already exists: the ``gold_alerts``
table declared in ``contracts`` (stable columns, ``fingerprint`` for Alertmanager-style dedup),
written by the grid-ML scoring assets.
"""
