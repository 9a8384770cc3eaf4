"""A removed camera's topic is read until this member has been caught up on it for DRAIN_QUIET_S (the producer
that announces on it may hear of the edit later than the consumers), and left at most DRAIN_MOST_S after."""

from camerafleet.removed_cameras import DRAIN_MOST_S, DRAIN_QUIET_S, UNREAD_LOOK_S, Drained, RemovedCameras

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


def test_unread_topics_found_later_are_drained_once_each_and_never_one_given_up():
    """A member looks for removed cameras' unread topics at start and every UNREAD_LOOK_S: frames can come after the
    member that had caught up was replaced. One it is already draining is not started again; one left after the
    longest drain is not taken up again (its producer may never stop), unless the camera comes back and goes again."""
    removed = RemovedCameras()
    assert removed.unread({"camera_2": "2"}, now=0.0) == ["camera_2"]
    assert removed.unread({"camera_2": "2"}, now=UNREAD_LOOK_S) == []  # already draining
    assert removed.settle({"camera_2"}, now=DRAIN_MOST_S) == [Drained("camera_2", "2", complete=False)]
    assert removed.unread({"camera_2": "2"}, now=DRAIN_MOST_S + UNREAD_LOOK_S) == []  # given up
    removed.edit({}, {"camera_2": "2"}, now=DRAIN_MOST_S + 100)  # back in the fleet, then removed again
    removed.edit({"camera_2": "2"}, {}, now=DRAIN_MOST_S + 200)
    assert removed.cameras() == {"camera_2": "2"}
    assert removed.settle(set(), now=DRAIN_MOST_S + 200 + DRAIN_QUIET_S) == [Drained("camera_2", "2", complete=True)]
    assert removed.unread({"camera_2": "2"}, now=DRAIN_MOST_S + 400 + DRAIN_QUIET_S) == ["camera_2"]  # written to after it was left
