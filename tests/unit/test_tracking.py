"""The tracker and the events over it, on scenes whose truth is known: people walking across a counting line
both ways, one standing in a zone, boxes that jitter and detections that are missed, at 1, 2 and 5 fps."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from camerafleet.api.geometry import inside, line_problem, polygon_problem, segments_intersect, side
from camerafleet.tracking import Detection, Tracker, TrackerSettings
from camerafleet.tracking.camera import TRACKED_KEPT, CameraRules, CameraTracking
from camerafleet.tracking.clips import RECENT_MOST, ClipFrames, ClipSettings
from camerafleet.tracking.events import CameraEvents, Event, Frame, Kind, Phase, ZoneRule
from tests.fixtures.scenes import DOCK, DOOR, H, W, detections, records


def run(fps: float, seed: int = 7, miss: float = 0.05, until: float = 32.0) -> tuple[list[Event], Tracker]:
    rng, tracker = random.Random(seed), Tracker()
    events = CameraEvents("lobby", zones=[DOCK], lines=[DOOR])
    out: list[Event] = []
    n = 0
    while (t := n / fps) <= until:
        update = tracker.update(t, detections(t, rng, miss))
        out += events.observe("people", Frame(round(t * 1000), f"s3://frames/lobby/{n}.jpg"), update)
        n += 1
    out += events.end("people", tracker.finish())
    return out, tracker


def crossings(events: list[Event]) -> list[str]:
    return [e.direction for e in events if e.kind == Kind.LINE]


@pytest.mark.parametrize("fps", [5, 2, 1])
def test_line_counts_zone_visits_and_loitering_match_the_truth(fps: float) -> None:
    events, _ = run(fps)
    assert sorted(crossings(events)) == ["in", "out"], [(e.track_id, e.direction, e.at_ms) for e in events if e.kind == Kind.LINE]
    objects = [e for e in events if e.kind == Kind.OBJECT and e.phase == Phase.START]
    assert len(objects) == 3, [(e.track_id, e.start_ms) for e in objects]  # one track per person: no id switch
    zone = [e for e in events if e.kind == Kind.ZONE and e.phase != Phase.UPDATE]
    assert [e.phase for e in zone] == [Phase.START, Phase.END], zone
    assert 2800 <= zone[0].at_ms <= 2800 + 1000 / fps  # the feet enter the dock at t 2.8
    assert 27_000 <= zone[1].at_ms <= 27_000 + 1000 / fps  # and the person vanishes at t 27
    loiter = [e for e in events if e.kind == Kind.LOITER and e.phase != Phase.UPDATE]
    assert [e.phase for e in loiter] == [Phase.START, Phase.END], loiter
    assert loiter[0].at_ms - zone[0].at_ms >= 10_000
    # Every event that starts ends, under one id; ids are unique per event.
    starts = {e.id for e in events if e.phase == Phase.START}
    assert starts == {e.id for e in events if e.phase == Phase.END}
    assert len(starts) == len([e for e in events if e.phase == Phase.START])


def test_the_same_results_give_the_same_tracks_and_events() -> None:
    assert run(5)[0] == run(5)[0]


def test_a_tracker_restored_from_its_state_continues_as_if_never_stopped() -> None:
    rng, whole, restored = random.Random(3), Tracker(), Tracker()
    got_whole, got_restored = [], []
    for n in range(80):
        t, dets = n / 5, detections(n / 5, rng, 0.05)
        if n == 40:
            restored = Tracker.from_state(json.loads(json.dumps(whole.to_state())))  # as saved: plain JSON
        got_whole += [(o.track_id, o.box) for o in whole.update(t, dets).observations]
        if n >= 40:
            got_restored += [(o.track_id, o.box) for o in restored.update(t, dets).observations]
    assert got_restored == got_whole[-len(got_restored) :]


def test_a_redelivered_result_changes_nothing() -> None:
    tracker = Tracker()
    tracker.update(1.0, [Detection((0, 0, 50, 100), 0.9, "person")])
    state = tracker.to_state()
    assert tracker.update(1.0, [Detection((500, 500, 550, 600), 0.9, "person")]).ignored
    assert tracker.update(0.5, []).ignored
    assert tracker.to_state() == state


def test_labels_never_share_a_track_and_a_flicker_costs_no_id() -> None:
    tracker = Tracker(TrackerSettings(confirm_hits=2))
    tracker.update(0.0, [Detection((100, 100, 200, 300), 0.9, "person")])
    u = tracker.update(0.2, [Detection((102, 100, 202, 300), 0.9, "car")])
    assert u.observations == []  # a car where a person was is a new tentative track, not the person's
    tracker.update(0.4, [Detection((700, 100, 800, 300), 0.9, "person")])  # elsewhere: the car flickered out
    u = tracker.update(0.6, [Detection((702, 100, 802, 300), 0.9, "person")])
    assert [o.track_id for o in u.observations] == [1]


def test_a_low_score_detection_keeps_a_track_but_never_starts_one() -> None:
    tracker = Tracker()
    for n in range(3):
        tracker.update(n * 0.2, [Detection((100 + n, 100, 180 + n, 300), 0.9, "person")])
    u = tracker.update(0.6, [Detection((104, 100, 184, 300), 0.3, "person"), Detection((900, 100, 980, 300), 0.3, "person")])
    assert [(o.track_id, o.detection) for o in u.observations] == [(1, 0)]
    assert len(tracker.tracks) == 1


def test_a_lost_track_ends_after_max_lost_seconds_and_a_return_within_them_keeps_its_id() -> None:
    tracker = Tracker(TrackerSettings(max_lost_s=2.0))
    for n in range(3):
        tracker.update(n * 0.5, [Detection((100, 100, 180, 300), 0.9, "person")])
    assert tracker.update(2.5, []).ended == []
    u = tracker.update(3.0, [Detection((100, 100, 180, 300), 0.9, "person")])
    assert [o.track_id for o in u.observations] == [1]
    tracker.update(4.0, [])
    ended = tracker.update(5.5, []).ended
    assert [e.track_id for e in ended] == [1] and ended[0].last_seen == 3.0


def test_a_walker_passing_in_front_of_someone_standing_does_not_take_their_track() -> None:
    """Someone stands (track 1); a walker coming from the left hides them: the walker's second sighting overlaps the
    hidden one's place enough to continue their track, but their own first sighting more: it starts its own."""
    tracker, stand = Tracker(), (87, 98, 131, 154)
    for n in range(5):
        tracker.update(n * 0.2, [Detection(stand, 0.9, "face")])
    tracker.update(1.0, [Detection((55, 83, 93, 131), 0.8, "face")])  # the walker; the one standing is hidden
    u = tracker.update(1.2, [Detection((68, 84, 105, 130), 0.8, "face")])
    assert [o.track_id for o in u.observations] == [2], "the walker took the hidden one's track"
    u = tracker.update(1.4, [Detection((81, 86, 118, 132), 0.8, "face"), Detection(stand, 0.9, "face")])
    assert sorted((o.track_id, o.box) for o in u.observations) == [(1, stand), (2, (81, 86, 118, 132))]


def test_a_box_that_shrinks_or_grows_at_once_starts_its_own_track() -> None:
    """Half a face's area where a face stood, 0.2 s later (someone else's face over it), is not that face; the same
    change over two seconds lost may be (a person walking towards the camera)."""
    tracker, stand = Tracker(), (60.0, 90.0, 104.0, 146.0)
    for n in range(5):
        tracker.update(n * 0.2, [Detection(stand, 0.9, "face")])
    u = tracker.update(1.0, [Detection((57, 74, 89, 114), 0.8, "face")])  # 32x40 over 44x56: 0.52 of its area
    assert u.observations == [], "the smaller face continued the track of the one it covers"
    tracker = Tracker()
    for n in range(5):
        tracker.update(n * 0.2, [Detection(stand, 0.9, "face")])
    u = tracker.update(2.8, [Detection((68, 100, 96, 136), 0.8, "face")])
    assert [o.track_id for o in u.observations] == [1]


def test_jitter_on_a_line_counts_no_crossing() -> None:
    events = CameraEvents("lobby", lines=[DOOR])
    tracker, rng, out = Tracker(), random.Random(1), []
    for n in range(100):  # feet within a few pixels of the line for 20 s
        x = 960 + rng.gauss(0, 4)
        out += events.observe(
            "people", Frame(n * 200, "u"), tracker.update(n * 0.2, [Detection((x - 40, 500, x + 40, 700), 0.9, "person")])
        )
    assert crossings(out) == []


def test_a_crossing_counts_from_where_a_track_was_before_it_was_confirmed_and_is_timed_by_its_motion() -> None:
    """A person stepping out from behind another right at the door is seen once before it (x 1000), and confirmed
    on the other side (x 900): the crossing counts. At 1 fps, a walker seen at x 980 and a second later at x 920
    crossed the door (x 960) a third of the way between the two samples, and is counted then."""

    def sighting(t: float, x: float) -> Detection:
        return Detection((x - 40, 500, x + 40, 700), 0.9, "person")

    events, tracker = CameraEvents("lobby", lines=[DOOR]), Tracker()
    out = [
        e
        for t, x in ((0.0, 1000.0), (0.2, 900.0))
        for e in events.observe("people", Frame(round(t * 1000), "u"), tracker.update(t, [sighting(t, x)]))
    ]
    crossing = [e for e in out if e.kind == Kind.LINE]
    assert [(e.direction, e.at_ms) for e in crossing] == [("in", 80)]  # 960 lies 40 % of the way from 1000 to 900

    events, tracker = CameraEvents("lobby", lines=[DOOR]), Tracker()
    out = []
    for t, x in ((0.0, 1100.0), (1.0, 1040.0), (2.0, 980.0), (3.0, 920.0), (4.0, 860.0)):
        out += events.observe("people", Frame(round(t * 1000), "u"), tracker.update(t, [sighting(t, x)]))
    crossing = [e for e in out if e.kind == Kind.LINE]
    assert [(e.direction, e.at_ms, e.snapshot.capture_ms) for e in crossing] == [("in", 2333, 3000)]
    restored = CameraEvents("lobby", lines=[DOOR])
    restored.restore(json.loads(json.dumps(events.to_state())))
    assert restored.to_state() == events.to_state()
    older = [{**t, "sides": {name: v[:2] for name, v in t["sides"].items()}} for t in events.to_state()]  # sides had no time
    restored.restore(older)
    assert [m.sides["door"].ms for m in restored.tracks.values()] == [None]


def test_shapes_the_manifest_refuses_say_why() -> None:
    assert polygon_problem([(0, 0), (10, 0)]) == "a polygon needs at least 3 points, got 2"
    assert "area" in (polygon_problem([(0, 0), (10, 10), (20, 20)]) or "")
    assert "cross each other" in (polygon_problem([(0, 0), (100, 100), (100, 0), (0, 100)]) or "")
    assert polygon_problem([(0, 0), (2000, 0), (0, 100)], 1920, 1080) == "point [2000, 0] is outside the 1920x1080 frame"
    assert polygon_problem(list(DOCK.polygon), W, H) is None
    assert line_problem((0, 0), (2, 2)) == "the line is shorter than 4 px"
    assert line_problem(DOOR.a, DOOR.b, W, H) is None


def test_geometry() -> None:
    assert inside((1500, 300), DOCK.polygon) and not inside((1000, 300), DOCK.polygon)
    assert side((100, 500), DOOR.a, DOOR.b) == 1 and side((1500, 500), DOOR.a, DOOR.b) == -1
    assert side((961, 500), DOOR.a, DOOR.b, margin=2) == 0
    assert segments_intersect((900, 500), (1000, 500), DOOR.a, DOOR.b)
    assert not segments_intersect((900, 50), (1000, 50), DOOR.a, DOOR.b)  # past the drawn end: not a crossing


RULES = CameraRules(zones=[DOCK], lines=[DOOR], reorder_window_ms=1000)


def track_all(recs: list[dict[str, Any]], tracking: CameraTracking | None = None) -> tuple[list[Event], CameraTracking]:
    tracking = tracking or CameraTracking("lobby", RULES)
    return [e for r in recs for e in tracking.take(r)], tracking


def test_results_written_out_of_order_within_the_window_give_the_events_of_capture_order() -> None:
    recs = records(5)
    in_order, tracking = track_all(recs)
    in_order += tracking.finish()
    assert {e.id for e in in_order if e.phase == Phase.START} == {e.id for e in in_order if e.phase == Phase.END}
    shuffled = list(recs)
    for i in range(0, len(shuffled) - 4, 4):  # two consumers finishing frames in turns: up to 0.8 s apart
        shuffled[i : i + 4] = reversed(shuffled[i : i + 4])
    events, tracking = track_all(shuffled)
    assert events + tracking.finish() == in_order
    assert sorted(crossings(in_order)) == ["in", "out"]


def test_each_tracked_frame_gives_its_tracks_in_capture_order_with_the_ids_of_the_events() -> None:
    """What the console labels boxes with: one record per released result, in capture order even when results come
    out of order, each confirmed track on the box of the detection that continued it; a caller that never takes them
    holds a bounded number."""
    recs = records(5)
    shuffled = list(recs)
    for i in range(0, len(shuffled) - 4, 4):
        shuffled[i : i + 4] = reversed(shuffled[i : i + 4])
    events, tracking = track_all(shuffled)
    frames = tracking.take_tracked()
    assert [f.capture_ms for f in frames] == [r["captureTsMs"] for r in recs if r["captureTsMs"] <= recs[-1]["captureTsMs"] - 1000]
    assert tracking.take_tracked() == []
    boxes = {r["captureTsMs"]: [tuple(d["box"]) for d in r["models"]["people"]["detections"]] for r in recs}
    assert all(o.box in boxes[f.capture_ms] for f in frames for o in f.tracks["people"])
    assert {o.track_id for f in frames for o in f.tracks["people"]} == {e.track_id for e in events if e.kind == Kind.OBJECT}
    _, untaken = track_all(records(5, until=TRACKED_KEPT / 5 + 10))
    assert len(untaken.tracked) == TRACKED_KEPT


def test_late_and_twice_written_results_are_counted_not_tracked() -> None:
    recs = records(5, until=10)
    late = recs.pop(10)
    recs.insert(40, late)  # 6 s after its turn, beyond the 1 s window
    recs.insert(30, recs[25])  # written again by a consumer that re-read it
    recs.insert(31, {**recs[31], "outcome": "dropped", "models": None})
    _, tracking = track_all(recs)
    assert tracking.counts["late"] == 1 and tracking.counts["duplicate"] == 1 and tracking.counts["untracked"] == 1


def test_tracking_restored_from_its_saved_state_gives_the_same_events() -> None:
    recs = records(2)
    whole, _ = track_all(recs)
    first, tracking = track_all(recs[:25])
    saved = json.loads(json.dumps(tracking.to_state()))
    rest, _ = track_all(recs[25:], CameraTracking.from_state("lobby", RULES, saved))
    assert first + rest == whole


def test_a_zone_outside_the_cameras_frame_is_left_out_and_said() -> None:
    off = ZoneRule("roof", ((100.0, 100.0), (2500.0, 100.0), (2500.0, 300.0)))
    tracking = CameraTracking("lobby", CameraRules(zones=[off, DOCK], lines=[DOOR]))
    track_all(records(5, until=2), tracking)
    assert tracking.problems == ["camera lobby: zone 'roof' is left out: point [2500.0, 100.0] is outside the 1920x1080 frame"]
    assert [z.name for z in tracking.events.zones] == ["dock"]


# -- frames kept for clips ----------------------------------------------------------------------------


def test_frames_are_kept_from_a_pre_roll_before_a_track_to_a_post_roll_after_it() -> None:
    clips = ClipFrames(ClipSettings(pre_roll_ms=1000, post_roll_ms=1000))
    open_at = {3000, 3500, 4000}  # a track open after these frames (2 fps)
    kept = [f for t in range(0, 8000, 500) for f in clips.frame(t, f"f{t}", tracking=t in open_at)]
    assert [t for t, _ in kept] == [2000, 2500, 3000, 3500, 4000, 4500, 5000]
    assert len(clips.recent) <= 3  # only the pre-roll waits
    crowded = ClipFrames(ClipSettings(pre_roll_ms=60_000, post_roll_ms=0))
    for t in range(5000):
        crowded.frame(t, "f", tracking=False)
    assert len(crowded.recent) == RECENT_MOST


def test_tracking_keeps_the_frames_around_its_tracks_and_a_restored_state_keeps_the_same() -> None:
    rules = CameraRules(zones=[DOCK], lines=[DOOR], reorder_window_ms=1000, clips=ClipSettings(pre_roll_ms=2000, post_roll_ms=2000))
    recs = records(2)
    tracking = CameraTracking("lobby", rules)
    for r in recs:
        tracking.take(r)
    tracking.finish()
    kept = tracking.take_kept()
    assert kept and tracking.take_kept() == []
    assert [uri for _, uri in kept] == sorted({uri for _, uri in kept}, key=[r["uri"] for r in recs].index)  # in order, once
    first = CameraTracking("lobby", rules)
    for r in recs[:25]:
        first.take(r)
    restored = CameraTracking.from_state("lobby", rules, json.loads(json.dumps(first.to_state())))
    for r in recs[25:]:
        restored.take(r)
    restored.finish()
    assert first.take_kept() + restored.take_kept() == kept
    untracked = CameraTracking("lobby", RULES)  # clips off
    for r in recs:
        untracked.take(r)
    assert untracked.take_kept() == []
