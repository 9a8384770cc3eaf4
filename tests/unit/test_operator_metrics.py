"""The operator's metrics: one phase series per fleet (what the CameraFleetNotReady alert counts on),
reconciles by fleet and result, and nothing left behind by a deleted fleet."""

from __future__ import annotations

from camerafleet_operator import metrics


def _phases() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for family in metrics.REGISTRY.collect():
        if family.name == "camerafleet_operator_fleet_phase":
            for sample in family.samples:
                found.setdefault((sample.labels["namespace"], sample.labels["fleet"]), []).append(sample.labels["phase"])
                assert sample.value == 1
    return found


def _reconciles(namespace: str, fleet: str, result: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "camerafleet_operator_reconciles_total", {"namespace": namespace, "fleet": fleet, "result": result}
    )
    return value or 0.0


def test_each_fleet_has_one_phase_series_that_follows_it_and_goes_with_it() -> None:
    metrics.record_reconcile("cams", "lot", "Reconciling", retry=True)
    metrics.record_reconcile("cams", "yard", "Running", retry=False)
    assert _phases()[("cams", "lot")] == ["Reconciling"]
    metrics.record_reconcile("cams", "lot", "Running", retry=False)
    metrics.record_reconcile("cams", "lot", "Running", retry=False)
    assert _phases()[("cams", "lot")] == ["Running"] and _phases()[("cams", "yard")] == ["Running"]
    metrics.forget_fleet("cams", "lot")
    assert ("cams", "lot") not in _phases() and ("cams", "yard") in _phases()
    metrics.forget_fleet("cams", "lot")  # twice (a delete handler retried) is harmless
    metrics.forget_fleet("cams", "yard")


def test_reconciles_are_counted_per_fleet_and_result() -> None:
    before = {r: _reconciles("cams", "gate", r) for r in ("ok", "retry", "error")}
    metrics.record_reconcile("cams", "gate", "Running", retry=False)
    metrics.record_reconcile("cams", "gate", "Degraded", retry=True)
    metrics.record_error("cams", "gate")
    assert {r: _reconciles("cams", "gate", r) - before[r] for r in before} == {"ok": 1, "retry": 1, "error": 1}
    metrics.forget_fleet("cams", "gate")
