"""Every panel of the shipped Grafana dashboard returns data from a real Prometheus scraping a running
fleet: Ray's metrics agent (the pipeline's and Ray Serve's metrics) and the run's own endpoint.

The fleet is built to exercise every panel: two cameras overload a deliberately slow model (producers
shed slots), a third camera's source is unreachable from the start, and one stale, one malformed and
one missing frame are slipped onto a camera topic (dropped and failed frames with their reasons). The
operator's panels are checked where the operator runs (tests/controlplane/test_charts.py).
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from camerafleet_dev.devservers._process import free_port
from tests.fixtures.pipeline import health_model, run_fleet_for, slow_face_model, write_fleet, yolo_model
from tests.fixtures.prometheus import SCRAPE_S, dashboard, dashboard_queries, empty_or_unlabelled

pytestmark = pytest.mark.integration

FLEET = "observed"
# Ray reports every 2 s and Prometheus scrapes every 2 s; a panel's first rate needs a few samples. The
# test polls until every panel has data and only fails past this, which leaves a loaded machine minutes.
PANELS_DEADLINE_S = 180
MIN_RUN_S = 30  # fifteen of Ray's 2 s report intervals: long past the agent's expiry of an unrefreshed gauge


def overloaded_fleet(tmp_path, bootstrap: str) -> object:
    # The YOLO stand-in finds its two constant boxes in every frame: tracks standing in the gate's zone fill the
    # events panel.
    gate_zone = {"name": "all", "points": [[0, 0], [640, 0], [640, 360], [0, 360]], "models": ["objects"], "anchor": "center"}
    cameras = [
        {"id": "gate", "source": "synthetic:640x360@10", "inferenceFps": 5, "zones": [gate_zone]},
        {"id": "yard", "source": "synthetic:640x360@10", "inferenceFps": 5},
        {"id": "dock", "source": f"rtsp://127.0.0.1:{free_port()}/dock", "inferenceFps": 1},  # nothing listens there
    ]
    return write_fleet(
        tmp_path / "fleet.yaml",
        FLEET,
        bootstrap,
        cameras=cameras,
        models=[slow_face_model(), health_model(), yolo_model(resources={"cpus": 0.25})],  # about half a second per frame: a 5x overload
        producer={"actors": 1, "cpusPerActor": 0.25, "admission": {"mode": "backlog", "intervalMs": 250}},
        consumer={"actors": 1, "maxBatchFrames": 8, "maxFrameAgeMs": 3000, "cpusPerActor": 0.25},
        events={"enabled": True},
    )


def bad_messages(bucket_root: str) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    frame = {"cameraId": "gate", "epochMs": 7, "width": 640, "height": 360}
    return [
        orjson.dumps({**frame, "seq": 9_000_001, "captureTsMs": now_ms - 3_600_000, "uri": f"{bucket_root}/gate/old.jpg"}),  # stale
        orjson.dumps({**frame, "seq": 9_000_002, "captureTsMs": now_ms + 60_000, "uri": f"{bucket_root}/gate/never-written.jpg"}),
        b"{not a frame message",
    ]


def test_every_dashboard_panel_returns_data_from_a_running_fleet(tmp_path, kafka_server, ray_cluster, prometheus) -> None:
    manifest = overloaded_fleet(tmp_path, kafka_server.bootstrap)
    run_port = free_port()
    prom = prometheus({"ray": [f"127.0.0.1:{ray_cluster.metrics_port}"], "camerafleet-run": [f"127.0.0.1:{run_port}"]})
    queries = [q for q in dashboard_queries(FLEET, step_s=SCRAPE_S) if not q.from_operator]
    panels_here = {q.panel for q in queries}
    assert panels_here and panels_here | {q.panel for q in dashboard_queries(FLEET, SCRAPE_S) if q.from_operator} == {
        p["title"] for p in dashboard()["panels"]
    }
    problems: list[str] = []
    seen: dict[str, int] = {}

    def what_happened_is_shown() -> list[str]:
        """What the panels must show about this run, beyond having data: the unreachable camera down and the
        others up (a gauge set once must outlive Ray's agent's expiry), the dropped and failed frames with their
        reasons, slots shed, the fleet in the template variable and the run endpoint's ledger."""
        unmet = []
        sources = {
            s["metric"]["camera"]: float(s["value"][1])
            for s in prom.query(f'min by (camera) (ray_camerafleet_source_up{{fleet="{FLEET}"}})')
        }
        if sources != {"gate": 1.0, "yard": 1.0, "dock": 0.0}:
            unmet.append(f"sources up: {sources}")
        reasons = {
            (s["metric"]["__name__"], s["metric"]["reason"])
            for s in prom.query(f'{{__name__=~"ray_camerafleet_frames_(dropped|failed)_total", fleet="{FLEET}"}}')
        }
        expected = {
            ("ray_camerafleet_frames_dropped_total", "stale"),
            ("ray_camerafleet_frames_failed_total", "frame_missing"),
            ("ray_camerafleet_frames_failed_total", "malformed_message"),
        }
        if not expected <= reasons:
            unmet.append(f"dropped and failed reasons: {sorted(reasons)}")
        if not prom.query(f'sum(ray_camerafleet_slots_shed_total{{fleet="{FLEET}"}}) > 0'):
            unmet.append("no slot shed yet")
        if FLEET not in prom.api("label/fleet/values", **{"match[]": "ray_camerafleet_frames_produced_total"}):
            unmet.append("the fleet variable does not list the fleet")
        outcomes = {s["metric"]["outcome"] for s in prom.query(f'sum by (outcome) (camerafleet_run_frames{{fleet="{FLEET}"}})')}
        if not outcomes >= {"produced", "processed", "dropped", "failed"}:
            unmet.append(f"run ledger outcomes: {sorted(outcomes)}")
        return unmet

    async def watch(runner) -> None:
        started = time.time()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap)
        await producer.start()
        try:
            for value in bad_messages(f"file://{tmp_path}/frames"):
                await producer.send_and_wait(f"{FLEET}_camera_gate", value, key=b"gate")
        finally:
            await producer.stop()
        await asyncio.to_thread(prom.wait_for_targets_up, 60)
        deadline = time.monotonic() + PANELS_DEADLINE_S
        while True:
            await asyncio.sleep(5)
            end = time.time()
            problems[:] = []
            for q in queries:
                problem = await asyncio.to_thread(empty_or_unlabelled, prom, q, started, end, SCRAPE_S)
                if problem:
                    problems.append(problem)
                else:
                    seen[q.expr] = len(await asyncio.to_thread(prom.query_range, q.expr, started, end, SCRAPE_S))
            problems.extend(await asyncio.to_thread(what_happened_is_shown))
            # Judged only after several of Ray's report intervals, or a gauge Ray expires would still look fine.
            if (not problems and end - started > MIN_RUN_S) or time.monotonic() > deadline:
                return

    _runner, summary = asyncio.run(run_fleet_for(manifest, None, watch, metrics_port=run_port))

    assert not problems, "panels without data, or not showing what happened:\n" + "\n".join(problems)
    print("\n".join(f"{n:3d} series  {expr}" for expr, n in seen.items()))
    assert summary["produced"] > 0
