"""The ledger: produced = processed + dropped + failed + in flight, per camera; repeats are duplicates.

With Kafka's offsets (the normal case) produced is what reached each camera's topic during the run plus
what producers could not announce; without them it is the producers' own count."""

from collections import Counter

import orjson

from camerafleet.api.outcomes import Reason
from camerafleet.stats import ProducerCameraStats, ProducerStats, merge_producer_stats
from camerafleet.summary import build_summary, format_summary, grid_gaps, read_records


def rec(cam, seq, outcome, epoch=1, reason=None, latency=100, models=None, offset=None, topic=None, partition=0):
    r = {"cameraId": cam, "seq": seq, "epochMs": epoch, "captureTsMs": 0, "outcome": outcome, "latencyMs": latency}
    if reason:
        r["reason"] = reason
    if outcome == "processed":
        r["models"] = models or {"y": {"detections": [{"box": [0, 0, 1, 1], "label": "car", "score": 0.9}], "batchSize": 3}}
    if offset is not None:
        r |= {"topic": topic or f"camera_{cam}", "partition": partition, "offset": offset}
    return r


def camera(produced, failed=None, dropped=None, skipped=0):
    return ProducerCameraStats(
        produced=produced,
        announced=produced,
        failed=Counter({Reason(k): v for k, v in (failed or {}).items()}),
        dropped=Counter({Reason(k): v for k, v in (dropped or {}).items()}),
        skipped_slots=skipped,
        source_up=True,
    )


def producer(cameras, restarted=False, incarnation="a"):
    return ProducerStats(incarnation=incarnation, restarted=restarted, cameras=cameras)


def write(path, records):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def summary(log, stats, cameras=("1",), kafka=None, shards=None):
    return build_summary(
        fleet="f",
        run_id="r",
        epoch_ms=1,
        duration_s=2.0,
        producer=merge_producer_stats(stats),
        records=read_records(log),
        results_from=str(log),
        cameras=list(cameras),
        kafka=kafka,
        shards=shards,
    )


def span(cam, *parts):
    return {cam: {"topic": f"camera_{cam}", "offsets": {str(p): list(lo_hi) for p, lo_hi in enumerate(parts)}}}  # as the runner


def test_producer_counts_without_kafka_offsets(tmp_path):
    log = tmp_path / "results.jsonl"
    write(
        log,
        [
            rec("1", 0, "processed"),
            rec("1", 1, "dropped", reason="stale"),
            rec("1", 2, "failed", reason="decode_error"),
            rec("1", 3, "failed", reason="bucket_unavailable"),  # stored nowhere, announced with the producer's reason
            rec("1", 0, "processed"),  # redelivered
            rec("1", 9, "processed", epoch=0),  # a previous run
            {"cameraId": "1", "outcome": "failed", "reason": "malformed_message", "topic": "camera_1", "offset": 4},
        ],
    )
    s = summary(log, [producer({"1": camera(3)}), producer({"1": camera(2, dropped={"kafka_unavailable": 1})})], cameras=["1", "2"])
    assert s["produced_from"] == "producer_counts"
    assert (s["produced"], s["processed"], s["dropped"], s["failed"], s["in_flight"]) == (5, 1, 2, 2, 0)
    assert s["ledger_balanced"] and s["duplicates"] == 1 and s["unparsed_messages"] == 1
    assert s["failed_by_reason"] == {"decode_error": 1, "bucket_unavailable": 1}
    assert s["dropped_by_reason"] == {"stale": 1, "kafka_unavailable": 1}
    assert s["per_camera"]["2"]["produced"] == 0
    assert s["detections"]["y"]["objects"] == 1 and s["batch_size"]["y"]["max"] == 3
    assert s["throughput_fps"] == 0.5
    assert "ledger balances" in format_summary(s)


def test_frames_without_outcome_are_in_flight(tmp_path):
    log = tmp_path / "results.jsonl"
    write(log, [rec("1", 0, "processed")])
    s = summary(log, [producer({"1": camera(3)})])
    assert s["in_flight"] == 2 and not s["ledger_balanced"]
    assert "DOES NOT BALANCE" in format_summary(s)


def test_kafka_offsets_count_what_reached_kafka_even_if_a_producer_lost_its_counts(tmp_path):
    """A producer incarnation killed before its stats were read: Kafka still knows what it announced."""
    log = tmp_path / "results.jsonl"
    write(
        log,
        [
            rec("1", 7, "processed", epoch=0, offset=9),  # before this run's span: another run's leftover
            rec("1", 10, "processed", offset=10),
            rec("1", 11, "processed", offset=11),
            rec("1", 20, "processed", offset=3, partition=1),
            rec("1", 12, "failed", reason="bucket_unavailable", offset=12),
            rec("1", 10, "processed", offset=10),  # redelivered after a consumer crash
            rec("1", 11, "processed", offset=13),  # the same frame announced twice
            {"cameraId": "1", "outcome": "failed", "reason": "malformed_message", "topic": "camera_1", "partition": 0, "offset": 14},
            rec("99", 5, "failed", reason="unknown_camera", epoch=7, offset=15, topic="camera_1"),  # a foreign message on camera 1's topic
            # deleted by the topic's retention before it was read
            {"cameraId": "1", "outcome": "dropped", "reason": "expired_unread", "topic": "camera_1", "partition": 0, "offset": 16},
        ],
    )
    kafka = span("1", (10, 17), (3, 4))
    s = summary(log, [producer({"1": camera(0, dropped={"kafka_unavailable": 2})})], kafka=kafka)  # the live incarnation saw none of them
    assert s["produced_from"] == "kafka_offsets"
    c = s["per_camera"]["1"]
    assert (c["produced"], c["processed"], c["dropped"], c["failed"], c["in_flight"]) == (8 - 1 + 2, 3, 3, 3, 0)
    assert s["ledger_balanced"] and s["duplicates"] == 2 and s["unparsed_messages"] == 1
    assert c["failed_by_reason"] == {"bucket_unavailable": 1, "malformed_message": 1, "unknown_camera": 1}
    assert c["dropped_by_reason"] == {"kafka_unavailable": 2, "expired_unread": 1}
    assert "99" not in s["per_camera"]


def test_kafka_offsets_show_messages_without_outcome_in_flight(tmp_path):
    log = tmp_path / "results.jsonl"
    write(log, [rec("1", 0, "processed", offset=0)])
    s = summary(log, [], kafka=span("1", (0, 3)))
    assert s["per_camera"]["1"]["in_flight"] == 2 and not s["ledger_balanced"]


def test_grid_gaps_per_shard():
    assert grid_gaps([3, 4, 5, 6], 1) == 0
    assert grid_gaps([3, 5, 8], 1) == 3
    assert grid_gaps([4, 6, 8, 5, 7], 2) == 0  # shard 1 starts later than shard 0: no gap
    assert grid_gaps([0, 4, 1], 2) == 1


def test_missed_slots_name_their_reason(tmp_path):
    log = tmp_path / "results.jsonl"
    seqs = [*range(10), *range(20, 30)]  # slots 10-19 have no frame
    write(
        log,
        [rec("1", q, "processed", offset=i) for i, q in enumerate(seqs)] + [rec("2", q, "processed", offset=i) for i, q in enumerate(seqs)],
    )
    kafka = {**span("1", (0, 20)), **span("2", (0, 20))}
    restarted = producer({"1": camera(5, dropped={"kafka_unavailable": 2}, skipped=3)}, restarted=True, incarnation="b")
    s = summary(log, [producer({"1": camera(15), "2": camera(20, skipped=4)}), restarted], cameras=["1", "2"], kafka=kafka)
    assert s["per_camera"]["1"]["missed_by_reason"] == {"skipped": 3, "producer_restart": 10 - 3 - 2}
    assert s["per_camera"]["1"]["producer_restarts"] == 1
    assert s["per_camera"]["2"]["missed_by_reason"] == {"skipped": 4, "unaccounted": 6}
    assert s["missed_slots"] == 10 + 10 - 2 and s["ledger_balanced"]
    assert "missed slots" in format_summary(s)
    # The runner writes it with orjson, which takes plain str keys only (an enum member key once failed here).
    assert orjson.loads(orjson.dumps(s))["per_camera"]["1"]["missed_by_reason"]["producer_restart"] == 5


def test_events_add_up_per_camera_and_print():
    from camerafleet.summary import _format_events, summarize_events

    def ev(kind, phase, where="", direction=None, camera="lobby"):
        return {"cameraId": camera, "kind": kind, "phase": phase, "where": where, "direction": direction}

    events = [
        ev("object", "start"),
        ev("line", "instant", "door", "in"),
        ev("line", "instant", "door", "out"),
        ev("line", "instant", "door", "in"),
        ev("zone", "start", "desk"),
        ev("zone", "update", "desk"),
        ev("loiter", "start", "desk"),
        ev("zone", "end", "desk"),
        ev("object", "end"),
    ]
    s = summarize_events(events)
    assert s["started"] == {"line": 3, "loiter": 1, "object": 1, "zone": 1}
    assert s["cameras"]["lobby"] == {"lines": {"door": {"in": 2, "out": 1}}, "zones": {"desk": {"entries": 1, "loiterings": 1}}}
    problem = "camera lobby: zone 'roof' is left out: point [2500.0, 100.0] is outside"
    text = "\n".join(_format_events({**s, "problems": [problem], "results": {"lobby": {"tracked": 90, "late": 2}}}))
    assert "line door in 2 out 1; zone desk entries 1 loiterings 1" in text and "zone 'roof' is left out" in text
    assert "2 results came later than reorderWindowMs (not tracked), 0 twice" in text
