"""How tracks and events are judged against a scene's truth (`make bench-events` and the events test): events
matched by kind, direction and time, what is missed or spurious, counts and their errors; and TrackEval's
HOTA, MOTA and IDF1 computed on the truth's own tracks (perfect), on tracks that swap identities, and on
tracks that miss a person."""

from __future__ import annotations

from camerafleet_dev.truth_judge import judge_events, occurrences, track_metrics
from camerafleet_dev.truth_scenes import LOBBY, truth_events

EPOCH = 1_000_000
LOOP_MS = round(LOBBY.seconds * 1000)
SPAN = (EPOCH + 2000, EPOCH + 2000 + LOOP_MS)  # one whole loop, from 2 s into the first


def _event(kind: str, at_s: float, direction: str | None = None, track: int = 1, phase: str = "start") -> dict:
    return {"kind": kind, "direction": direction, "atMs": EPOCH + round(at_s * 1000), "trackId": track, "where": "x", "phase": phase}


def _perfect() -> list[dict]:
    """Every moment of the lobby's truth in SPAN, seen a second late (a crossing at t < 2 s recurs a loop later)."""
    out = []
    for e in truth_events(LOBBY):
        at = e["t"] if e["t"] * 1000 >= 2000 else e["t"] + LOBBY.seconds
        if e["kind"] == "line":
            out.append(_event("line", at + 1, e["direction"], phase="instant"))
        else:
            out.append(_event("zone", at + 1, track=e["id"]))
            out.append(_event("loiter", at + LOBBY.loiter_s + 1, track=e["id"], phase="instant"))
    return out


def test_occurrences_are_the_moments_recurring_each_loop_within_the_span() -> None:
    assert occurrences(1.0, EPOCH, LOOP_MS, *SPAN) == [EPOCH + 1000 + LOOP_MS]
    assert occurrences(5.0, EPOCH, LOOP_MS, SPAN[0], SPAN[0] + 3 * LOOP_MS) == [EPOCH + 5000 + k * LOOP_MS for k in range(3)]


def test_every_moment_seen_in_time_is_matched_and_counted() -> None:
    score = judge_events(LOBBY, truth_events(LOBBY), _perfect(), EPOCH, SPAN, lag_ms=2000)
    assert not score.missed and not score.spurious
    assert score.truth == {"line in": 2, "line out": 2, "zone": 1, "loiter": 1}
    assert all(score.precision(k) == score.recall(k) == 1.0 and score.count_error(k) == 0 for k in score.truth)


def test_a_late_a_wrong_way_and_an_extra_event_are_missed_and_spurious() -> None:
    events = _perfect()
    crossing = next(e for e in events if e["kind"] == "line" and e["direction"] == "in")
    crossing["atMs"] += 5000  # seen too late to be the truth's
    next(e for e in events if e["kind"] == "line" and e["direction"] == "out")["direction"] = "in"  # the wrong way
    events.append(_event("zone", 30.0, track=9))  # nobody entered then
    score = judge_events(LOBBY, truth_events(LOBBY), events, EPOCH, SPAN, lag_ms=2000)
    assert sorted(m[:2] for m in score.missed) == [("line", "in"), ("line", "out")]
    assert sorted(m[:2] for m in score.spurious) == [("line", "in"), ("line", "in"), ("zone", None)]
    assert score.recall("line out") == 0.5 and score.precision("line in") == 1 / 3
    assert score.count_error("line in") == 0.5 and score.count_error("line out") == -0.5
    assert score.brief()["zone"] == {"truth": 1, "seen": 2, "precision": 0.5, "recall": 1.0, "count_error": 1.0, "hidden": 0}


def test_cameras_judged_together_add_their_moments_matches_and_errors() -> None:
    perfect = judge_events(LOBBY, truth_events(LOBBY), _perfect(), EPOCH, SPAN, lag_ms=2000)
    events = _perfect()
    events.remove(next(e for e in events if e["kind"] == "line" and e["direction"] == "in"))
    events.append(_event("zone", 30.0, track=9))
    flawed = judge_events(LOBBY, truth_events(LOBBY), events, EPOCH, SPAN, lag_ms=2000)
    both = perfect + flawed
    assert both.truth == {"line in": 4, "line out": 4, "zone": 2, "loiter": 2}
    assert both.count_error("line in") == -0.25 and both.recall("line in") == 0.75 and both.precision("zone") == 2 / 3
    assert len(both.missed) == 1 and len(both.spurious) == 1 and perfect.truth["line in"] == 2  # the parts are left as they were


def test_a_moment_out_of_sight_may_be_matched_but_is_not_required() -> None:
    known = truth_events(LOBBY)
    inward = [e for e in known if e["kind"] == "line" and e["direction"] == "in"]
    inward[0]["hidden"] = True  # walk 2's crossing, as if it passed behind someone
    seen = [e for e in _perfect() if not (e["kind"] == "line" and e["direction"] == "in" and e["atMs"] > EPOCH + inward[1]["t"] * 1000)]
    score = judge_events(LOBBY, known, seen, EPOCH, SPAN, lag_ms=2000)  # walk 6's crossing, in sight, missed
    assert score.truth["line in"] == 2 and score.hidden["line in"] == 1 and score.recall("line in") == 0.5
    assert score.hidden_matched["line in"] == 1 and not score.spurious
    in_sight = score.in_sight()
    assert in_sight.truth["line in"] == 1 and in_sight.matched["line in"] == 0 and in_sight.count_error("line in") == -1.0
    assert len(in_sight.missed) == 1 and in_sight.truth["line out"] == 2 and in_sight.recall("line out") == 1.0
    seen = [e for e in _perfect() if not (e["kind"] == "line" and e["direction"] == "in" and e["atMs"] < EPOCH + inward[1]["t"] * 1000)]
    score = judge_events(LOBBY, known, seen, EPOCH, SPAN, lag_ms=2000)  # the hidden one missed: not a miss in sight
    assert score.recall("line in") == 0.5 and score.in_sight().recall("line in") == 1.0 and score.in_sight().missed == []
    # A hidden moment is seen no sooner than its face comes in sight: 4 s later, the lag counts from then.
    inward[0]["seen_after"] = 4.0
    late = _perfect()
    next(e for e in late if e["kind"] == "line" and e["direction"] == "in")["atMs"] += 4500
    score = judge_events(LOBBY, known, late, EPOCH, SPAN, lag_ms=2000)
    assert score.hidden_matched["line in"] == 1 and not score.spurious and not score.missed


def test_loitering_of_a_visit_under_way_at_the_start_is_not_judged() -> None:
    visit = next(e for e in truth_events(LOBBY) if e["kind"] == "zone")
    span = (EPOCH + round(visit["t"] * 1000) + 2000, EPOCH + round(visit["t"] * 1000) + LOOP_MS)  # begins after the entry was seen
    seen = [_event("zone", visit["t"] + 1.5, track=4), _event("loiter", visit["t"] + 1.5 + LOBBY.loiter_s, track=4, phase="instant")]
    score = judge_events(LOBBY, truth_events(LOBBY), seen, EPOCH, span, lag_ms=2000)
    assert "loiter" not in score.truth and not any(m[0] == "loiter" for m in score.spurious)


def _truth_tracks(swap_at_s: float | None = None, drop: int | None = None) -> list[tuple[int, list]]:
    """The lobby's true boxes at 5 fps over one loop, as tracks: ids 4 and 5 swapped after `swap_at_s`, walk `drop` left out."""
    frames = []
    for i in range(round(LOBBY.seconds * 5)):
        t = i / 5
        boxes = []
        for w in LOBBY.walks:
            if w.id != drop and (box := w.box(t)) is not None:
                track = {4: 5, 5: 4}.get(w.id, w.id) if swap_at_s is not None and t >= swap_at_s else w.id
                boxes.append((track, box))
        frames.append((EPOCH + round(t * 1000), boxes))
    return frames


def test_the_truths_own_tracks_score_one_and_errors_cost_what_they_should() -> None:
    span = (EPOCH, EPOCH + LOOP_MS - 1)
    perfect = track_metrics(LOBBY, 1.0, EPOCH, _truth_tracks(), span)
    assert perfect["HOTA"] == perfect["MOTA"] == perfect["IDF1"] == 1.0 and perfect["IDSW"] == 0
    assert perfect["true_ids"] == perfect["track_ids"] == len(LOBBY.walks)
    swapped = track_metrics(LOBBY, 1.0, EPOCH, _truth_tracks(swap_at_s=30.0), span)  # 4 and 5 both in view at 30 s
    assert swapped["IDSW"] == 2 and swapped["IDF1"] < 1.0 and swapped["AssA"] < 1.0 and swapped["DetA"] == 1.0
    missing = track_metrics(LOBBY, 1.0, EPOCH, _truth_tracks(drop=4), span)
    assert missing["MOTA"] < 1.0 and missing["DetA"] < 1.0 and missing["IDSW"] == 0
