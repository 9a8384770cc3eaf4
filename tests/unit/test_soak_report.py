"""`make soak`'s report (hack/camerafleet_dev/soak.py), checked on made-up samples: no cluster runs. A role's
series goes on across a Pod's replacement, and a new Pod's warm-up must not read as a leak."""

from __future__ import annotations

import json
from pathlib import Path

from camerafleet_dev.soak import Series, longest_lived_slope, write_report

MINUTE = 60.0


def replaced_pod_series() -> Series:
    """A serving worker that warms up from 2,800 to 4,000 MiB in its first 5 minutes and then stays flat; deleted at
    20 minutes, its replacement warms up the same way."""
    series = Series()
    for pod, born in (("old", 0), ("new", 20)):
        for minute in range(born, born + (20 if pod == "old" else 40)):
            age = minute - born
            series.add(minute * MINUTE, "memory MiB serving worker", 2800 + 240 * min(age, 5), pod)
    return series


def test_a_replaced_pods_warm_up_is_not_counted_as_growth_of_the_pod_seen_longest() -> None:
    slope, minutes = longest_lived_slope(replaced_pod_series().samples, warmup_s=5 * MINUTE) or (None, None)
    assert slope == 0.0
    assert minutes == 34  # the new Pod, minutes 25 to 59


def test_growth_after_the_warm_up_shows_in_the_longest_lived_pods_slope() -> None:
    series = Series()
    for minute in range(60):
        series.add(minute * MINUTE, "fds consumer head", 800 + minute, "head")
    slope, _ = longest_lived_slope(series.samples, warmup_s=5 * MINUTE) or (None, None)
    assert slope is not None and abs(slope - 60) < 1e-6  # one descriptor a minute


def test_series_without_pods_have_no_per_pod_slope() -> None:
    series = Series()
    for minute in range(10):
        series.add(minute * MINUTE, "kafka lag", 10)
    assert longest_lived_slope(series.samples, warmup_s=0) is None


def test_the_report_gives_both_slopes_and_keeps_the_samples(tmp_path: Path) -> None:
    series = replaced_pod_series()
    write_report(tmp_path, series, ["20.0 min: serving worker Pod deleted"], 60, 5 * MINUTE)
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| memory MiB serving worker"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[4]) > 0  # summed over the role, the replacement's warm-up reads as growth
    assert cells[5] == "+0.00 over 34 min"
    assert json.loads((tmp_path / "samples.json").read_text()) == series.samples
    assert (tmp_path / "soak.png").stat().st_size > 0
