"""The shipped alerting rules on a real Prometheus, against a real fault: a live camera's RTSP server is
stopped and `CameraFleetCameraDown` fires for that camera (and no other) once its one minute `for` has
passed, then resolves when the server is back. Slow by nature (the rule's own minute), so it runs with the
fault suite (`make test-faults`), not in `make test`; the rules' logic is unit-tested with promtool.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.fixtures.pipeline import PATIENT_CONSUMER, camera_stats, health_model, run_fleet_for, write_fleet
from tests.fixtures.prometheus import RULES

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

FLEET = "alerted"
# The rule waits 1 minute; Ray reports and Prometheus scrapes and evaluates every 2 s here. The rest is
# slack for a loaded 2-core machine that also encodes the camera's 1080p stream.
FIRE_TIMEOUT_S = 240


async def _until(what: str, check, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await asyncio.to_thread(check):
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise AssertionError(f"no {what} within {timeout_s} s")


def test_a_stopped_camera_stream_fires_camera_down_on_a_real_prometheus(
    tmp_path, kafka_server, ray_cluster, camera_server, prometheus, fault_report
) -> None:
    cams = camera_server(rtsp={"dock": "h264"})
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        FLEET,
        kafka_server.bootstrap,
        cameras=[
            {"id": "dock", "source": cams.rtsp_url("dock"), "inferenceFps": 2},
            {"id": "gate", "source": "synthetic:640x360@10", "inferenceFps": 2},
        ],
        models=[health_model()],
        consumer=PATIENT_CONSUMER,
        producer={"reconnectInitialSeconds": 0.5, "reconnectMaxSeconds": 2},
    )
    prom = prometheus({"ray": [f"127.0.0.1:{ray_cluster.metrics_port}"]}, rule_files=[RULES])
    row = fault_report.row(
        "a live camera's RTSP server stopped (alerting on a real Prometheus)",
        "CameraFleetCameraDown fires for that camera only, after its 1 minute `for`; resolved once the server is back",
    )
    seen: dict[str, Any] = {}

    def camera_down_alerts() -> list[dict]:
        return [a for a in prom.api("alerts")["alerts"] if a["labels"].get("alertname") == "CameraFleetCameraDown"]

    async def fault(runner) -> None:
        def dock_up() -> bool:
            stats = camera_stats(runner, "dock")
            return stats.source_up and stats.produced >= 4

        await _until("frames from the dock camera", dock_up, timeout_s=120)
        await _until("a scrape of the fleet's metrics", lambda: bool(prom.query(f'ray_camerafleet_source_up{{fleet="{FLEET}"}}')), 60)
        assert camera_down_alerts() == [], "an alert before any fault"
        cams.stop()
        seen["fired_after_s"] = await _until(
            "CameraFleetCameraDown firing", lambda: any(a["state"] == "firing" for a in camera_down_alerts()), FIRE_TIMEOUT_S
        )
        seen["alerts"] = camera_down_alerts()
        cams.start()
        seen["resolved_after_s"] = await _until("the alert resolved", lambda: camera_down_alerts() == [], 180)

    asyncio.run(run_fleet_for(manifest, None, fault))

    alerts = seen["alerts"]
    assert [(a["labels"]["fleet"], a["labels"]["camera"], a["state"]) for a in alerts] == [(FLEET, "dock", "firing")], alerts
    assert alerts[0]["annotations"]["summary"] == f"Camera dock of fleet {FLEET} is down"
    row.happened = (
        f"fired {seen['fired_after_s']:.0f} s after the server stopped ({alerts[0]['annotations']['summary']!r}), "
        f"resolved {seen['resolved_after_s']:.0f} s after it restarted"
    )
