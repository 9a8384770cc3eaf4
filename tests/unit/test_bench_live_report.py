"""The live-camera table of the bench report says whose limit stopped the capacity ramp."""

from __future__ import annotations

from camerafleet_dev.bench.live import capacity_cell


def row(cameras: int, taken: int, expected: int, cpu: float) -> dict:
    return {"cameras": cameras, "taken": taken, "expected": expected, "missed": 0, "cpu_cores": cpu}


def test_a_ramp_that_held_some_counts_reports_the_largest():
    cap = {"rows": [row(4, 80, 80, 0.09), row(8, 150, 160, 0.2)], "cameras_without_missed_slots": 4, "stopped_by": "producer core"}
    assert capacity_cell(cap) == "4"


def test_a_camera_server_that_could_not_feed_the_first_count_is_not_a_capacity_of_zero():
    cap = {
        "rows": [row(4, 68, 80, 0.106)],
        "cameras_without_missed_slots": 0,
        "stopped_by": "camera server (the producer core was not busy)",
    }
    assert capacity_cell(cap) == "not measured: the test camera could not feed 4"


def test_a_producer_core_full_at_the_first_count_holds_fewer():
    cap = {"rows": [row(4, 60, 80, 0.97)], "cameras_without_missed_slots": 0, "stopped_by": "producer core"}
    assert capacity_cell(cap) == "fewer than 4"
