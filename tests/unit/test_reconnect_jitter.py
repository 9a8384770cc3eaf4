"""How long a producer waits before reopening a camera that failed."""

import random

from camerafleet.producer import reconnect_wait


def test_cameras_that_fail_together_reconnect_spread_out_not_in_lockstep():
    """Issue 24: every camera of one recorder retried at the same instants (1, 2, 4 ... s after a shared outage),
    hammering it as it came back. Each wait is drawn between half the backoff and all of it."""
    waits = [reconnect_wait(8.0, random.Random(camera)) for camera in range(150)]
    assert all(4.0 <= w <= 8.0 for w in waits)
    assert max(waits) - min(waits) > 3.0 and len({round(w, 1) for w in waits}) > 20
