"""A removed camera's topic is read until this member has been caught up on it for DRAIN_QUIET_S (the producer
that announces on it may hear of the edit later than the consumers), and left at most DRAIN_MOST_S after."""

from camerafleet.removed_cameras import DRAIN_MOST_S, DRAIN_QUIET_S, Drained, RemovedCameras

BEFORE = {"camera_1": "1", "camera_2": "2"}


def test_a_removed_camera_is_drained_until_caught_up_for_the_quiet_time():
    removed = RemovedCameras()
    removed.edit(BEFORE, {"camera_1": "1"}, now=0.0)
    assert removed.cameras() == {"camera_2": "2"}
    assert removed.settle({"camera_2"}, now=50.0) == []  # its producer still announces: the quiet time starts again
    assert removed.settle(set(), now=50.0 + DRAIN_QUIET_S - 1) == []
    assert removed.settle(set(), now=50.0 + DRAIN_QUIET_S) == [Drained("camera_2", "2", complete=True)]
    assert removed.cameras() == {}


def test_a_topic_that_never_goes_quiet_is_left_after_the_longest_drain_and_said_incomplete():
    removed = RemovedCameras()
    removed.edit(BEFORE, {"camera_1": "1"}, now=0.0)
    assert removed.settle({"camera_2"}, now=DRAIN_MOST_S - 1) == []
    assert removed.settle({"camera_2"}, now=DRAIN_MOST_S) == [Drained("camera_2", "2", complete=False)]


def test_a_camera_added_back_is_no_longer_drained_and_a_later_edit_keeps_the_drain_running():
    removed = RemovedCameras()
    removed.edit(BEFORE, {}, now=0.0)
    removed.edit({}, {"camera_1": "1"}, now=10.0)  # camera 1 back; camera 2 still drained from its first removal
    assert removed.cameras() == {"camera_2": "2"}
    assert removed.settle(set(), now=DRAIN_QUIET_S) == [Drained("camera_2", "2", complete=True)]
