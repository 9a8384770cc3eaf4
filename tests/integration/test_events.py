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

from camerafleet.bucket import open_bucket
from camerafleet.bucket.base import capture_ms_of_clip_key, clip_folder
from camerafleet.models.appearance import vector
from camerafleet.runner import FleetRunner
from camerafleet_dev.devservers.kafka import KafkaServer
from camerafleet_dev.truth_judge import judge_events
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
    events = [json.loads(line) for line in (runner.run_dir / "events.jsonl").read_text().splitlines()]
    score = judge_events(LOBBY, truth["events"], events, runner.epoch_ms, (start, end), LAG_MS)
    assert score.truth and not score.missed and not score.spurious, score
    # Every record of an event is sent once; an event that ended had started, under the same id.
    records = Counter((e["id"], e["phase"], e["atMs"]) for e in events)
    assert max(records.values()) == 1
    assert {e["id"] for e in events if e["phase"] == "end"} <= {e["id"] for e in events if e["phase"] == "start"}
    # The run's summary adds up its events log.
    logged = Counter(e["direction"] for e in events if e["kind"] == "line")
    assert summary["events"]["cameras"]["lobby"]["lines"]["door"] == {"in": logged["in"], "out": logged["out"]}
    # The frames of every track are kept for its clips, with a pre- and a post-roll, and no others.
    bucket = open_bucket(runner.spec.bucket)
    kept = [capture_ms_of_clip_key(k) for k in bucket.keys(clip_folder("lobby"), "", "~", most=1_000_000)]
    ends = {e["id"]: e["atMs"] for e in events if e["kind"] == "object" and e["phase"] == "end"}
    tracks = [(e["startMs"], ends.get(e["id"], 2**62)) for e in events if e["kind"] == "object" and e["phase"] == "start"]
    processed = [r["captureTsMs"] for r in read_results(runner) if r["outcome"] == "processed"]
    released = max(processed) - runner.spec.events.reorder_window_ms  # later results wait, in the saved state, for later ones
    during = {t for t in processed if t <= released and any(a <= t <= b for a, b in tracks)}
    # The replicas described every box: that is what keeps a lost track for re-identification.
    faces = [d for r in read_results(runner) if r["outcome"] == "processed" for d in r["models"]["faces"]["detections"]]
    assert faces and all(vector(d.get("appearance", "")) is not None for d in faces), faces[:3]
    assert during and during <= set(kept), sorted(during - set(kept))[:10]
    clips, ev = runner.spec.events.clips, runner.spec.events
    # A track ends on the first result more than its retention after its last sighting (a sampling period, 200 ms,
    # later): CenterFace's boxes carry their appearance, so a lost track is kept for re-identification.
    lost_ms = max(ev.max_lost_seconds, ev.reidentify_seconds) * 1000
    pre, post = clips.pre_roll_seconds * 1000, clips.post_roll_seconds * 1000 + lost_ms + 1000
    assert all(any(a - pre <= t <= b + post for a, b in tracks) for t in kept)
    assert summary["events"]["clip_frames"]["kept"] >= len(kept) == len(set(kept)), summary["events"]["clip_frames"]
