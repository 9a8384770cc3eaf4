"""The fleet console's view and API, without a fleet: result records fed by hand, frames in a real
directory bucket, the real Starlette app through its test client. Hostile requests get a clean 4xx
that names nothing of the bucket or the cameras' sources."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from camerafleet.api.settings import Settings, SettingsError
from camerafleet.api.source_report import SourceProblem
from camerafleet.bucket import frame_key
from camerafleet.bucket.base import clip_key
from camerafleet.bucket.local import DirectoryBucket
from camerafleet.clip_store import ClipStore
from camerafleet.console.clips import ClipMaker, ClipWindow, encode_mp4
from camerafleet.console.records import MAX_DETECTIONS, HealthFlag, Shape
from camerafleet.console.server import SECURITY_HEADERS, TILE_WIDTH, FrameCache, console_app
from camerafleet.console.view import (
    DETAIL_FRAMES,
    EVENTS_KEPT,
    RATE_WINDOW_S,
    RECENT_FRAMES,
    TIMELINE_MOST,
    TRACKS_FRESH_S,
    FleetView,
    FrameNotKept,
)
from camerafleet.stats import ProducerCameraStats

EPOCH = 1_700_000_000_000
FACE = {"box": [100.0, 50.0, 300.0, 250.0], "label": "face", "score": 0.91, "landmarks": [[150.0, 120.0], [250.0, 120.0]]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(camera: str, seq: int, outcome: str = "processed", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "cameraId": camera,
        "seq": seq,
        "epochMs": EPOCH,
        "captureTsMs": EPOCH + seq * 200,
        "uri": f"file:///frames/{frame_key(camera, EPOCH, seq)}",
        "width": 1280,
        "height": 720,
        "outcome": outcome,
        "latencyMs": 100 + seq,
        "topic": f"t_{camera}",
        "partition": 0,
        "offset": seq,
    }
    if outcome == "processed":
        rec["models"] = {
            "faces": {"detections": [FACE], "batchSize": 4, "batchMs": 30.0},
            "health": {"health": {"brightness": 0.1}, "flags": ["dark"], "batchSize": 8, "batchMs": 2.0},
        }
    rec.update(extra)
    return rec


def view(clock: Clock | None = None) -> FleetView:
    return FleetView("shop", {"door": 5.0, "yard": 10.0}, {"faces": 3, "health": 1}, clock=clock or Clock())


def test_tiles_count_outcomes_and_show_the_latest_frame_with_its_detections():
    clock = Clock()
    v = view(clock)
    for seq in range(5):
        v.add_result(record("door", seq))
    v.add_result(record("door", 5, "dropped", reason="stale"))
    v.add_result(record("door", 6, "failed", reason="decode_error"))
    tile = v.tile("door")
    assert (tile.processed, tile.dropped, tile.failed) == (5, 1, 1)
    assert tile.fps == 5 / RATE_WINDOW_S
    assert tile.latency_ms_p50 == 102
    assert tile.latest is not None and tile.latest.seq == 4
    assert (tile.latest.width, tile.latest.height) == (1280, 720)
    [face] = tile.latest.detections
    assert (face.model, face.label, face.box, face.landmarks) == (
        "faces",
        "face",
        (100.0, 50.0, 300.0, 250.0),
        [(150.0, 120.0), (250.0, 120.0)],
    )
    assert tile.flags == [HealthFlag.DARK]
    clock.now += RATE_WINDOW_S + 1
    assert v.tile("door").fps == 0
    detail = v.detail("door")
    assert detail.dropped_by_reason == {"stale": 1} and detail.failed_by_reason == {"decode_error": 1}
    assert [r.seq for r in detail.recent] == [4, 3, 2, 1, 0] and detail.recent[0].labels == {"face": 1}
    header = v.header()
    assert (header.processed, header.dropped, header.failed) == (5, 1, 1)
    models = {m.name: m for m in header.models}
    assert models["faces"].mean_batch_size == 4 and models["faces"].batch_ms_p50 == 30 and models["faces"].max_replicas == 3


def test_a_tracked_cameras_tile_shows_the_newest_frame_whose_track_ids_came_and_the_newest_when_they_stop():
    """The events stage's tracks come a reorder window after the results: the tile shows the newest frame that has
    them, with the ids of its events on its boxes, and falls back to the newest frame when they stop coming."""
    clock, other = Clock(), {**FACE, "box": [400.0, 60.0, 520.0, 200.0], "score": 0.7}
    v = view(clock)
    for seq in range(12):
        v.add_result(record("door", seq, models={"faces": {"detections": [FACE, other]}}))
    assert not v.tile("door").latest.tracked  # type: ignore[union-attr]
    version = v.tile("door").version
    # Ids for one face's box, found by model and box (the other face's track is not confirmed yet: no id); frames 3
    # and 5 get their tracks, 5 is the newest with them.
    for seq in (3, 5):
        tracks = [{"model": "faces", "trackId": 7, "box": FACE["box"], "label": "face", "score": 0.9}]
        v.add_tracks({"cameraId": "door", "captureTsMs": EPOCH + seq * 200, "tracks": tracks})
    tile = v.tile("door")
    assert tile.version > version and tile.latest is not None and (tile.latest.seq, tile.latest.tracked) == (5, True)
    assert [d.track_id for d in tile.latest.detections] == [7, None]
    assert v.detail("door").tile.latest == tile.latest
    clock.now += TRACKS_FRESH_S + 1  # the stage stopped: the newest frame, without ids
    assert v.tile("door").latest.seq == 11 and not v.tile("door").latest.tracked  # type: ignore[union-attr]
    # Records that are not a fleet camera's tracks are counted; tracks of a frame no longer kept are passed over.
    v.add_tracks({"cameraId": "lobby", "captureTsMs": EPOCH, "tracks": []})
    v.add_tracks({"cameraId": "door", "captureTsMs": "soon", "tracks": []})
    v.add_tracks({"cameraId": "door", "captureTsMs": EPOCH - 1, "tracks": []})
    assert v.ignored_records == 2


def test_the_detail_view_lists_the_newest_frames_of_those_kept():
    v = view()
    for seq in range(RECENT_FRAMES + 5):
        v.add_result(record("door", seq))
    assert [r.seq for r in v.detail("door").recent] == list(range(RECENT_FRAMES + 4, RECENT_FRAMES + 4 - DETAIL_FRAMES, -1))


def test_records_that_are_not_results_of_this_fleet_are_ignored_and_counted():
    v = view()
    v.add_result(record("lobby", 1))  # not a camera of this fleet
    v.add_result({"cameraId": "door", "outcome": "exploded"})
    v.add_result(record("door", 1, models={"faces": {"detections": [{"box": "everywhere"}, FACE, 7]}}))
    assert v.ignored_records == 2
    assert [d.label for d in v.tile("door").latest.detections] == ["face"]  # the malformed detections left out
    many = {"faces": {"detections": [FACE] * (MAX_DETECTIONS + 50)}}
    v.add_result(record("door", 2, models=many))
    assert len(v.tile("door").latest.detections) == MAX_DETECTIONS


def test_a_camera_whose_source_is_down_shows_down_with_its_problem():
    v = view()
    v.update_producers({"door": ProducerCameraStats(produced=7, source_up=True)})
    assert v.tile("door").up is True and v.tile("door").flags == []
    v.update_producers({"door": ProducerCameraStats(produced=7, source_up=False, last_problem=SourceProblem.STALLED)})
    tile = v.tile("door")
    assert tile.up is False and tile.problem == SourceProblem.STALLED and tile.flags == [HealthFlag.DOWN]
    assert v.header().cameras_down == 1 and v.header().produced == 7
    assert v.tile("yard").up is None  # no producer stats: not known in this process


def test_snapshots_send_only_the_tiles_that_changed():
    v = view()
    full = v.snapshot()
    assert full.full and {t.camera_id for t in full.tiles} == {"door", "yard"} and full.camera_ids == ["door", "yard"]
    sent = v.versions()
    assert v.snapshot(since=sent).tiles == []
    v.add_result(record("yard", 1))
    assert [t.camera_id for t in v.snapshot(since=sent).tiles] == ["yard"]


def test_frames_are_served_only_for_recent_processed_frames_of_known_cameras():
    v = view()
    for seq in range(RECENT_FRAMES + 5):
        v.add_result(record("door", seq))
    assert v.frame_uri("door", RECENT_FRAMES + 4).endswith(frame_key("door", EPOCH, RECENT_FRAMES + 4))
    for camera, seq in (("door", 0), ("door", 10**30), ("lobby", 1), ("../door", 1)):
        with pytest.raises(FrameNotKept):
            v.frame_uri(camera, seq)


def test_a_manifest_change_keeps_the_cameras_that_stay():
    v = view()
    v.add_result(record("door", 1))
    v.set_fleet({"door": 2.0, "gate": 5.0}, {"faces": 4})
    assert v.tile("door").processed == 1 and v.detail("door").stall_timeout_s == 2.0
    assert list(v.cameras) == ["door", "gate"] and [m.name for m in v.header().models] == ["faces"]


# -- the HTTP API ---------------------------------------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path) -> tuple[TestClient, FleetView, DirectoryBucket]:
    bucket = DirectoryBucket(f"file://{tmp_path}/frames", max_frame_bytes=10_000_000)
    bucket.prepare(300)
    image = np.zeros((720, 1280, 3), np.uint8)
    cv2.rectangle(image, (100, 50), (300, 250), (255, 255, 255), -1)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    v = view()
    for seq in range(3):
        uri = bucket.put(frame_key("door", EPOCH, seq), jpeg)
        v.add_result(record("door", seq, uri=uri))
    app = console_app(v, FrameCache(bucket, entries=8), refresh_s=0.05, stopping=asyncio.Event())
    return TestClient(app), v, bucket


def test_the_page_and_its_api_answer(console):
    client, _, _ = console
    page = client.get("/")
    assert page.status_code == 200 and "console.js" in page.text
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert client.get("/console.js").headers["content-type"].startswith("text/javascript")
    fleet = client.get("/api/fleet").json()
    assert fleet["header"]["fleet"] == "shop" and fleet["cameraIds"] == ["door", "yard"]
    door = next(t for t in fleet["tiles"] if t["cameraId"] == "door")
    assert door["latest"]["seq"] == 2 and door["latest"]["detections"][0]["box"] == [100.0, 50.0, 300.0, 250.0]
    detail = client.get("/api/cameras/door").json()
    assert [r["seq"] for r in detail["recent"]] == [2, 1, 0]


def test_frames_come_scaled_for_the_grid_and_whole_for_the_detail_view(console):
    client, _, _ = console
    tile = client.get("/api/cameras/door/frames/2")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    small = cv2.imdecode(np.frombuffer(tile.content, np.uint8), cv2.IMREAD_COLOR)
    assert small.shape[1] == TILE_WIDTH and abs(small.shape[0] - 270) <= 1
    whole = cv2.imdecode(np.frombuffer(client.get("/api/cameras/door/frames/2?size=full").content, np.uint8), cv2.IMREAD_COLOR)
    assert whole.shape[:2] == (720, 1280)


def test_the_live_stream_sends_every_tile_then_only_changes(console):
    client, v, _ = console
    with client.stream("GET", "/api/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = stream.iter_lines()
        first = orjson.loads(next(line for line in events if line.startswith("data: "))[6:])
        assert first["full"] and len(first["tiles"]) == 2
        v.add_result(record("yard", 9))
        later = [orjson.loads(line[6:]) for line in (next(events) for _ in range(20)) if line.startswith("data: ")]
        assert any([t["cameraId"] for t in s["tiles"]] == ["yard"] for s in later), later


HOSTILE = [
    ("/api/cameras/lobby", 404),  # not a camera of this fleet
    ("/api/cameras/lobby/frames/1", 404),
    ("/api/cameras/door/frames/7", 404),  # not one of its recent frames
    ("/api/cameras/door/frames/99999999999999999999999999999999999999", 404),
    ("/api/cameras/door/frames/-1", 404),
    ("/api/cameras/door/frames/1e3", 404),
    ("/api/cameras/door/frames/1?size=enormous", 400),
    ("/api/cameras/..%2F..%2F..%2Fetc%2Fpasswd/frames/1", 404),
    ("/api/cameras/door/frames/..%2F..%2F..%2Fetc%2Fpasswd", 404),
    ("/api/cameras/%2e%2e/frames/1", 404),
    ("/api/cameras/door%00/frames/1", 404),
    ("/api/../../etc/passwd", 404),
    ("/static/../pyproject.toml", 404),
    ("/api/cameras/" + "a" * 5000, 404),
]


@pytest.mark.parametrize(("path", "status"), HOSTILE)
def test_hostile_requests_get_a_clean_4xx_that_leaks_nothing(console, path, status):
    client, _, bucket = console
    resp = client.get(path)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert set(resp.json()) == {"error"}
    for secret in (bucket.root_uri, "file://", "/frames", "Traceback", "passwd"):
        assert secret not in resp.text


def test_the_console_is_read_only(console):
    client, _, _ = console
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, "/api/cameras/door").status_code == 405
        assert client.request(method, "/api/fleet").status_code == 405


def test_a_result_pointing_outside_the_bucket_or_at_an_expired_frame_is_not_served(console, tmp_path):
    client, v, bucket = console
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8 not for you")
    v.add_result(record("door", 10, uri=f"file://{tmp_path}/secret.jpg"))  # a forged result on the results topic
    v.add_result(record("door", 11, uri=f"{bucket.root_uri}/door/../../secret.jpg"))
    v.add_result(record("door", 12, uri=bucket.uri_of(frame_key("door", EPOCH, 12))))  # never stored, or expired
    for seq in (10, 11, 12):
        resp = client.get(f"/api/cameras/door/frames/{seq}")
        assert resp.status_code == 404, resp.text
        assert "secret" not in resp.text and str(tmp_path) not in resp.text
    assert "expired" in resp.json()["error"]


def test_with_a_token_the_console_answers_only_those_who_carry_it(tmp_path):
    """Issue 24: CAMERAFLEET_CONSOLE_TOKEN; a browser opens /?token=... once and keeps an HttpOnly cookie."""
    bucket = DirectoryBucket(f"file://{tmp_path}/frames", max_frame_bytes=10_000_000)
    token = "a-console-token-from-a-secret"
    client = TestClient(console_app(view(), FrameCache(bucket, entries=8), refresh_s=0.05, stopping=asyncio.Event(), token=token))
    for path in ("/", "/console.js", "/api/fleet", "/api/cameras/door", "/api/events"):
        refused = client.get(path)
        assert refused.status_code == 401 and "token" in refused.json()["error"] and token not in refused.text, path
    assert client.get("/api/fleet", headers={"Authorization": "Bearer wrong-token-of-same-length!"}).status_code == 401
    assert client.get("/healthz").status_code == 200, "probes need no token"
    assert client.get("/api/fleet", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    opened = client.get(f"/?token={token}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/", "the token leaves the address bar"
    cookie = opened.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert client.get("/api/fleet").status_code == 200, "the cookie opens the rest"
    client.cookies.clear()
    assert client.get("/?token=not-it", follow_redirects=False).status_code == 401


def test_a_console_token_too_short_to_be_secret_is_refused_without_repeating_it():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CAMERAFLEET_CONSOLE_TOKEN": "guessable"})
    assert "CAMERAFLEET_CONSOLE_TOKEN" in str(err.value) and "guessable" not in str(err.value)


# -- events: the timeline, its filters, snapshots and the tiles' zones and lines -----------------------


def event(camera: str, kind: str, phase: str, at_s: float, track: int = 1, where: str | None = None, **extra: Any) -> dict[str, Any]:
    """An events-topic record (`events_stage.event_record`) whose snapshot is the frame at `at_s`."""
    at = EPOCH + round(at_s * 1000)
    return {
        "id": f"{camera}/faces/{kind}/{where or '-'}/{track}/{at}",
        "cameraId": camera,
        "model": "faces",
        "kind": kind,
        "phase": phase,
        "trackId": track,
        "label": "face",
        "startMs": at,
        "atMs": at,
        "where": where,
        "direction": extra.pop("direction", None),
        "snapshot": {"captureTsMs": at, "uri": f"file:///frames/{camera}/{at}.jpg", "box": [1.0, 2.0, 3.0, 4.0], "score": 0.9},
        **extra,
    }


def test_the_timeline_keeps_starts_ends_and_instants_newest_first_and_filters_them() -> None:
    v = view()
    v.add_event(event("door", "object", "start", 1.0, track=1))
    v.add_event(event("door", "object", "update", 2.0, track=1))  # not kept: the timeline shows starts and ends
    v.add_event(event("door", "line", "instant", 3.0, track=1, where="gate", direction="in"))
    v.add_event(event("yard", "zone", "start", 4.0, track=7, where="dock"))
    v.add_event(event("nowhere", "zone", "start", 5.0))  # a camera this fleet does not have
    v.add_event({"kind": "zone"})  # not an event record
    v.add_event(event("door", "zone", "start", 6.0, direction="sideways"))  # not a direction
    t = v.timeline()
    assert [(e.camera_id, e.kind, e.phase) for e in t.events] == [
        ("yard", "zone", "start"),
        ("door", "line", "instant"),
        ("door", "object", "start"),
    ]
    assert t.kept == 3 and t.cameras == ["door", "yard"] and t.places == ["dock", "gate"] and t.labels == ["face"]
    assert v.ignored_records == 3
    assert [e.kind for e in v.timeline(camera="door").events] == ["line", "object"]
    assert [e.where for e in v.timeline(place="gate").events] == ["gate"]
    assert [e.kind for e in v.timeline(kind="zone").events] == ["zone"]
    assert v.timeline(label="car").events == []
    assert v.snapshot_uri("yard", EPOCH + 4000) == f"file:///frames/yard/{EPOCH + 4000}.jpg"
    with pytest.raises(FrameNotKept):
        v.snapshot_uri("door", EPOCH + 4000)  # another camera's


def test_kept_events_are_bounded() -> None:
    v = view()
    for i in range(EVENTS_KEPT + 10):
        v.add_event(event("door", "line", "instant", i, where="gate", direction="in"))
    t = v.timeline()
    assert t.kept == EVENTS_KEPT and len(t.events) == TIMELINE_MOST and t.events[0].at_ms == EPOCH + (EVENTS_KEPT + 9) * 1000


def test_tiles_carry_their_cameras_zones_and_lines_and_change_with_them() -> None:
    gate = Shape(kind="line", name="gate", points=[(640.0, 60.0), (640.0, 600.0)])
    v = FleetView("shop", {"door": 10.0, "yard": 10.0}, {"faces": 2}, shapes={"door": [gate]})
    assert v.tile("door").shapes == [gate] and v.tile("yard").shapes == []
    before = v.versions()
    v.set_fleet({"door": 10.0, "yard": 10.0}, {"faces": 2}, {})
    assert v.tile("door").shapes == [] and all(v.versions()[c] > before[c] for c in before)


def test_the_timeline_api_and_snapshots(console) -> None:
    client, v, bucket = console
    jpeg = cv2.imencode(".jpg", np.zeros((720, 1280, 3), np.uint8))[1].tobytes()
    e = event("door", "loiter", "instant", 9.0, track=4, where="desk")
    e["snapshot"]["uri"] = bucket.put(frame_key("door", EPOCH, 45), jpeg)
    v.add_event(e)
    answer = client.get("/api/timeline?camera=door&kind=loiter").json()
    assert [(x["kind"], x["trackId"], x["where"]) for x in answer["events"]] == [("loiter", 4, "desk")]
    assert "uri" not in orjson.dumps(answer).decode()  # bucket URIs never reach the page
    shot = client.get(f"/api/cameras/door/snapshots/{EPOCH + 9000}?size=full")
    assert shot.status_code == 200 and cv2.imdecode(np.frombuffer(shot.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (720, 1280)
    assert client.get(f"/api/cameras/door/snapshots/{EPOCH + 1}").status_code == 404
    assert client.get(f"/api/cameras/yard/snapshots/{EPOCH + 9000}").status_code == 404
    assert client.get("/api/timeline?camera=nowhere").status_code == 404
    assert client.get("/api/timeline?kind=all").status_code == 400


# -- clips: an event's kept frames as a video ----------------------------------------------------------


def test_an_events_clip_plays_its_kept_frames_at_their_times_and_its_snapshot_outlives_the_frame(tmp_path: Path) -> None:
    bucket = DirectoryBucket(f"file://{tmp_path}/frames", max_frame_bytes=10_000_000)
    bucket.prepare(300)
    store = ClipStore(bucket, keep_days=7)
    v = view()
    for i in range(12):  # 2 fps from 0 to 5.5 s; the visit is from 2 to 3 s, 1 s of pre- and post-roll
        image = np.full((720, 1280, 3), i * 20, np.uint8)
        uri = bucket.put(frame_key("door", EPOCH, i), cv2.imencode(".jpg", image)[1].tobytes())
        bucket.keep(uri, clip_key("door", EPOCH + i * 500))
        os.unlink(bucket.root / frame_key("door", EPOCH, i))  # the frame's TTL: its kept copy stays
    start, end = event("door", "zone", "start", 2.0, where="desk"), event("door", "zone", "end", 3.0, where="desk")
    end["startMs"], end["id"] = start["startMs"], start["id"]
    start["snapshot"]["uri"] = f"{bucket.root_uri}/{frame_key('door', EPOCH, 4)}"
    v.add_event(start)
    v.add_event(end)
    clips = ClipMaker(store, ClipWindow(pre_roll_ms=1000, post_roll_ms=1000, max_ms=60_000))
    client = TestClient(console_app(v, FrameCache(bucket, entries=8), refresh_s=0.05, stopping=asyncio.Event(), clips=clips))
    assert client.get("/api/timeline").json()["clips"] is True
    resp = client.get("/api/clip.mp4", params={"event": start["id"]})
    assert resp.status_code == 200 and resp.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(resp.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9" and (stream.width, stream.height) == (1280, 720)
        decoded = [(round(float(f.pts * f.time_base) * 1000), float(f.to_ndarray(format="gray").mean())) for f in container.decode(stream)]
    assert [ms for ms, _ in decoded] == [0, 500, 1000, 1500, 2000, 2500, 3000]  # frames 2..8: from 1 s to 4 s
    assert [round(level / 20) for _, level in decoded] == [2, 3, 4, 5, 6, 7, 8]  # each frame's own picture
    shot = client.get(f"/api/cameras/door/snapshots/{EPOCH + 2000}?size=full")  # the frame expired; its kept copy
    assert shot.status_code == 200
    assert client.get("/api/clip.mp4", params={"event": "door/faces/zone/hall/1/5"}).status_code == 404
    no_clips = TestClient(console_app(v, FrameCache(bucket, entries=8), refresh_s=0.05, stopping=asyncio.Event()))
    assert no_clips.get("/api/clip.mp4", params={"event": start["id"]}).status_code == 404
    assert no_clips.get("/api/timeline").json()["clips"] is False


def test_a_clip_is_scaled_to_1280_across_and_kept_to_its_longest() -> None:
    frames = [(t, np.zeros((2160, 3840, 3), np.uint8)) for t in (0, 200, 200, 400)]  # two frames at one millisecond
    with av.open(io.BytesIO(encode_mp4(frames))) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720)
        assert len(list(container.decode(stream))) == 3
    window = ClipWindow(pre_roll_ms=5000, post_roll_ms=5000, max_ms=120_000)
    assert window.around(100_000, 110_000) == (95_000, 115_000)
    assert window.around(100_000, 900_000) == (95_000, 215_000)
