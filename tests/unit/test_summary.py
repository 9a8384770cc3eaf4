"""The ledger: produced = processed + dropped + failed + in flight, per camera; repeats are duplicates."""

import orjson

from camerafleet.summary import build_summary, format_summary, merge_producer_stats


def rec(cam, seq, outcome, epoch=1, reason=None, latency=100, models=None):
    r = {"cameraId": cam, "seq": seq, "epochMs": epoch, "captureTsMs": 0, "outcome": outcome, "latencyMs": latency}
    if reason:
        r["reason"] = reason
    if outcome == "processed":
        r["models"] = models or {"y": {"detections": [{"box": [0, 0, 1, 1], "label": "car", "score": 0.9}], "batchSize": 3}}
    return r


def producer(produced, failed=None):
    return {"produced": produced, "announced": produced, "failed": failed or {}, "skippedSlots": 0, "reconnects": 0, "sourceUp": True, "lastError": None}


def write(path, records):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def test_ledger_balances_with_duplicates_and_other_runs(tmp_path):
    log = tmp_path / "results.jsonl"
    write(log, [
        rec("1", 0, "processed"), rec("1", 1, "dropped", reason="stale"), rec("1", 2, "failed", reason="decode_error"),
        rec("1", 0, "processed"),  # redelivered
        rec("1", 9, "processed", epoch=0),  # a previous run
        {"cameraId": "1", "outcome": "failed", "reason": "malformed_message", "topic": "camera_1", "offset": 4},
    ])
    stats = merge_producer_stats([{"1": producer(2)}, {"1": producer(2, {"bucket_unavailable": 1})}])
    s = build_summary(fleet="f", run_id="r", epoch_ms=1, duration_s=2.0, producer=stats, log_path=log, cameras=["1", "2"])
    assert (s["produced"], s["processed"], s["dropped"], s["failed"], s["in_flight"]) == (4, 1, 1, 2, 0)
    assert s["ledger_balanced"] and s["duplicates"] == 1 and s["unparsed_messages"] == 1
    assert s["failed_by_reason"] == {"decode_error": 1, "bucket_unavailable": 1}
    assert s["per_camera"]["2"]["produced"] == 0
    assert s["detections"]["y"]["objects"] == 1 and s["batch_size"]["y"]["max"] == 3
    assert s["throughput_fps"] == 0.5
    assert "ledger balances" in format_summary(s)


def test_frames_without_outcome_are_in_flight(tmp_path):
    log = tmp_path / "results.jsonl"
    write(log, [rec("1", 0, "processed")])
    s = build_summary(fleet="f", run_id="r", epoch_ms=1, duration_s=1.0, producer={"1": merge_producer_stats([{"1": producer(3)}])["1"]}, log_path=log, cameras=["1"])
    assert s["in_flight"] == 2 and not s["ledger_balanced"]
    assert "DOES NOT BALANCE" in format_summary(s)
