"""Tracks and events through `camerafleet run`: a scene whose truth is known (real faces walking past a fixed
camera: crossings of a counting line both ways, two people crossing each other on it, one who turns back,
one who passes beyond its end, one who loiters at a desk) through the producers, Kafka, the real CenterFace
on Ray Serve and the events stage. Every crossing (with its direction), desk visit and loitering of the truth is
seen within two seconds of when it happened, and nothing else is; every event that starts has one id, sent once.

The clip loops and the producers start some seconds into it, however long the machine takes to start Ray
and Serve: the run goes on until the results cover one whole loop, and the truth is counted over the same
span of capture times as the events."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from camerafleet.runner import FleetRunner
from camerafleet_dev.devservers.kafka import KafkaServer
from camerafleet_dev.truth_scenes import LOBBY, write_scene
from tests.fixtures.pipeline import (
    EVENT_TIMEOUT_S,
    PATIENT_CONSUMER,
    RayCluster,
    face_model,
    read_results,
    run_fleet_for,
    wait_until,
    write_fleet,
)

pytestmark = pytest.mark.integration

MARGIN_MS = 3000  # the truth is judged over the covered span less this at either end (a frame either side)
# How far from the truth's moment an event may be seen: a track gets its id on its second result and a sampled
# frame comes up to a period after the moment (at 5 fps, half a second together; 2 s leaves room for a missed
# detection or two).
LAG_MS = 2000


def covered_span(results: list[dict[str, Any]]) -> tuple[int, int] | None:
    processed = [r["captureTsMs"] for r in results if r.get("outcome") == "processed"]
    return (min(processed), max(processed)) if processed else None


def test_a_scene_with_known_crossings_gives_the_truths_counts_and_events(
    tmp_path: Path, kafka_server: KafkaServer, ray_cluster: RayCluster
) -> None:
    clip, truth_path = write_scene(LOBBY, tmp_path / "scene", width=640, height=360, fps=10.0)
    truth = json.loads(truth_path.read_text())
    loop_ms = round(LOBBY.seconds * 1000)
    (door_a, door_b) = truth["lines"]["door"]
    camera = {
        "id": "lobby",
        "source": str(clip),
        "inferenceFps": 5,
        "lines": [{"name": "door", "points": [door_a, door_b], "anchor": "center", "labels": ["face"]}],
        "zones": [{"name": "desk", "points": truth["zones"]["desk"], "anchor": "center", "loiterSeconds": LOBBY.loiter_s}],
    }
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "events",
        kafka_server.bootstrap,
        cameras=[camera],
        models=[face_model()],
        consumer=PATIENT_CONSUMER,
        producer={"admission": {"mode": "off"}},  # every slot taken, however busy the machine: the truth has them all
        events={"enabled": True, "reorderWindowMs": 1000},
    )

    async def one_whole_loop(runner: FleetRunner) -> None:
        def covered() -> bool:
            span = covered_span(read_results(runner))
            return span is not None and span[1] - span[0] >= loop_ms + 2 * MARGIN_MS

        # The loop plays in real time however busy the machine is; the rest of the bound is the fixtures' own.
        await wait_until("results covering one whole loop of the scene", covered, timeout_s=loop_ms / 1000 + EVENT_TIMEOUT_S, interval_s=1)

    runner, summary = asyncio.run(run_fleet_for(manifest, None, one_whole_loop))
    assert summary["ledger_balanced"], summary
    span = covered_span(read_results(runner))
    assert span is not None
    start, end = span[0] + MARGIN_MS, span[1] - MARGIN_MS
    epoch = runner.epoch_ms
    events = [json.loads(line) for line in (runner.run_dir / "events.jsonl").read_text().splitlines()]

    def occurrences(t_s: float) -> list[int]:
        """When a moment of the scene (seconds into a loop) happened within the covered span (capture time, ms)."""
        t_ms = epoch + round(t_s * 1000)
        return [t_ms + k * loop_ms for k in range(4) if start <= t_ms + k * loop_ms <= end]

    # What the truth says happened in the span, and what was seen: (kind, direction) at a time.
    truth_moments = [("line", e["direction"], at) for e in truth["events"] if e["kind"] == "line" for at in occurrences(e["t"])]
    for visit in (e for e in truth["events"] if e["kind"] == "zone"):
        for entry in occurrences(visit["t"]):  # loitering is timed from the entry: judged where the entry is
            truth_moments.append(("zone", None, entry))
            if entry + LOBBY.loiter_s * 1000 <= end:
                truth_moments.append(("loiter", None, entry + round(LOBBY.loiter_s * 1000)))
    # A visit already under way when the results begin is seen entering late, and loitering late: not judged.
    entered = {(e["trackId"], e["where"]): e["atMs"] for e in events if e["kind"] == "zone" and e["phase"] == "start"}
    seen = [
        (e["kind"], e.get("direction"), e["atMs"])
        for e in events
        if e["kind"] != "object"
        and e["phase"] in ("start", "instant")
        and not (e["kind"] == "loiter" and entered.get((e["trackId"], e["where"]), start) < start)
    ]
    unmatched = list(seen)
    missed = []
    for kind, direction, at in sorted(truth_moments, key=lambda m: m[2]):
        match = next((m for m in unmatched if m[:2] == (kind, direction) and abs(m[2] - at) <= LAG_MS), None)
        if match is None:
            missed.append((kind, direction, at - epoch))
        else:
            unmatched.remove(match)
    spurious = [(k, d, at - epoch) for k, d, at in unmatched if start + LAG_MS <= at <= end - LAG_MS]
    assert truth_moments and not missed and not spurious, {
        "missed": missed,
        "spurious": spurious,
        "seen": [(k, d, at - epoch) for k, d, at in seen],
    }
    # Every record of an event is sent once; an event that ended had started, under the same id.
    records = Counter((e["id"], e["phase"], e["atMs"]) for e in events)
    assert max(records.values()) == 1
    assert {e["id"] for e in events if e["phase"] == "end"} <= {e["id"] for e in events if e["phase"] == "start"}
    # The run's summary adds up its events log.
    logged = Counter(e["direction"] for e in events if e["kind"] == "line")
    assert summary["events"]["cameras"]["lobby"]["lines"]["door"] == {"in": logged["in"], "out": logged["out"]}
