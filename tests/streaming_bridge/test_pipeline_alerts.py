"""streaming_bridge.pipeline_alerts: a failed run as an Alert, and the JSON-lines sink."""

import datetime as dt

import pytest

from streaming_bridge.pipeline_alerts import MAX_ERROR_CHARS, JsonlAlertSink, run_failure_alert

AT = dt.datetime(2026, 11, 2, 6, 15, 30, 123456, tzinfo=dt.timezone.utc)


def test_alert_identity_is_job_and_partition_not_run():
    a = run_failure_alert(
        job_name="daily_ingest",
        run_id="r1",
        failed_at=AT,
        error="boom",
        partition="2026-11-01",
        failed_steps=["ingest_scada"],
    )
    b = run_failure_alert(
        job_name="daily_ingest", run_id="r2", failed_at=AT, error="boom again", partition="2026-11-01"
    )
    c = run_failure_alert(job_name="daily_ingest", run_id="r3", failed_at=AT, error="boom", partition="2026-11-02")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    am = a.to_alertmanager()
    assert am["labels"]["alertname"] == "PipelineRunFailed" and am["labels"]["severity"] == "warning"
    assert am["annotations"]["summary"] == "Dagster run of daily_ingest [2026-11-01] failed in ingest_scada"
    assert am["startsAt"] == "2026-11-02T06:15:30.123Z" and "endsAt" not in am


def test_bad_input_is_refused_and_long_errors_are_cut():
    with pytest.raises(ValueError, match="must be timezone-aware"):
        run_failure_alert(job_name="j", run_id="r", failed_at=dt.datetime(2026, 1, 1), error="e")
    with pytest.raises(ValueError, match="severity 'page'"):
        run_failure_alert(job_name="j", run_id="r", failed_at=AT, error="e", severity="page")
    with pytest.raises(ValueError, match="job name and a run id"):
        run_failure_alert(job_name="", run_id="r", failed_at=AT, error="e")
    long = run_failure_alert(job_name="j", run_id="r", failed_at=AT, error="x" * 10_000)
    assert len(long.annotations["description"]) == MAX_ERROR_CHARS
    assert run_failure_alert(job_name="j", run_id="r", failed_at=AT, error="  ").annotations["description"]


def test_jsonl_sink_appends_and_names_a_bad_line(tmp_path):
    sink = JsonlAlertSink(tmp_path / "out" / "alerts.jsonl")
    a = run_failure_alert(job_name="j", run_id="r", failed_at=AT, error="e")
    sink.submit([a])
    sink.submit([a.resolve(AT + dt.timedelta(hours=1))])
    rows = sink.read()
    assert [r["fingerprint"] for r in rows] == [a.fingerprint()] * 2 and "endsAt" in rows[1]
    with open(sink.path, "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(ValueError, match=r"alerts.jsonl:3: not a JSON alert line"):
        sink.read()
