"""When a live camera's own clock (RTCP sender reports) gives a frame's capture time, and when its arrival does."""

import pytest

from camerafleet.sources.live import camera_clock_trusted


@pytest.mark.parametrize(
    "slow_s, max_frame_age_s, trusted",
    [
        (0.3, 5.0, True),  # network and decode delay: the camera's clock is better than arrival
        (2.0, 5.0, True),
        (10.0, 5.0, False),  # issue 24: trusted up to 60 s, it made every frame of the camera stale
        (30.0, 120.0, True),
        (90.0, 600.0, False),  # never more than a minute
        (-0.5, 5.0, True),
        (-5.0, 5.0, False),  # a clock ahead: frames from the future
    ],
)
def test_a_camera_clock_is_trusted_only_while_it_leaves_the_frames_their_freshness_budget(slow_s, max_frame_age_s, trusted):
    arrival = 1_800_000_000.0
    assert camera_clock_trusted(arrival - slow_s, arrival, max_frame_age_s) is trusted
