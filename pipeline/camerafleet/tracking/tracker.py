"""One camera's multi-object tracker for one model's detections: ByteTrack's association, on the clock.

ByteTrack (Zhang et al., ECCV 2022) keeps low-score detections: a person half hidden behind another scores
0.3 and would end its track if dropped, so after matching confident detections to every track, the tracks
left are matched to the low-score ones. What differs here, for cameras sampled at 1-5 fps whose slots can
be shed:

- Time, not frame counts: the Kalman filter predicts over the seconds since a track was last seen, a lost
  track is kept for `max_lost_s` seconds, and the matching buffer grows with the gap (`association`).
- Labels: a detection only continues a track of its own label.
- Determinism: the same sequence of results gives the same tracks and ids (ids count up from 1 per tracker,
  given when a track is confirmed, so a one-frame flicker costs no id), and the whole state is plain data
  (`to_state` / `from_state`), so a camera's tracker can be saved with its results' offset and restored.
- A result no newer than the last one (a redelivery) changes nothing.
- Re-identification: a detection may carry a description of its colours (`models/appearance.py`). A track
  lost longer than the IoU match can bridge is kept for `reid_max_lost_s` and continued by a new detection
  that looks like it, where the track's motion puts it (`_reidentify`): at 5 fps in the events bench, the door
  crossings lost were faces the detector missed for 5-8 s, whose tracks ended before the door.

Why not a library's tracker: supervision's ByteTrack (MIT) steps per call and counts its lost-track buffer
in frames, has no state to save and restore, and brings matplotlib, Pillow, requests and tqdm to the Ray
image; norfair (BSD-3) pins numpy below 2; boxmot is AGPL-3.0.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from camerafleet.api.geometry import Box
from camerafleet.models.appearance import blend, similarity, vector
from camerafleet.tracking.association import assign, buffered, iou_matrix
from camerafleet.tracking.kalman import BoxFilter


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    label: str
    appearance: str | None = None  # models/appearance.py's description, as the result carries it

    @cached_property
    def look(self) -> np.ndarray | None:
        """The description as vectors, decoded once: a tracker update compares a detection in several steps."""
        return None if self.appearance is None else vector(self.appearance)


@dataclass(frozen=True)
class TrackerSettings:
    high_score: float = 0.5  # detections at or above this are matched first and may start tracks
    low_score: float = 0.1  # below this a detection is ignored; between the two it only continues a track
    new_track_score: float = 0.6  # an unmatched detection starts a track at or above this
    first_match: float = 0.2  # least buffered IoU for a confident detection to continue a track
    second_match: float = 0.4  # ... for a low-score one (stricter: it is more likely a false detection)
    tentative_match: float = 0.3  # ... for a detection to confirm a track seen once
    confirm_hits: int = 2  # results a track needs before it gets an id (1: at once)
    max_lost_s: float = 3.0  # a track not seen for this long has ended
    # Matching buffer, as a fraction of the box's larger side per second since the track was last seen: what an
    # object can stray from its predicted box (a person turns or stops within a second), and for a track seen
    # once, whose velocity is unknown, how far it can go (a walking person covers about their height a second,
    # a car its length; twice that leaves room for the box's own jitter).
    buffer_per_s: float = 0.5
    tentative_buffer_per_s: float = 2.0
    max_buffer: float = 1.0
    max_tracks: int = 256  # tracks kept at once; beyond it new detections start none (counted)
    # Re-identification (reid_max_lost_s 0: none). A lost track that has an appearance is kept this long (when
    # longer than max_lost_s); a confident detection that continues no other track continues it when they look
    # alike (mean Bhattacharyya coefficient of their colour bands at least `reid_min_similarity`) and it is where
    # the track's motion puts it, within one box side plus `reid_drift_per_s` sides a second lost. Measured on the
    # events bench's replayed results at 5 fps: a drift of 0.2-0.3 bridges a lost door crossing and takes ID
    # switches from 6 to 4; 0.5 lets passers-by take each other's tracks; 1.0, or the place last seen instead of
    # the predicted one, makes more ID switches than it mends.
    reid_max_lost_s: float = 10.0
    reid_min_similarity: float = 0.8
    reid_drift_per_s: float = 0.3
    # A detection that looks unlike a confirmed track (similarity below this) never continues it by overlap alone:
    # a passer-by who covers someone standing would take their track (the events bench's one false loitering at
    # 5 fps). At 0.6, on the bench's replayed results: HOTA 0.764 -> 0.773 at 5 fps, 0.693 -> 0.711 at 2 fps; from
    # 0.75 it splits tracks whose looks change as they walk (the same face scores 0.74 or less one time in 20).
    appearance_gate: float = 0.6
    appearance_weight: float = 0.2  # of a confident detection's appearance in the track's (a running mean)
    # A detection whose box area differs from a confirmed track's last box by more than this factor, raised to the
    # power (1 + seconds since the track was last seen), never continues it (0: no limit): 1.8 at 5 fps, 2.6 after a
    # second (someone walking towards a camera 5 m away grows 1.9 times a second). A passer-by's first, smaller box
    # half over a standing face took its track (the events bench's one false loitering left at 5 fps); on the
    # bench's replayed results ID switches at 2 fps 14 -> 12, at 5 fps 22 -> 23 over three scenes.
    area_change: float = 1.6


class TrackState(enum.StrEnum):
    TENTATIVE = "tentative"  # seen, not yet confirmed: no id
    TRACKED = "tracked"  # seen in the last result
    LOST = "lost"  # not seen in the last result, kept for max_lost_s


@dataclass
class Track:
    label: str
    filter: BoxFilter
    first_seen: float
    last_seen: float
    score: float
    box: Box  # the last detection's box, as measured
    state: TrackState = TrackState.TENTATIVE
    id: int = 0  # 0 until confirmed
    hits: int = 1
    appearance: np.ndarray | None = None  # running mean of its confident detections' descriptions

    def predicted_box(self, t: float) -> np.ndarray:
        return self.filter.predicted(t - self.last_seen).box()

    def to_state(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "filter": self.filter.to_state(),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "score": self.score,
            "box": list(self.box),
            "state": self.state.value,
            "id": self.id,
            "hits": self.hits,
            "appearance": None if self.appearance is None else [float(v) for v in self.appearance],
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Track:
        return cls(
            label=s["label"],
            filter=BoxFilter.from_state(s["filter"]),
            first_seen=s["first_seen"],
            last_seen=s["last_seen"],
            score=s["score"],
            box=tuple(s["box"]),
            state=TrackState(s["state"]),
            id=s["id"],
            hits=s["hits"],
            appearance=None if s.get("appearance") is None else np.asarray(s["appearance"], np.float64),
        )


@dataclass(frozen=True)
class Sighting:
    t: float  # capture time, seconds
    box: Box


@dataclass(frozen=True)
class Observation:
    """A confirmed track seen in this result: its id, and the detection (its index in the result) that continued it."""

    track_id: int
    detection: int
    label: str
    box: Box
    score: float
    first_seen: float
    # Where the track was last seen before this result, when this result confirmed it: where it was
    # before it had an id. A person who steps out from behind another right at a line is confirmed on their
    # second sighting, already across it (the events bench at 5 fps lost such a crossing); at 1 fps the second
    # sighting is a second later.
    before_confirmed: Sighting | None = None


@dataclass(frozen=True)
class EndedTrack:
    track_id: int
    label: str
    first_seen: float
    last_seen: float


@dataclass
class TrackerUpdate:
    observations: list[Observation] = field(default_factory=list)
    ended: list[EndedTrack] = field(default_factory=list)
    ignored: bool = False  # the result was not newer than the last one (a redelivery)
    not_started: int = 0  # detections that would have started a track beyond max_tracks


class Tracker:
    """Tracks of one camera and one model. `update` takes each result's capture time and detections in order."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self.tracks: list[Track] = []
        self.next_id = 1
        self.last_t: float | None = None

    def update(self, t: float, detections: Sequence[Detection]) -> TrackerUpdate:
        s = self.settings
        if self.last_t is not None and t <= self.last_t:
            return TrackerUpdate(ignored=True)
        self.last_t = t
        out = TrackerUpdate()
        dets = detections
        high = [i for i, d in enumerate(dets) if d.score >= s.high_score]
        low = [i for i, d in enumerate(dets) if s.low_score <= d.score < s.high_score]
        matched: dict[int, int] = {}  # id(track) -> detection index

        # 1. Confident detections against every confirmed track, tracked or lost within motion's reach.
        confirmed = [tr for tr in self.tracks if tr.state != TrackState.TENTATIVE]
        near = [tr for tr in confirmed if t - tr.last_seen <= s.max_lost_s]
        tentative = [tr for tr in self.tracks if tr.state == TrackState.TENTATIVE]
        pairs = self._match(near, [dets[i] for i in high], t, s.first_match, rivals=tentative)
        for r, c in pairs:
            matched[id(near[r])] = high[c]
        high_left = [high[c] for c in range(len(high)) if c not in {c for _, c in pairs}]
        # 2. Low-score detections against the tracks seen in the last result that are still unmatched.
        recent = [tr for tr in confirmed if tr.state == TrackState.TRACKED and id(tr) not in matched]
        for r, c in self._match(recent, [dets[i] for i in low], t, s.second_match):
            matched[id(recent[r])] = low[c]
        # 3. Tracks seen once against the confident detections left.
        pairs = self._match(tentative, [dets[i] for i in high_left], t, s.tentative_match)
        for r, c in pairs:
            matched[id(tentative[r])] = high_left[c]
        new = [high_left[c] for c in range(len(high_left)) if c not in {c for _, c in pairs}]
        # 4. Lost tracks against the confident detections still left, by appearance.
        lost = [tr for tr in confirmed if tr.state == TrackState.LOST and id(tr) not in matched and s.reid_max_lost_s > 0]
        for r, c in self._reidentify(lost, [dets[i] for i in new], t):
            matched[id(lost[r])] = new[c]
            lost[r].filter = BoxFilter.start(np.asarray(dets[new[c]].box, dtype=np.float64))  # its motion is stale
        new = [i for i in new if i not in matched.values()]

        kept: list[Track] = []
        for tr in self.tracks:
            i = matched.get(id(tr))
            if i is not None:
                before = Sighting(tr.last_seen, tr.box) if tr.state == TrackState.TENTATIVE else None
                self._continue(tr, dets[i], t)
                if tr.state == TrackState.TRACKED:
                    out.observations.append(Observation(tr.id, i, tr.label, tr.box, tr.score, tr.first_seen, before))
                kept.append(tr)
            elif tr.state == TrackState.TENTATIVE:
                continue  # seen once and not again: a flicker, forgotten
            elif t - tr.last_seen > (s.max_lost_s if tr.appearance is None else max(s.max_lost_s, s.reid_max_lost_s)):
                out.ended.append(EndedTrack(tr.id, tr.label, tr.first_seen, tr.last_seen))
            else:
                tr.state = TrackState.LOST
                kept.append(tr)
        for i in new:
            d = dets[i]
            if d.score < s.new_track_score:
                continue
            if len(kept) >= s.max_tracks:
                out.not_started += 1
                continue
            tr = Track(d.label, BoxFilter.start(np.asarray(d.box, dtype=np.float64)), t, t, d.score, d.box, appearance=_kept(d.look))
            if s.confirm_hits <= 1:
                self._confirm(tr)
                out.observations.append(Observation(tr.id, i, tr.label, tr.box, tr.score, tr.first_seen))
            kept.append(tr)
        self.tracks = kept
        return out

    def _match(
        self, tracks: list[Track], dets: list[Detection], t: float, minimum: float, rivals: Sequence[Track] = ()
    ) -> list[tuple[int, int]]:
        """Pairs (track, detection) by buffered IoU. A lost track does not take a detection that overlaps one of
        `rivals` (tracks seen once) more: a standing person hidden by someone who walks in front would otherwise
        hand their track to the walker, whose first sighting is right beside (the events bench's false loitering)."""
        if not tracks or not dets:
            return []
        sim = self._overlaps(tracks, dets, t)
        s = self.settings
        if s.area_change > 0:
            areas = np.array([_area(d.box) for d in dets])
            for r, tr in enumerate(tracks):
                if tr.state != TrackState.TENTATIVE:
                    ratio = np.abs(np.log(areas / _area(tr.box)))
                    sim[r, ratio > np.log(s.area_change) * (1 + t - tr.last_seen)] = 0.0
        if rivals:
            best_rival = self._overlaps(list(rivals), dets, t).max(axis=0)
            lost = np.array([tr.state == TrackState.LOST for tr in tracks])
            sim[lost[:, None] & (sim < best_rival[None, :])] = 0.0
        if s.appearance_gate > 0:
            looks = [d.look for d in dets]
            for r, tr in enumerate(tracks):
                if tr.appearance is None or tr.state == TrackState.TENTATIVE:
                    continue
                for c, v in enumerate(looks):
                    if v is not None and similarity(tr.appearance, v) < s.appearance_gate:
                        sim[r, c] = 0.0
        return assign(sim, minimum)

    def _overlaps(self, tracks: list[Track], dets: list[Detection], t: float) -> np.ndarray:
        """Buffered IoU of each track's predicted box with each detection (0 across labels)."""
        s = self.settings
        predicted = np.array([tr.predicted_box(t) for tr in tracks])
        rate = np.array([s.tentative_buffer_per_s if tr.state == TrackState.TENTATIVE else s.buffer_per_s for tr in tracks])
        buffer = np.minimum(s.max_buffer, rate * np.array([t - tr.last_seen for tr in tracks]))
        boxes = np.array([d.box for d in dets], dtype=np.float64)
        # Each pair is compared with the track's buffer on both boxes.
        sim = np.zeros((len(tracks), len(dets)))
        for r in range(len(tracks)):
            b = np.full(len(dets), buffer[r])
            sim[r] = iou_matrix(buffered(predicted[r : r + 1], buffer[r : r + 1]), buffered(boxes, b))[0]
        labels_differ = np.array([[tr.label != d.label for d in dets] for tr in tracks])
        sim[labels_differ] = 0.0
        return sim

    def _reidentify(self, tracks: list[Track], dets: list[Detection], t: float) -> list[tuple[int, int]]:
        s = self.settings
        looks = [d.look for d in dets]
        if not tracks or not any(v is not None for v in looks):
            return []
        sim = np.zeros((len(tracks), len(dets)))
        for r, tr in enumerate(tracks):
            if tr.appearance is None:
                continue
            side = max(tr.box[2] - tr.box[0], tr.box[3] - tr.box[1])
            reach = side * (1.0 + s.reid_drift_per_s * (t - tr.last_seen))
            expected = tuple(tr.predicted_box(t))
            for c, (d, v) in enumerate(zip(dets, looks, strict=True)):
                if v is None or d.label != tr.label or _centre_distance(expected, d.box) > reach:
                    continue
                sim[r, c] = similarity(tr.appearance, v)
        return assign(sim, s.reid_min_similarity)

    def _continue(self, tr: Track, d: Detection, t: float) -> None:
        tr.filter = tr.filter.predicted(t - tr.last_seen).updated(np.asarray(d.box, dtype=np.float64))
        tr.last_seen, tr.score, tr.box = t, d.score, d.box
        tr.hits += 1
        v = d.look
        if v is not None and d.score >= self.settings.high_score:
            w = self.settings.appearance_weight
            tr.appearance = _kept(v if tr.appearance is None else blend(tr.appearance, v, w))
        if tr.state == TrackState.TENTATIVE:
            if tr.hits >= self.settings.confirm_hits:
                self._confirm(tr)
        else:
            tr.state = TrackState.TRACKED

    def _confirm(self, tr: Track) -> None:
        tr.state, tr.id = TrackState.TRACKED, self.next_id
        self.next_id += 1

    def finish(self) -> list[EndedTrack]:
        """End every confirmed track (the camera left the fleet, or the run stops)."""
        ended = [EndedTrack(tr.id, tr.label, tr.first_seen, tr.last_seen) for tr in self.tracks if tr.state != TrackState.TENTATIVE]
        self.tracks = []
        return ended

    def to_state(self) -> dict[str, Any]:
        return {"next_id": self.next_id, "last_t": self.last_t, "tracks": [tr.to_state() for tr in self.tracks]}

    @classmethod
    def from_state(cls, state: dict[str, Any], settings: TrackerSettings | None = None) -> Tracker:
        tracker = cls(settings)
        tracker.next_id, tracker.last_t = state["next_id"], state["last_t"]
        tracker.tracks = [Track.from_state(s) for s in state["tracks"]]
        return tracker


def _kept(appearance: np.ndarray | None) -> np.ndarray | None:
    """A track's appearance to 4 decimals: its saved state (72 numbers a track, in every state record of the camera) stays
    short, and a tracker restored from it holds exactly what the running one held."""
    return None if appearance is None else np.round(appearance.astype(np.float64), 4)


def _area(box: Box) -> float:
    return max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))


def _centre_distance(a: Box, b: Box) -> float:
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2))
