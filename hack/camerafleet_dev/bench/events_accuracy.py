"""`make bench-events`: tracks and events against known truth, through the real pipeline, by sampling rate.

One run of `camerafleet run`'s FleetRunner on a scene with known truth (`truth_scenes.py`, the `plaza`: 32
door crossings both ways, turn-backs, passes beyond the door's end, zone visits half of which loiter, up to 8
faces in view at once), played by three cameras at inferenceFps 1, 2 and 5, through the producers, Kafka,
the real CenterFace on Ray Serve and the events stage. Each camera is judged over one whole loop of the scene
(`truth_judge.py`):

- tracks: HOTA, MOTA and IDF1 (TrackEval) of the tracker on the results the camera's consumers wrote, replayed
  in capture order through the stage's own code (ids and tracks depend only on the results; the replay's
  events are checked to be the stage's own, so the tracks scored are the ones the events came from);
- events: the stage's committed events against the truth's crossings by direction (counts and matches),
  zone entries and loiterings (precision and recall);
- cost: the events actors' CPU per result (their Kafka reads and transactions included), and the tracking and
  events code alone per result (the replay).

Kafka is started for the run unless KAFKA_BOOTSTRAP names a broker. Writes DIR/report.md and report.json.

    python -m camerafleet_dev.bench.events_accuracy [--out out/bench-events] [--fps 1 2 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from camerafleet.api.manifest import load_manifest
from camerafleet.events_pool import camera_rules
from camerafleet.events_stage import event_record
from camerafleet.runner import FleetRunner, RunOptions
from camerafleet.tracking.camera import CameraTracking
from camerafleet_dev.fleets import centerface, isolated_fleet
from camerafleet_dev.truth_judge import TrackedBox, judge_events, track_metrics
from camerafleet_dev.truth_scenes import REFERENCE, SCENES, Scene, truth_events, write_scene

ROOT = Path.cwd()
# Results before the judged span: at 1 fps a track gets its id on its second result, so tracks are under way
# when the span begins; after it, the last events of the span are written.
MARGIN_MS = 5000
# A run of 3 cameras on a 2-core machine starts in 30-90 s (Ray, Serve, CenterFace); the scene's loop is 150 s.
START_BOUND_S = 600


def lag_ms(fps: float) -> int:
    """How late an event may be seen: a track gets its id on its second result, and the result after a moment comes
    up to a period after it: two periods, and 2 s for a missed detection or two."""
    return round(2000 + 2000 / fps)


def say(text: str) -> None:
    print(f"[bench-events] {text}", file=sys.stderr, flush=True)


def manifest(name: str, scene: Scene, clip: Path, truth: dict[str, Any], fps_values: list[float], kafka: str, work: Path) -> dict:
    cameras = [
        {
            "id": camera_id(scene, fps),
            "source": str(clip),
            "inferenceFps": fps,
            "lines": [{"name": n, "points": pts, "anchor": "center", "labels": ["face"]} for n, pts in truth["lines"].items()],
            "zones": [
                {"name": n, "points": pts, "anchor": "center", "labels": ["face"], "loiterSeconds": scene.loiter_s}
                for n, pts in truth["zones"].items()
            ],
        }
        for fps in fps_values
    ]
    return isolated_fleet(
        name,
        kafka,
        work,
        cameras=cameras,
        models=[centerface(ROOT / "models")],
        # Every slot is taken and waits for the model, however busy the machine: the truth has them all.
        producer={"admission": {"mode": "off"}},
        consumer={"actors": 1, "maxFrameAgeMs": 120_000, "inferenceTimeoutSeconds": 120},
        events={"enabled": True, "reorderWindowMs": 1000},
    )


def camera_id(scene: Scene, fps: float) -> str:
    return f"{scene.name}-{fps:g}fps"


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    *lines, _partial = path.read_bytes().split(b"\n")  # whole lines only: a consumer may be writing the last one
    return [orjson.loads(line) for line in lines]


def spans(results: list[dict[str, Any]], loop_ms: int) -> dict[str, tuple[int, int]]:
    """Each camera's judged span: one whole loop, from MARGIN_MS after its first processed result."""
    first: dict[str, int] = {}
    for r in results:
        if r.get("outcome") == "processed":
            first[r["cameraId"]] = min(first.get(r["cameraId"], r["captureTsMs"]), r["captureTsMs"])
    return {cam: (t + MARGIN_MS, t + MARGIN_MS + loop_ms) for cam, t in first.items()}


def events_actors_cpu_s() -> float:
    total = 0.0
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if (p.info["cmdline"] or [""])[0].startswith("ray::EventsActor"):
                cpu = p.cpu_times()
                total += cpu.user + cpu.system
    return total


async def run_fleet(path: Path, cameras: list[str], loop_ms: int) -> tuple[FleetRunner, float]:
    """Runs the fleet until every camera's results cover its span and MARGIN_MS more; returns the runner and the
    events actors' CPU seconds just before the stop."""
    runner = FleetRunner(load_manifest(path), RunOptions(manifest=path, progress_interval_s=10, drain_timeout_s=180))
    cpu_s = 0.0
    async with runner:
        loop = asyncio.create_task(runner.run_until_stopped())
        started = time.monotonic()
        try:
            while True:
                results = read_results(runner.results_log)
                newest = Counter[str]()
                for r in results:
                    newest[r["cameraId"]] = max(newest[r["cameraId"]], r.get("captureTsMs") or 0)
                covered = spans(results, loop_ms)
                left = [c for c in cameras if c not in covered or newest[c] < covered[c][1] + MARGIN_MS]
                if not left:
                    break
                if loop.done():
                    raise RuntimeError("the fleet stopped before its results covered the scene")
                if time.monotonic() - started > START_BOUND_S + loop_ms / 1000:
                    raise TimeoutError(f"cameras {left} had not covered one loop of the scene in {START_BOUND_S + loop_ms / 1000:.0f} s")
                await asyncio.sleep(2)
            cpu_s = events_actors_cpu_s()
        finally:
            runner.stop_event.set()
            await loop
    return runner, cpu_s


def replay(camera: str, results: list[dict[str, Any]], rules: Any) -> tuple[list[tuple[int, list[TrackedBox]]], list[dict], float]:
    """The camera's results in capture order through the stage's code: each frame's confirmed tracks (the records
    the stage writes to its tracks topic), the events, and the CPU seconds the tracking and events took. Tracks are
    not ended at the end, as the stage, which saves them, does not end them at a stop either."""
    ordered = sorted((r for r in results if r["cameraId"] == camera and r.get("outcome") == "processed"), key=lambda r: r["captureTsMs"])
    tracking = CameraTracking(camera, rules)
    frames: list[tuple[int, list[TrackedBox]]] = []
    events: list[dict] = []
    cpu_s = 0.0
    for record in ordered:
        cpu0 = time.process_time()
        events += [event_record(e) for e in tracking.take(record)]
        cpu_s += time.process_time() - cpu0
        frames += [(f.capture_ms, [(o.track_id, o.box) for o in f.tracks.get("faces", [])]) for f in tracking.take_tracked()]
    return frames, events, cpu_s


def evaluate(scene: Scene, truth: dict[str, Any], runner: FleetRunner, fps_values: list[float], cpu_s: float) -> dict[str, Any]:
    results = read_results(runner.results_log)
    stage_events = [json.loads(line) for line in (runner.run_dir / "events.jsonl").read_text().splitlines()]
    rules = camera_rules(runner.spec)
    covered = spans(results, round(scene.seconds * 1000))
    scale = truth["width"] / REFERENCE[0]
    known = truth_events(scene)
    tracked = sum(1 for r in results if r.get("outcome") == "processed")
    out: dict[str, Any] = {"cameras": {}, "events_actors_cpu_ms_per_result": round(1000 * cpu_s / tracked, 3) if tracked else None}
    for fps in fps_values:
        cam = camera_id(scene, fps)
        frames, replayed, replay_cpu_s = replay(cam, results, rules[cam])
        own = [e for e in stage_events if e["cameraId"] == cam]

        def within(events: list[dict], end: int = covered[cam][1]) -> list[tuple]:  # the stage had released all results up to there
            return sorted((e["id"], e["phase"], e["atMs"]) for e in events if e["atMs"] <= end)

        score = judge_events(scene, known, own, runner.epoch_ms, covered[cam], lag_ms(fps))
        out["cameras"][cam] = {
            "fps": fps,
            "span_ms": [covered[cam][0] - runner.epoch_ms, covered[cam][1] - runner.epoch_ms],
            "lag_ms": lag_ms(fps),
            "tracks": track_metrics(scene, scale, runner.epoch_ms, frames, covered[cam]),
            "events": score.brief(),
            "missed": score.missed,
            "spurious": score.spurious,
            "replay_gives_the_stages_events": within(own) == within(replayed),
            "tracking_cpu_ms_per_result": round(1000 * replay_cpu_s / max(1, len(frames)), 3),
        }
    return out


def format_report(report: dict[str, Any]) -> str:
    cams = report["cameras"]
    rows = [
        "| inferenceFps | HOTA | DetA | AssA | MOTA | IDF1 | ID switches | door in (seen/true) | door out (seen/true) "
        "| zone entries P / R | loitering P / R | tracking ms/result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cams.values():
        t, e = c["tracks"], c["events"]

        def pr(kind: str, e: dict = e) -> str:
            k = e.get(kind)
            return "-" if not k else f"{_f(k['precision'])} / {_f(k['recall'])}"

        def count(kind: str, e: dict = e) -> str:
            k = e.get(kind)
            return "-" if not k else f"{k['seen']}/{k['truth']}"

        rows.append(
            f"| {c['fps']:g} | {t['HOTA']:.3f} | {t['DetA']:.3f} | {t['AssA']:.3f} | {t['MOTA']:.3f} | {t['IDF1']:.3f} | {t['IDSW']} "
            f"| {count('line in')} | {count('line out')} | {pr('zone')} | {pr('loiter')} | {c['tracking_cpu_ms_per_result']:.2f} |"
        )
    head = (
        f"# Tracks and events against known truth\n\nScene `{report['scene']}` ({report['scene_seconds']:.0f} s, "
        f"{report['width']}x{report['height']} at {report['clip_fps']:g} fps), CenterFace 640x384, one loop judged per camera; "
        f"run {report['wall_s']:.0f} s on {os.cpu_count()} cores.\n\n"
    )
    cost = (
        f"\nEvents actors' CPU: {report['events_actors_cpu_ms_per_result']} ms per result (Kafka reads and transactions "
        "included); tracking and events code alone: the last column.\n"
    )
    checks = "".join(
        f"\n- {cam}: the replay gives the stage's events: {c['replay_gives_the_stages_events']}; missed {c['missed'] or 'none'}; "
        f"spurious {c['spurious'] or 'none'}"
        for cam, c in cams.items()
    )
    return head + "\n".join(rows) + "\n" + cost + checks + "\n"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m camerafleet_dev.bench.events_accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench-events"))
    ap.add_argument("--scene", choices=sorted(SCENES), default="plaza")
    ap.add_argument("--fps", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--clip-fps", type=float, default=10.0, help="the clip's own rate (each inferenceFps must divide it)")
    args = ap.parse_args(argv)
    if not (ROOT / "models/centerface.onnx").exists():
        say("missing models/centerface.onnx: run `make models` (or `make bench-events`, which does)")
        return 2
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    scene = SCENES[args.scene]
    say(f"writing the {scene.name} scene ({scene.seconds:.0f} s at {args.width}x{args.height}, {args.clip_fps:g} fps) ...")
    clip, truth_path = write_scene(scene, out / "scene", args.width, args.height, args.clip_fps)
    truth = json.loads(truth_path.read_text())
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if not bootstrap:
            from camerafleet_dev.devservers.kafka import KafkaServer

            bootstrap = stack.enter_context(KafkaServer(out / "kafka")).bootstrap
            say(f"kafka: started a broker at {bootstrap}")
        name = f"bench-events-{int(time.time())}"
        path = out / "fleet.yaml"
        path.write_text(yaml.safe_dump(manifest(name, scene, clip, truth, args.fps, bootstrap, out), sort_keys=False))
        say(f"running {len(args.fps)} cameras on it until each has one whole loop of results (about {scene.seconds + 60:.0f} s) ...")
        runner, cpu_s = asyncio.run(run_fleet(path, [camera_id(scene, f) for f in args.fps], round(scene.seconds * 1000)))
    report = {
        "scene": scene.name,
        "scene_seconds": scene.seconds,
        "width": args.width,
        "height": args.height,
        "clip_fps": args.clip_fps,
        **evaluate(scene, truth, runner, args.fps, cpu_s),
        "wall_s": round(time.monotonic() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    text = format_report(report)
    (out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
