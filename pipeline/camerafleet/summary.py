"""The run summary and its ledger: every sampled frame ends processed, dropped or failed, or is still
in flight, per camera: `produced = processed + dropped + failed + in_flight`.

Frames are counted where they are durable, so a crashed actor cannot take its counts with it:

- **produced** = the frames announced on the camera's topic during the run (its end offsets at the start
  and the end of the run, less announcements of a frame that repeat one already there), plus the frames
  a producer sampled but could not put on Kafka at all (`dropped: kafka_unavailable`, `failed:
  kafka_send_failed`; polled from the producer actors). A frame the producer could not store is still
  announced, with its reason, and ends `failed` in the results log.
- **processed / dropped / failed** come from the run's results (one record per outcome: the results log,
  or the run's span of the results topic where consumers keep no log, as on Kubernetes): each message
  is identified by its Kafka position and keeps its first outcome, so a redelivery (at-least-once) or a
  repeated announcement is counted under `duplicates` instead of inflating the ledger.
- **missed slots** are not frames: slots of a camera's sampling grid (between its first and last frame)
  that no frame came from. `skipped`: the producer skipped them (the source was late or down, the actor
  behind); `producer_restart`: a producer actor crashed, losing what it had not announced, and its
  restart starts from the present; `unaccounted`: neither (a bug).

Without a view of Kafka's offsets (a producer-only or consumer-only role, or Kafka down at the end),
`produced` falls back to the producers' own count of sampled frames and frames are identified by
(camera, seq) of the run's epoch. Pure functions: unit-tested without Kafka or Ray.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from camerafleet.api.outcomes import MissedReason, Outcome, Reason
from camerafleet.stats import ProducerCameraStats


def read_records(log_path: Path) -> list[dict]:
    if not log_path.exists():
        return []
    with log_path.open("rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


class _Ledger:
    """The outcomes of one run, per camera, from its results log (see the module docstring)."""

    def __init__(self, records: list[dict], epoch_ms: int, kafka: dict[str, dict] | None):
        self.frames: dict[tuple, tuple[str, dict]] = {}  # frame identity -> (camera, first outcome)
        self.messages: Counter = Counter()  # camera -> announcements in the run's span of its topic
        self.repeated_announcements: Counter = Counter()
        self.redeliveries = 0
        self.unparsed = 0
        span: dict[tuple[str, int], tuple[int, int, str]] = {}
        for cam, info in (kafka or {}).items():
            for part, (lo, hi) in info["offsets"].items():
                span[(info["topic"], int(part))] = (lo, hi, cam)
                self.messages[cam] += max(0, hi - lo)
        seen: set[tuple[str, int, int]] = set()
        for rec in records:
            where = (rec.get("topic"), rec.get("partition"))
            if kafka is not None and "offset" in rec and where in span:
                lo, hi, cam = span[where]
                if not lo <= rec["offset"] < hi:
                    continue  # announced before this run (or after its end): not this run's frame
                position = (*where, rec["offset"])
                if position in seen:
                    self.redeliveries += 1
                    continue
                seen.add(position)
                if "seq" not in rec:  # unreadable, or deleted unread by retention: known by its position alone
                    if rec.get("reason") != Reason.EXPIRED_UNREAD:
                        self.unparsed += 1
                    self.frames[position] = (cam, rec)
                    continue
                frame = (cam, rec.get("epochMs"), rec["seq"])
                if frame in self.frames:
                    self.repeated_announcements[cam] += 1
                else:
                    self.frames[frame] = (cam, rec)
            elif "seq" not in rec:
                self.unparsed += 1
            elif rec.get("epochMs") == epoch_ms and (kafka is None or "offset" not in rec):
                frame = (rec["cameraId"], epoch_ms, rec["seq"])
                if frame in self.frames:
                    self.redeliveries += 1
                else:
                    self.frames[frame] = (rec["cameraId"], rec)

    @property
    def duplicates(self) -> int:
        return self.redeliveries + sum(self.repeated_announcements.values())

    def by_camera(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        for cam, rec in self.frames.values():
            out[cam].append(rec)
        return out


def grid_gaps(seqs: Iterable[int], shards: int) -> int:
    """Slots between a camera's first and last frame that have no frame, shard by shard (each shard owns
    every `shards`-th slot and starts on its own)."""
    by_shard: dict[int, list[int]] = defaultdict(list)
    for seq in set(seqs):
        by_shard[seq % shards].append(seq)
    return sum((max(v) - min(v)) // shards + 1 - len(v) for v in by_shard.values())


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1), "max": float(arr.max())}


def _model_stats(processed: list[dict]) -> tuple[dict[str, dict], dict[str, dict]]:
    detections: dict[str, dict[str, Any]] = {}
    batch_sizes: dict[str, list[int]] = defaultdict(list)
    for rec in processed:
        for name, res in rec.get("models", {}).items():
            d = detections.setdefault(name, {"frames": 0, "framesWithDetections": 0, "objects": 0, "labels": Counter(), "flags": Counter()})
            d["frames"] += 1
            if "detections" in res:
                n = len(res["detections"])
                d["objects"] += n
                d["framesWithDetections"] += n > 0
                d["labels"].update(det["label"] for det in res["detections"])
            d["flags"].update(res.get("flags", []))
            if "batchSize" in res:
                batch_sizes[name].append(res["batchSize"])
    for d in detections.values():
        d["labels"], d["flags"] = dict(d["labels"]), dict(d["flags"])
    batches = {
        name: {"mean": round(float(np.mean(sizes)), 2), "max": int(max(sizes)), "framesInBatchesOver1": int(sum(s > 1 for s in sizes))}
        for name, sizes in batch_sizes.items()
    }
    return detections, batches


def build_summary(
    *,
    fleet: str,
    run_id: str,
    epoch_ms: int,
    duration_s: float,
    producer: dict[str, ProducerCameraStats],
    records: list[dict],
    results_from: str,
    cameras: list[str],
    kafka: dict[str, dict] | None = None,
    shards: dict[str, int] | None = None,
) -> dict[str, Any]:
    """`producer`: merged producer stats per camera. `kafka`: per camera, its topic and each partition's
    end offsets at the start and the end of the run (`{"topic": t, "offsets": {partition: [start, end]}}`);
    None when unknown. `shards`: producer shards per camera (for missed slots). `records`: the run's results,
    `results_from` where they were read (a log's path, or the results topic)."""
    ledger = _Ledger(records, epoch_ms, kafka)
    outcomes = ledger.by_camera()
    per_camera: dict[str, dict[str, Any]] = {}
    dropped_by_reason: Counter = Counter()
    failed_by_reason: Counter = Counter()
    missed_by_reason: Counter = Counter()
    for cam in sorted(set(cameras) | set(producer) | set(outcomes) | set(kafka or {})):
        p = producer.get(cam) or ProducerCameraStats()
        recs = outcomes.get(cam, [])
        dropped = Counter(r["reason"] for r in recs if r["outcome"] == Outcome.DROPPED) + Counter({str(k): v for k, v in p.dropped.items()})
        failed = Counter(r["reason"] for r in recs if r["outcome"] == Outcome.FAILED) + Counter({str(k): v for k, v in p.failed.items()})
        processed = sum(r["outcome"] == Outcome.PROCESSED for r in recs)
        if kafka is not None:
            produced = ledger.messages[cam] - ledger.repeated_announcements[cam] + p.unannounced
        else:
            produced = p.produced
        in_flight = produced - processed - sum(dropped.values()) - sum(failed.values())
        gaps = grid_gaps((r["seq"] for r in recs if r.get("epochMs") == epoch_ms and "seq" in r), (shards or {}).get(cam, 1))
        missed: Counter[str] = Counter(
            {
                MissedReason.SKIPPED.value: p.skipped_slots,
                MissedReason.SOURCE_DOWN.value: p.down_slots,
                MissedReason.SHED.value: p.shed_slots,
            }
        )
        rest = gaps - p.skipped_slots - p.down_slots - p.shed_slots - p.unannounced - max(0, in_flight)
        if rest > 0:
            missed[(MissedReason.PRODUCER_RESTART if p.restarts else MissedReason.UNACCOUNTED).value] += rest
        missed = +missed
        dropped_by_reason += dropped
        failed_by_reason += failed
        missed_by_reason += missed
        per_camera[cam] = {
            "produced": produced,
            "processed": processed,
            "dropped": sum(dropped.values()),
            "failed": sum(failed.values()),
            "in_flight": in_flight,
            "failed_by_reason": dict(failed),
            "dropped_by_reason": dict(dropped),
            "missed_slots": sum(missed.values()),
            "missed_by_reason": dict(missed),
            "sampled": p.produced,
            "producer_restarts": p.restarts,
            "max_buffered": p.max_buffered,
            "source_up": p.source_up,
            "reconnects": p.reconnects,
            "source_problems": {str(k): v for k, v in p.source_problems.items()},
            "last_error": p.last_error,
            "decode_mode": p.decode_mode,
            "time_source": p.time_source,
            "packets_received": p.packets_received,
            "frames_decoded": p.frames_decoded,
        }
    processed_recs = [r for recs in outcomes.values() for r in recs if r["outcome"] == Outcome.PROCESSED]
    detections, batches = _model_stats(processed_recs)
    total = {k: sum(c[k] for c in per_camera.values()) for k in ("produced", "processed", "dropped", "failed", "in_flight", "missed_slots")}
    return {
        "fleet": fleet,
        "run_id": run_id,
        "epoch_ms": epoch_ms,
        "duration_s": round(duration_s, 2),
        **total,
        "ledger_balanced": all(c["in_flight"] == 0 for c in per_camera.values()),
        "produced_from": "kafka_offsets" if kafka is not None else "producer_counts",
        "duplicates": ledger.duplicates,
        "unparsed_messages": ledger.unparsed,
        "dropped_by_reason": dict(dropped_by_reason),
        "failed_by_reason": dict(failed_by_reason),
        "missed_by_reason": dict(missed_by_reason),
        "throughput_fps": round(total["processed"] / duration_s, 2) if duration_s > 0 else 0.0,
        "latency_ms": percentiles([r["latencyMs"] for r in processed_recs]),
        "detections": detections,
        "batch_size": batches,
        "per_camera": per_camera,
        "kafka_offsets": kafka,
        "results_from": results_from,
    }


def summarize_events(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What a run's events add up to (each event counted once, at its start): events by kind, and per camera each
    line's crossings by direction and each zone's entries and loiterings."""
    started: Counter[str] = Counter()
    cameras: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for e in events:
        if e.get("phase") not in ("start", "instant"):
            continue
        started[e["kind"]] += 1
        camera = cameras.setdefault(e["cameraId"], {"lines": {}, "zones": {}})
        if e["kind"] == "line":
            line = camera["lines"].setdefault(e["where"], {"in": 0, "out": 0})
            line[e["direction"]] += 1
        elif e["kind"] in ("zone", "loiter"):
            zone = camera["zones"].setdefault(e["where"], {"entries": 0, "loiterings": 0})
            zone["entries" if e["kind"] == "zone" else "loiterings"] += 1
    return {"started": dict(sorted(started.items())), "cameras": dict(sorted(cameras.items()))}


def _format_events(ev: dict[str, Any]) -> list[str]:
    started = ", ".join(f"{kind} {n}" for kind, n in ev.get("started", {}).items()) or "none"
    lines = [f"  events started: {started}"]
    for camera, c in ev.get("cameras", {}).items():
        parts = [f"line {name} in {d['in']} out {d['out']}" for name, d in c["lines"].items()]
        parts += [f"zone {name} entries {d['entries']} loiterings {d['loiterings']}" for name, d in c["zones"].items()]
        if parts:
            lines.append(f"    {camera}: " + "; ".join(parts))
    results: Counter[str] = Counter()
    for counts in ev.get("results", {}).values():
        results.update(counts)
    if results["late"] or results["duplicate"]:
        lines.append(f"  events: {results['late']} results came later than reorderWindowMs (not tracked), {results['duplicate']} twice")
    lines += [f"  events: {problem}" for problem in ev.get("problems", [])]
    return lines


def format_summary(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    lines = [
        f"Fleet {s['fleet']}, run {s['run_id']}: {s['duration_s']} s",
        f"  frames: produced {s['produced']}, processed {s['processed']}, dropped {s['dropped']}, failed {s['failed']}, in flight {s['in_flight']}"
        + ("  (ledger balances)" if s["ledger_balanced"] else "  (LEDGER DOES NOT BALANCE)"),
        f"  throughput {s['throughput_fps']} frames/s; latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms",
    ]
    if s["dropped_by_reason"]:
        lines.append(f"  dropped by reason: {s['dropped_by_reason']}")
    if s["failed_by_reason"]:
        lines.append(f"  failed by reason: {s['failed_by_reason']}")
    if s["duplicates"]:
        lines.append(f"  duplicate deliveries (at-least-once): {s['duplicates']}")
    if s.get("missed_by_reason"):
        lines.append(f"  missed slots (no frame taken): {s['missed_by_reason']}")
    for name, d in s["detections"].items():
        what = f"{d['objects']} objects in {d['framesWithDetections']} of {d['frames']} frames" if d["labels"] or d["objects"] else ""
        flags = f"flags {d['flags']}" if d["flags"] else ""
        b = s["batch_size"].get(name, {})
        lines.append(f"  model {name}: {what or flags or 'no findings'}; batch mean {b.get('mean')}, max {b.get('max')}")
    lines.append("  camera        produced processed dropped failed in-flight missed source")
    for cam, c in s["per_camera"].items():
        src = "up" if c["source_up"] else f"DOWN ({c['last_error']})"
        lines.append(
            f"  {cam:<13} {c['produced']:>8} {c['processed']:>9} {c['dropped']:>7} {c['failed']:>6} {c['in_flight']:>9} {c.get('missed_slots', 0):>6} {src}"
        )
    if "events" in s:
        lines += _format_events(s["events"])
    return "\n".join(lines)
