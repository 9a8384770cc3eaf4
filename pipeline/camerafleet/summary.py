"""The run summary and its ledger: every sampled frame ends processed, dropped or failed, or is still
in flight, per camera.

The consumer side is read from the run's results log (one line per outcome), keeping the first outcome
of each frame, so redeliveries (at-least-once) are counted as duplicates instead of inflating the
ledger. The producer side (frames sampled, frames that failed before reaching Kafka) comes from the
producer actors. Pure functions: unit-tested without Kafka or Ray.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson


def merge_producer_stats(stats: Iterable[dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Sum the per-camera stats of several producer actors (live and retired)."""
    merged: dict[str, dict[str, Any]] = {}
    for actor in stats:
        for cam, s in actor.items():
            m = merged.setdefault(cam, {"produced": 0, "announced": 0, "failed": Counter(), "reconnects": 0, "sourceUp": False, "lastError": None})
            m["produced"] += s["produced"]
            m["announced"] += s["announced"]
            m["failed"].update(s["failed"])
            m["reconnects"] += s["reconnects"]
            m["sourceUp"] = m["sourceUp"] or s["sourceUp"]
            m["lastError"] = s["lastError"] or m["lastError"]
    return merged


def read_outcomes(log_path: Path, epoch_ms: int | None) -> tuple[dict[tuple[str, int], dict], int, list[dict]]:
    """First outcome of each frame of this run's epoch, how many repeats were seen, and the records of
    messages that could not be parsed (they have no frame identity)."""
    first: dict[tuple[str, int], dict] = {}
    duplicates = 0
    unparsed: list[dict] = []
    if not log_path.exists():
        return first, 0, unparsed
    with log_path.open("rb") as f:
        for line in f:
            rec = orjson.loads(line)
            if "seq" not in rec:
                unparsed.append(rec)
                continue
            if epoch_ms is not None and rec.get("epochMs") != epoch_ms:
                continue
            key = (rec["cameraId"], rec["seq"])
            if key in first:
                duplicates += 1
            else:
                first[key] = rec
    return first, duplicates, unparsed


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
    producer: dict[str, dict[str, Any]],
    log_path: Path,
    cameras: list[str],
) -> dict[str, Any]:
    outcomes, duplicates, unparsed = read_outcomes(log_path, epoch_ms)
    per_camera: dict[str, dict[str, Any]] = {}
    dropped_by_reason: Counter = Counter()
    failed_by_reason: Counter = Counter()
    for cam in sorted(set(cameras) | set(producer) | {c for c, _ in outcomes}):
        p = producer.get(cam, {"produced": 0, "failed": Counter(), "reconnects": 0, "sourceUp": False, "lastError": None})
        recs = [r for (c, _), r in outcomes.items() if c == cam]
        dropped = Counter(r["reason"] for r in recs if r["outcome"] == "dropped")
        failed = Counter(r["reason"] for r in recs if r["outcome"] == "failed") + Counter(p["failed"])
        processed = sum(r["outcome"] == "processed" for r in recs)
        dropped_by_reason += dropped
        failed_by_reason += failed
        per_camera[cam] = {
            "produced": p["produced"],
            "processed": processed,
            "dropped": sum(dropped.values()),
            "failed": sum(failed.values()),
            "in_flight": p["produced"] - processed - sum(dropped.values()) - sum(failed.values()),
            "failed_by_reason": dict(failed),
            "dropped_by_reason": dict(dropped),
            "source_up": p["sourceUp"],
            "reconnects": p["reconnects"],
            "last_error": p["lastError"],
        }
    processed_recs = [r for r in outcomes.values() if r["outcome"] == "processed"]
    detections, batches = _model_stats(processed_recs)
    total = {k: sum(c[k] for c in per_camera.values()) for k in ("produced", "processed", "dropped", "failed", "in_flight")}
    return {
        "fleet": fleet,
        "run_id": run_id,
        "epoch_ms": epoch_ms,
        "duration_s": round(duration_s, 2),
        **total,
        "ledger_balanced": total["in_flight"] == 0 and all(c["in_flight"] == 0 for c in per_camera.values()),
        "duplicates": duplicates,
        "unparsed_messages": len(unparsed),
        "dropped_by_reason": dict(dropped_by_reason),
        "failed_by_reason": dict(failed_by_reason),
        "throughput_fps": round(total["processed"] / duration_s, 2) if duration_s > 0 else 0.0,
        "latency_ms": percentiles([r["latencyMs"] for r in processed_recs]),
        "detections": detections,
        "batch_size": batches,
        "per_camera": per_camera,
        "results_log": str(log_path),
    }


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
    for name, d in s["detections"].items():
        what = f"{d['objects']} objects in {d['framesWithDetections']} of {d['frames']} frames" if d["labels"] or d["objects"] else ""
        flags = f"flags {d['flags']}" if d["flags"] else ""
        b = s["batch_size"].get(name, {})
        lines.append(f"  model {name}: {what or flags or 'no findings'}; batch mean {b.get('mean')}, max {b.get('max')}")
    lines.append("  camera        produced processed dropped failed in-flight source")
    for cam, c in s["per_camera"].items():
        src = "up" if c["source_up"] else f"DOWN ({c['last_error']})"
        lines.append(f"  {cam:<13} {c['produced']:>8} {c['processed']:>9} {c['dropped']:>7} {c['failed']:>6} {c['in_flight']:>9} {src}")
    return "\n".join(lines)
