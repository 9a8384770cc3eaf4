"""Judging tracks and events against a scene's truth (`truth_scenes.py`), over the span of capture times a run
covered.

A file camera plays its clip in a loop on the run's clock, frame k at `epoch + k / fps`, so a capture time
says where in the scene (and in which loop) a frame was; the truth's moments recur once per loop.

Events: each moment of the truth in the span (a crossing with its direction, a zone entry, a loitering) must
be matched by an event of its kind, and direction, seen within `lag_ms` of it; an event seen that matches
nothing is spurious. A visit already under way when the results begin is seen entering late, so its
loitering is not judged. Tracks: the CLEAR (MOTA), identity (IDF1) and HOTA metrics of TrackEval (MIT), on
the frames the camera sampled, against the truth's boxes and identities (one identity per walk and loop).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camerafleet.tracking.association import iou_matrix
from camerafleet_dev.truth_scenes import Scene

Moment = tuple[str, str | None, int]  # kind (line, zone, loiter), direction (lines only), capture time (ms)


@dataclass
class EventScore:
    """Per kind of event (`line in`, `line out`, `zone`, `loiter`): the truth's moments, those matched, and what was
    missed or seen that the truth does not have (times in ms since the run's epoch). Of them, `hidden` moments
    happened out of the camera's sight (`truth_scenes.VISIBLE_SHARE`): `in_sight()` is the score without them."""

    truth: dict[str, int] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    missed: list[Moment] = field(default_factory=list)
    spurious: list[Moment] = field(default_factory=list)
    hidden: dict[str, int] = field(default_factory=dict)
    hidden_matched: dict[str, int] = field(default_factory=dict)
    hidden_missed: list[Moment] = field(default_factory=list)

    def _spurious(self, kind: str) -> int:
        return sum(1 for m in self.spurious if _kind(m) == kind)

    def recall(self, kind: str) -> float | None:
        return self.matched.get(kind, 0) / self.truth[kind] if self.truth.get(kind) else None

    def precision(self, kind: str) -> float | None:
        seen = self.matched.get(kind, 0) + self._spurious(kind)
        return self.matched.get(kind, 0) / seen if seen else None

    def count_error(self, kind: str) -> float | None:
        """(seen - true) / true: what a counter of this kind would be off by over the span."""
        true = self.truth.get(kind, 0)
        return (self.matched.get(kind, 0) + self._spurious(kind) - true) / true if true else None

    def in_sight(self) -> EventScore:
        """The score of the moments in the camera's sight: hidden moments, and the events matched to them, left out."""
        missed = list(self.missed)
        for m in self.hidden_missed:
            missed.remove(m)
        return EventScore(
            truth={k: n - self.hidden.get(k, 0) for k, n in self.truth.items()},
            matched={k: n - self.hidden_matched.get(k, 0) for k, n in self.matched.items()},
            missed=missed,
            spurious=self.spurious,
        )

    def __add__(self, other: EventScore) -> EventScore:
        """Two cameras' scores as one: their moments, matches, misses and spurious events together."""

        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}

        return EventScore(
            truth=add(self.truth, other.truth),
            matched=add(self.matched, other.matched),
            missed=self.missed + other.missed,
            spurious=self.spurious + other.spurious,
            hidden=add(self.hidden, other.hidden),
            hidden_matched=add(self.hidden_matched, other.hidden_matched),
            hidden_missed=self.hidden_missed + other.hidden_missed,
        )

    def brief(self) -> dict[str, dict[str, Any]]:
        return {
            k: {
                "truth": n,
                "seen": self.matched.get(k, 0) + self._spurious(k),
                "precision": _round(self.precision(k)),
                "recall": _round(self.recall(k)),
                "count_error": _round(self.count_error(k)),
                "hidden": self.hidden.get(k, 0),
            }
            for k, n in sorted(self.truth.items())
        }


def _kind(m: Moment) -> str:
    return f"{m[0]} {m[1]}" if m[1] else m[0]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def occurrences(t_s: float, epoch_ms: int, loop_ms: int, start_ms: int, end_ms: int) -> list[int]:
    """When a moment of the scene (seconds into a loop) happened within [start, end] (capture times, ms)."""
    first = epoch_ms + round(t_s * 1000)
    k0 = max(0, -(-(start_ms - first) // loop_ms))
    return [at for k in range(k0, k0 + 1 + (end_ms - start_ms) // loop_ms + 1) if start_ms <= (at := first + k * loop_ms) <= end_ms]


def judge_events(
    scene: Scene,
    truth_events: Sequence[dict[str, Any]],
    events: Iterable[dict[str, Any]],
    epoch_ms: int,
    span: tuple[int, int],
    lag_ms: int,
) -> EventScore:
    """The events of one camera (records of the events log) against the truth over `span` (capture times, ms)."""
    start, end = span
    loop_ms = round(scene.seconds * 1000)
    # Each moment, whether it is hidden, and how late an event may see it: a hidden moment no sooner than its face
    # comes in sight (a loitering whose entry was hidden is timed from then).
    moments: list[tuple[Moment, bool, int]] = []
    for e in truth_events:
        late_ms = lag_ms + round(1000 * (e["seen_after"] or 0.0))
        for at in occurrences(e["t"], epoch_ms, loop_ms, start, end):
            if e["kind"] == "line":
                moments.append((("line", e["direction"], at), e["hidden"], late_ms))
                continue
            moments.append((("zone", None, at), e["hidden"], late_ms))  # loitering is timed from the entry: judged where the entry is
            if e["loiters"] and at + scene.loiter_s * 1000 <= end:
                moments.append((("loiter", None, at + round(scene.loiter_s * 1000)), e["hidden"], late_ms))
    events = list(events)
    entered = {(e["trackId"], e["where"]): e["atMs"] for e in events if e["kind"] == "zone" and e["phase"] == "start"}
    unmatched: list[Moment] = [
        (e["kind"], e.get("direction"), e["atMs"])
        for e in events
        if e["kind"] != "object"
        and e["phase"] in ("start", "instant")
        and not (e["kind"] == "loiter" and entered.get((e["trackId"], e["where"]), start) < start)
    ]
    score = EventScore()
    # The moments in sight take the events first; hidden ones may then match what is left (none is required).
    for m, hidden, late_ms in sorted(moments, key=lambda mh: (mh[1], mh[0][2])):
        kind = _kind(m)
        score.truth[kind] = score.truth.get(kind, 0) + 1
        score.hidden[kind] = score.hidden.get(kind, 0) + hidden
        match = next((u for u in unmatched if u[:2] == m[:2] and -lag_ms <= u[2] - m[2] <= late_ms), None)
        if match is None:
            score.missed.append((m[0], m[1], m[2] - epoch_ms))
            if hidden:
                score.hidden_missed.append(score.missed[-1])
        else:
            unmatched.remove(match)
            score.matched[kind] = score.matched.get(kind, 0) + 1
            score.hidden_matched[kind] = score.hidden_matched.get(kind, 0) + hidden
    score.missed.sort(key=lambda m: m[2])
    # Near the span's ends an event may belong to a moment just outside it: only those well inside count.
    score.spurious = [(k, d, at - epoch_ms) for k, d, at in unmatched if start + lag_ms <= at <= end - lag_ms]
    return score


TrackedBox = tuple[int, tuple[float, float, float, float]]  # track id, box


def track_metrics(
    scene: Scene, scale: float, epoch_ms: int, frames: Sequence[tuple[int, Sequence[TrackedBox]]], span: tuple[int, int]
) -> dict[str, float]:
    """HOTA, MOTA and IDF1 (with their parts) of the tracks on the frames captured within `span`: `frames` is each
    tracked frame's capture time (ms) and the confirmed tracks' boxes on it."""
    with contextlib.redirect_stdout(io.StringIO()):  # it reports, on import, datasets it cannot read (none are used here)
        from trackeval.metrics import CLEAR, HOTA, Identity

    loop_ms = round(scene.seconds * 1000)
    gt_ids: dict[tuple[int, int], int] = {}
    tr_ids: dict[int, int] = {}
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for capture_ms, tracked in frames:
        if not span[0] <= capture_ms <= span[1]:
            continue
        loop, into = divmod(capture_ms - epoch_ms, loop_ms)
        truth = [(gt_ids.setdefault((loop, w.id), len(gt_ids)), box) for w in scene.walks if (box := w.box(into / 1000, scale))]
        data["gt_ids"].append(np.array([i for i, _ in truth], dtype=int))
        data["tracker_ids"].append(np.array([tr_ids.setdefault(t, len(tr_ids)) for t, _ in tracked], dtype=int))
        a, b = np.array([box for _, box in truth]).reshape(-1, 4), np.array([box for _, box in tracked]).reshape(-1, 4)
        data["similarity_scores"].append(iou_matrix(a, b) if len(a) and len(b) else np.zeros((len(a), len(b))))
    data.update(
        num_timesteps=len(data["gt_ids"]),
        num_gt_ids=len(gt_ids),
        num_tracker_ids=len(tr_ids),
        num_gt_dets=sum(len(x) for x in data["gt_ids"]),
        num_tracker_dets=sum(len(x) for x in data["tracker_ids"]),
    )
    quiet = {"PRINT_CONFIG": False}  # IoU 0.5 for CLEAR and identity matches, their default; HOTA averages 0.05-0.95
    hota, clear, identity = HOTA(quiet).eval_sequence(data), CLEAR(quiet).eval_sequence(data), Identity(quiet).eval_sequence(data)
    return {
        "HOTA": round(float(np.mean(hota["HOTA"])), 3),
        "DetA": round(float(np.mean(hota["DetA"])), 3),
        "AssA": round(float(np.mean(hota["AssA"])), 3),
        "MOTA": round(float(clear["MOTA"]), 3),
        "IDF1": round(float(identity["IDF1"]), 3),
        "IDSW": int(clear["IDSW"]),
        "frames": data["num_timesteps"],
        "true_boxes": data["num_gt_dets"],
        "true_ids": data["num_gt_ids"],
        "track_ids": data["num_tracker_ids"],
    }
