"""The fleet console in a real headless browser (Debian's Chromium) over a real fleet: two file cameras
and a live RTSP camera, the CenterFace detector and the camera-health model, on the real Kafka and Ray
Serve, with the events stage tracking the faces. Tiles appear for every camera, boxes sit where the results
say, a camera's zone and line are drawn on its tile, counters move, the fleet's events are listed and a
visit's snapshot shows its track, a camera taken down shows as down after its producer notices (and comes
back), and the README's screenshots are taken here, so they always show what the console really draws.

Waits are generous (the cameras, the pipeline and the browser share 2 cores), and no time is asserted: how
soon the page follows the producer (a few of its 1 s pushes when idle) is the machine's speed.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import orjson
import pytest
from selenium.webdriver.common.by import By

from camerafleet.runner import FleetRunner
from camerafleet_dev.clips import write_demo_clips
from camerafleet_dev.devservers._process import free_port
from tests.fixtures.pipeline import PATIENT_CONSUMER, ROOT, camera_stats, face_model, health_model, read_results, run_fleet_for, write_fleet

pytestmark = pytest.mark.integration

SCREENSHOTS = ROOT / "tests" / "screenshots"

# One script, so a tile is read in one go (the page may redraw it between two WebDriver calls).
READ_TILE = """
const li = document.querySelector(`li.tile[data-camera="${arguments[0]}"]`);
if (!li) return null;
const img = li.querySelector('img').getBoundingClientRect();
const count = (name) => li.querySelector(`[data-count="${name}"] dd`).textContent;
return {
  seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
  down: li.classList.contains('down'),
  flags: [...li.querySelectorAll('h3 .flag')].map((f) => f.textContent),
  processed: Number(count('processed')),
  img: {left: img.left, top: img.top, width: img.width, height: img.height},
  rects: [...li.querySelectorAll('rect.detection')].map((r) => {
    const b = r.getBoundingClientRect();
    return {x: +r.getAttribute('x'), y: +r.getAttribute('y'), width: +r.getAttribute('width'), height: +r.getAttribute('height'),
            label: r.dataset.label, track: r.dataset.track === undefined ? null : Number(r.dataset.track),
            screen: {left: b.left, top: b.top, width: b.width, height: b.height}};
  }),
  texts: [...li.querySelectorAll('svg text')].map((t) => t.textContent),
  viewBox: li.querySelector('svg').getAttribute('viewBox'),
};
"""


READ_SHAPES = """
const li = document.querySelector(`li.tile[data-camera="${arguments[0]}"]`);
return li ? [...li.querySelectorAll('[data-shape]')].map((s) => s.dataset.shape).sort() : [];
"""
READ_EVENTS = """
const section = document.getElementById('fleet-events');
if (section.hidden) return [];
return [...section.querySelectorAll('tbody tr')].map((tr) => ({kind: tr.dataset.kind, phase: tr.dataset.phase, cells: [...tr.cells].map((td) => td.textContent)}));
"""
# The row read and its button clicked in one go: a new visit may be listed above it in between two calls.
OPEN_FIRST_VISIT = """
const tr = document.querySelector('#fleet-events tr[data-kind=zone][data-phase=start]');
tr.querySelector('button').click();
return [...tr.cells].map((td) => td.textContent);
"""
READ_SNAPSHOT = """
const img = document.getElementById('detail-image');
const track = document.querySelector('#detail-frame rect.track');
return track && img.complete && img.naturalWidth ? {track: track.dataset.track, caption: document.getElementById('detail-caption').textContent} : null;
"""
READ_CLIP = """
const v = document.getElementById('detail-clip');
return v.readyState >= 2 && v.currentTime > 0
  ? {width: v.videoWidth, height: v.videoHeight, duration: v.duration, caption: document.getElementById('detail-clip-caption').textContent}
  : null;
"""
# The demo clip's poster face is in every frame: one track, standing in a zone over the whole frame.
ENTRANCE_ZONE = {"name": "hall", "points": [[0, 0], [1280, 0], [1280, 720], [0, 720]], "anchor": "center"}
ENTRANCE_LINE = {"name": "door", "points": [[1100, 40], [1100, 680]], "anchor": "center"}  # clear of the poster


@pytest.fixture(scope="session")
def console_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_demo_clips(tmp_path_factory.mktemp("console-clips"), seconds=4)


async def poll(what: str, check: Callable[[], Any], timeout_s: float = 180, context: Callable[[], Any] = lambda: "") -> Any:
    """`check`'s first true answer, asked in a thread (the console answers from the test's event loop);
    `context` adds what to show when it never comes."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"no {what} within {timeout_s:.0f} s {await asyncio.to_thread(context)}")


def save_screenshot(browser: Any, name: str) -> None:
    """The README's screenshot, as a JPEG: a tenth of the PNG's size, and it is rewritten on every run."""
    png = np.frombuffer(browser.get_screenshot_as_png(), np.uint8)
    (SCREENSHOTS / name).write_bytes(cv2.imencode(".jpg", cv2.imdecode(png, cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_console_shows_every_camera_live_with_boxes_counters_and_a_camera_going_down(
    tmp_path, kafka_server, ray_cluster, camera_server, browser, console_clips, monkeypatch
):
    cams = camera_server(rtsp={"dock": "h264"})
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cameras = [
        {"id": "entrance", "source": str(console_clips[0]), "inferenceFps": 2, "zones": [ENTRANCE_ZONE], "lines": [ENTRANCE_LINE]},
        {"id": "loading-bay", "source": str(console_clips[1]), "inferenceFps": 2},
        {"id": "dock", "source": cams.rtsp_url("dock"), "inferenceFps": 2, "stallTimeoutSeconds": 2},
    ]
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "console",
        kafka_server.bootstrap,
        cameras=cameras,
        models=[face_model(autoscaling={"minReplicas": 1, "maxReplicas": 2}), health_model()],
        consumer=PATIENT_CONSUMER,
        producer={"reconnectInitialSeconds": 0.5, "reconnectMaxSeconds": 2},
        events={"enabled": True, "reorderWindowMs": 1000},
    )
    seen: dict[str, Any] = {}
    deploy = FleetRunner.deploy_serving

    def deploy_asking_the_console(runner: FleetRunner) -> None:
        """The console answers while Serve deploys: a deploy on the run's loop would hold this request (and the
        console's Kafka readers) until it ended, and the request would time out."""
        try:
            seen["during_deploy"] = get(url + "api/fleet")[0]
        except OSError as err:  # the request timed out
            seen["during_deploy"] = repr(err)
        deploy(runner)

    monkeypatch.setattr(FleetRunner, "deploy_serving", deploy_asking_the_console)

    def tile(camera: str) -> dict[str, Any] | None:
        return browser.execute_script(READ_TILE, camera)

    def tile_shows_a_visit() -> dict[str, Any] | None:
        """The entrance tile when a box on it carries the track of a visit in the fleet's events. The poster face is
        one track while the tracker keeps it; on a loaded machine it may lose it (frames late past the track's
        patience, as a CI run did), and its next track makes a new visit: any listed visit's track will do."""
        t, rows = tile("entrance"), browser.execute_script(READ_EVENTS)
        visits = {r["cells"][3].split()[0] for r in rows if r["kind"] == "zone" and r["phase"] == "start"}
        shared = {f"#{r['track']}" for r in (t or {}).get("rects", []) if r["track"] is not None} & visits
        return {"tile": t, "shared": sorted(shared)} if shared else None

    async def use_console(runner) -> None:
        def dock_up() -> bool:
            return camera_stats(runner, "dock").source_up

        await asyncio.to_thread(browser.set_window_size, 1280, 560)
        await asyncio.to_thread(browser.get, url)
        await poll("tile with a frame for every camera", lambda: all((tile(c["id"]) or {}).get("seq") is not None for c in cameras))
        seen["boxes"] = await poll("a face drawn on the entrance tile", lambda: (t := tile("entrance")) and t["rects"] and t)
        seen["shapes"] = await asyncio.to_thread(browser.execute_script, READ_SHAPES, "entrance")
        await poll(
            "the entrance's visit of its hall in the fleet's events",
            lambda: (
                (rows := browser.execute_script(READ_EVENTS)) and any(r["kind"] == "zone" and r["phase"] == "start" for r in rows) and rows
            ),
            context=lambda: get(url + "api/timeline"),
        )
        seen["tracked"] = await poll("the entrance tile's face labelled with a visit's track id", tile_shows_a_visit)
        seen["visit"] = await asyncio.to_thread(browser.execute_script, OPEN_FIRST_VISIT)
        seen["snapshot"] = await poll(
            "the visit's snapshot with its track in the detail view", lambda: browser.execute_script(READ_SNAPSHOT)
        )
        await poll(
            "the entrance's event timeline",
            lambda: browser.execute_script("return document.querySelectorAll('#detail-timeline rect.mark').length"),
        )
        await asyncio.to_thread(browser.set_window_size, 1280, 1250)  # the frame, then the timeline and the list under it
        await asyncio.to_thread(save_screenshot, browser, "console-events.jpg")
        await asyncio.to_thread(
            browser.execute_script, "document.querySelector('#detail-events-table tr[data-kind=zone] button.clip').click()"
        )
        seen["clip"] = await poll(
            "the visit's clip playing", lambda: browser.execute_script(READ_CLIP), context=lambda: browser.get_log("browser")
        )
        await asyncio.to_thread(browser.execute_script, "document.getElementById('detail-clip-figure').scrollIntoView()")
        await asyncio.to_thread(save_screenshot, browser, "console-clip.jpg")
        await asyncio.to_thread(browser.set_window_size, 1280, 560)
        await asyncio.to_thread(browser.get, url)
        await poll("the grid again", lambda: (t := tile("entrance")) and t["seq"] is not None)
        # Every browser and HTTP call runs in a thread: the console answers from this test's event loop.
        before = (await asyncio.to_thread(tile, "entrance"))["processed"]
        await poll("the entrance's processed count moving", lambda: tile("entrance")["processed"] > before)
        seen["models"] = await asyncio.to_thread(lambda: browser.find_element(By.ID, "models").text)
        seen["page"] = await asyncio.to_thread(lambda: browser.page_source)
        seen["api"] = (await asyncio.to_thread(get, url + "api/fleet"))[1].decode()
        await poll(
            "the consumer lag in the header",
            lambda: browser.find_element(By.ID, "f-lag").text.isdigit(),
            context=lambda: get(url + "api/fleet"),
        )
        seq = seen["boxes"]["seq"]
        seen["frame"] = await asyncio.to_thread(get, f"{url}api/cameras/entrance/frames/{seq}")
        seen["hostile"] = {
            path: await asyncio.to_thread(get, url.rstrip("/") + path)
            for path in (
                "/api/cameras/yard/frames/1",
                f"/api/cameras/entrance/frames/{seq + 10**6}",
                "/api/cameras/entrance/frames/" + "9" * 400,
                "/api/cameras/..%2F..%2F..%2Fetc%2Fpasswd/frames/1",
                "/api/cameras/entrance%2F..%2F..%2Fsecret/frames/1",
                f"/api/cameras/entrance/frames/{seq}?size=../../etc/passwd",
            )
        }

        await poll("the dock camera up", dock_up)
        cams.stop()
        await poll("the producer noticing the dock camera down", lambda: not dock_up())
        await poll("the dock tile showing down", lambda: tile("dock")["down"])
        seen["dock_down"] = await asyncio.to_thread(tile, "dock")
        seen["header_cameras"] = await asyncio.to_thread(lambda: browser.find_element(By.ID, "f-cameras").text)
        await asyncio.to_thread(save_screenshot, browser, "console.jpg")

        await asyncio.to_thread(browser.set_window_size, 1280, 900)
        await asyncio.to_thread(browser.get, url + "#camera/entrance")
        seen["detail_rects"] = await poll(
            "the entrance's detail view with its boxes",
            lambda: browser.execute_script("return document.querySelectorAll('#detail-frame rect.detection').length"),
        )
        seen["detail_ledger"] = await asyncio.to_thread(lambda: browser.find_element(By.ID, "detail-ledger").text)
        await asyncio.to_thread(save_screenshot, browser, "console-camera.jpg")

        cams.start()
        await asyncio.to_thread(browser.get, url)
        await poll(
            "the dock tile back up", lambda: (t := tile("dock")) and not t["down"] and "live" in [f.lower() for f in t["flags"]], 180
        )
        seen["errors"] = [e for e in await asyncio.to_thread(browser.get_log, "browser") if e["level"] == "SEVERE"]

    runner, summary = asyncio.run(run_fleet_for(manifest, None, use_console, console_port=port))

    assert summary["ledger_balanced"], summary
    assert seen["during_deploy"] == 200, seen["during_deploy"]
    # Boxes sit where the results say: the SVG's rects carry the record's box in frame pixels, and on screen
    # they are that box scaled to the drawn image.
    boxes = seen["boxes"]
    [shown] = [r for r in read_results(runner) if r["cameraId"] == "entrance" and r.get("seq") == boxes["seq"]]
    faces = shown["models"]["faces"]["detections"]
    assert boxes["viewBox"] == f"0 0 {shown['width']} {shown['height']}"
    assert len(boxes["rects"]) == len(faces)
    scale_x, scale_y = boxes["img"]["width"] / shown["width"], boxes["img"]["height"] / shown["height"]
    for rect, face in zip(boxes["rects"], faces, strict=True):
        x1, y1, x2, y2 = face["box"]
        assert (rect["x"], rect["y"], rect["width"], rect["height"]) == pytest.approx((x1, y1, x2 - x1, y2 - y1), abs=0.01)
        assert rect["label"] == "face"
        screen = rect["screen"]
        assert screen["left"] - boxes["img"]["left"] == pytest.approx(x1 * scale_x, abs=2)
        assert screen["top"] - boxes["img"]["top"] == pytest.approx(y1 * scale_y, abs=2)
        assert screen["width"] == pytest.approx((x2 - x1) * scale_x, abs=2)
    # The header names the models with their replicas and batching.
    assert "faces: 1/2 replicas" in seen["models"] or "faces: 2/2 replicas" in seen["models"], seen["models"]
    # Down: shown on the tile, with the problem, once the producer noticed.
    assert seen["dock_down"]["flags"][0].lower().startswith("down"), seen["dock_down"]
    assert seen["header_cameras"] == "3 (1 down)"
    assert seen["detail_rects"] >= 1 and "processed" in seen["detail_ledger"]
    # Zones and lines on the tile; the visit listed with its camera and track; its snapshot shows that track.
    assert seen["shapes"] == ["door", "hall"], seen["shapes"]
    visit = seen["visit"]
    assert visit[1] == "entrance" and visit[2] == "entered hall" and visit[3].startswith("#"), visit
    assert visit[3].split()[0] == f"#{seen['snapshot']['track']}" and "entered hall" in seen["snapshot"]["caption"], seen
    # The tile's boxes carry the events' track ids (a visit's), in their labels too.
    track = seen["tracked"]["shared"][0]
    assert any(t.startswith(f"{track} face ") for t in seen["tracked"]["tile"]["texts"]), seen["tracked"]
    # The visit's clip plays: the frames the events stage kept, made into a video by the console.
    clip = seen["clip"]
    assert (clip["width"], clip["height"]) == (1280, 720) and clip["duration"] > 0 and "entered hall" in clip["caption"], clip
    assert seen["errors"] == [], seen["errors"]
    # The real server (uvicorn decodes the path) serves the frame and refuses hostile requests cleanly.
    assert seen["frame"][0] == 200 and seen["frame"][1][:2] == b"\xff\xd8"
    for path, (status, body) in seen["hostile"].items():
        assert status == (400 if "size=" in path else 404), (path, status, body)
        assert set(orjson.loads(body)) == {"error"}, body
        assert b"file://" not in body and str(tmp_path).encode() not in body and b"passwd" not in body
    # Nothing of the bucket or the cameras' sources reaches the page or its API.
    for text in (seen["page"], seen["api"]):
        for secret in (runner.spec.bucket.uri, "rtsp://", str(console_clips[0]), "file://"):
            assert secret not in text
