"""Scenes with known truth for tracks and events: real faces moving along known paths past a fixed camera.

The faces are the photographs that ship inside scikit-image (the astronaut, the cameraman), cut out around
the face and pasted on a background of real textures (brick, gravel), as a fixed camera would see people
walk by; CenterFace finds them as it finds faces in the demo clips. Each person follows a piecewise-linear
path, so the truth is exact and independent of any tracker: every frame's boxes and identities, and the
events the paths make, worked out from the paths themselves (a line is crossed where a path's segment
meets it, an entry is where it meets a zone's edge).

The default scene, `lobby`, has what makes tracking hard at low rates: people crossing a counting line both
ways, two who cross each other right on the line, one who walks up to the line and turns back, one who
passes beyond the line's end, and one who stands at a desk (a zone) long enough to loiter.

    python -m camerafleet_dev.truth_scenes --out DIR [--width 1280 --height 720 --fps 30]

writes `DIR/<scene>.mp4` and `DIR/<scene>.truth.json`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skimage import data as skdata

from camerafleet.api.geometry import Point, inside, segments_intersect, side
from camerafleet_dev.clips import _noise_pair, _to_bgr

# Where CenterFace finds each photograph's face once it is cut out and pasted at 80-90 px wide (x1, y1, x2, y2 in
# the photograph's pixels; measured with the fleet's own face model, scores 0.8-0.9: on the whole 512 px
# photograph it draws a taller box, hair included), and the part of the photograph cut out around it.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Face:
    photo: Callable[[], np.ndarray]
    face: Box
    cut: tuple[int, int, int, int]

    def cutout(self, box: Box) -> Box:
        """Where the cut-out lands (x, y, width, height) when its face lands on `box`; it is pasted with an oval
        edge, the ellipse inscribed in that rectangle."""
        fx1, fy1, fx2, _ = self.face
        s = (box[2] - box[0]) / (fx2 - fx1)
        cx1, cy1, cx2, cy2 = self.cut
        return box[0] - (fx1 - cx1) * s, box[1] - (fy1 - cy1) * s, (cx2 - cx1) * s, (cy2 - cy1) * s


ASTRONAUT = Face(skdata.astronaut, (178.2, 60.6, 273.1, 177.7), (150, 0, 310, 240))
CAMERAMAN = Face(skdata.camera, (200.7, 118.8, 262.1, 196.3), (176, 70, 290, 250))


@dataclass(frozen=True)
class Walk:
    """One person: a face whose box is `width` px wide, its centre at the waypoints (seconds, x, y) in frame
    pixels of the reference 1280x720 frame, linear in between; in view from the first waypoint to the last."""

    id: int
    face: Face
    width: float
    waypoints: tuple[tuple[float, float, float], ...]

    def centre(self, t: float) -> Point | None:
        w = self.waypoints
        if not w[0][0] <= t <= w[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(w):
            if t0 <= t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return (x0 + f * (x1 - x0), y0 + f * (y1 - y0))
        return None

    def box(self, t: float, scale: float = 1.0) -> Box | None:
        c = self.centre(t)
        if c is None:
            return None
        x1, y1, x2, y2 = self.face.face
        h = self.width * (y2 - y1) / (x2 - x1)
        return ((c[0] - self.width / 2) * scale, (c[1] - h / 2) * scale, (c[0] + self.width / 2) * scale, (c[1] + h / 2) * scale)


@dataclass(frozen=True)
class Scene:
    name: str
    seconds: float
    walks: tuple[Walk, ...]
    lines: dict[str, tuple[Point, Point]]  # name -> (a, b): crossing to the right of a -> b (on screen) is "in"
    zones: dict[str, tuple[Point, ...]]
    loiter_s: float = 8.0


REFERENCE = (1280, 720)

LOBBY = Scene(
    name="lobby",
    seconds=48.0,
    walks=(
        Walk(1, ASTRONAUT, 90, ((1.0, 120, 450), (11.0, 1150, 450))),  # crosses the door rightwards: out
        Walk(2, CAMERAMAN, 80, ((4.0, 1180, 560), (14.0, 140, 560))),  # leftwards: in; passes 1 at t 7.6
        Walk(3, ASTRONAUT, 80, ((12.0, 200, 420), (15.5, 560, 420), (17.0, 560, 420), (21.0, 150, 420))),  # up to the door, back
        Walk(4, CAMERAMAN, 90, ((16.0, 1220, 470), (19.0, 980, 220), (35.0, 990, 225), (39.0, 1220, 470))),  # loiters at the desk
        Walk(5, ASTRONAUT, 85, ((24.0, 150, 330), (34.0, 1130, 330))),  # meets 6 on the door: out
        Walk(6, CAMERAMAN, 85, ((24.0, 1130, 345), (34.0, 150, 345))),  # in
        Walk(7, ASTRONAUT, 70, ((36.0, 150, 660), (46.0, 1130, 660))),  # below the door's end: no crossing
    ),
    lines={"door": ((640.0, 60.0), (640.0, 600.0))},
    zones={"desk": ((880.0, 120.0), (1180.0, 120.0), (1180.0, 320.0), (880.0, 320.0))},
)


def plaza(seed: int = 7, seconds: float = 150.0, name: str = "plaza") -> Scene:
    """A busy scene drawn at random (but the same for a seed), for measuring rather than testing: 32 people cross
    the door (half each way, at any height along it, some at a slant, several in view at once, so faces pass and
    cover each other), 6 walk up to it and turn back, 6 pass below its end, and 12 visit a desk or a bench (a zone
    each), half of them long enough to loiter. Everyone is out of view at the loop's seam, so loops do not join."""
    rng = np.random.default_rng(seed)
    door_x, loiter_s = 640.0, 8.0
    desk = ((880.0, 120.0), (1180.0, 120.0), (1180.0, 320.0), (880.0, 320.0))
    bench = ((100.0, 120.0), (400.0, 120.0), (400.0, 320.0), (100.0, 320.0))
    kinds = ["cross"] * 32 + ["turn"] * 6 + ["below"] * 6 + ["visit"] * 12
    rng.shuffle(kinds)
    starts = np.sort(rng.uniform(0.5, seconds - 30.0, len(kinds)))
    walks, visits = [], 0
    for i, (kind, t0) in enumerate(zip(kinds, starts, strict=True), start=1):
        t0 = float(t0)
        width = float(rng.uniform(70, 95))
        speed = float(rng.uniform(90, 150))  # px/s: a person crossing the frame in 7 to 12 s
        left = bool(rng.integers(2))  # where they come in
        x_in, x_far = (130.0, 1150.0) if left else (1150.0, 130.0)
        if kind == "cross":
            y_in, y_out = float(rng.uniform(140, 520)), float(rng.uniform(140, 520))
            points = [(x_in, y_in), (x_far, y_out)]
        elif kind == "turn":
            y = float(rng.uniform(140, 520))
            stop = door_x - (1 if left else -1) * float(rng.uniform(70, 140))
            points = [(x_in, y), (stop, y), (stop, y), (x_in, y + float(rng.uniform(-40, 40)))]
        elif kind == "below":
            y = float(rng.uniform(625, 655))
            points = [(x_in, y), (x_far, y)]
        else:  # a visit: in from the side of its zone, and back out
            zone = desk if not left else bench
            spot = (float(rng.uniform(zone[0][0] + 60, zone[1][0] - 60)), float(rng.uniform(zone[0][1] + 50, zone[2][1] - 50)))
            x_edge = 130.0 if left else 1150.0
            points = [(x_edge, float(rng.uniform(380, 520))), spot, spot, (x_edge, float(rng.uniform(380, 520)))]
        waypoints, t, last = [], t0, points[0]
        for j, pt in enumerate(points):
            if j and pt == last:  # standing short of the door, or at the desk or bench: every other visitor loiters, none near the bound
                t += float(rng.uniform(0.5, 1.5) if kind != "visit" else rng.uniform(12, 16) if visits % 2 else rng.uniform(2, 4))
            elif j:
                t += float(np.hypot(pt[0] - last[0], pt[1] - last[1])) / speed
            waypoints.append((round(t, 2), round(pt[0], 1), round(pt[1], 1)))
            last = pt
        visits += kind == "visit"
        walks.append(Walk(i, ASTRONAUT if i % 2 else CAMERAMAN, round(width, 1), tuple(waypoints)))
    end = max(w.waypoints[-1][0] for w in walks)
    assert end < seconds - 0.5, f"the plaza's last walk ends at {end:.1f} s, past its loop's seam"
    return Scene(name, seconds, tuple(walks), {"door": ((door_x, 80.0), (door_x, 560.0))}, {"desk": desk, "bench": bench}, loiter_s)


PLAZA = plaza()
# The same kind of scene drawn from other seeds (each: 32 crossings, 6 loiterings, 45-52 zone entries), so that a
# rate can be judged on 96 crossings: one miss in 32 is an error of 3%, more than the 2% a counter should keep to.
SCENES = {s.name: s for s in (LOBBY, PLAZA, plaza(8, name="plaza-2"), plaza(9, name="plaza-3"))}


# A face counts as in sight when at least this share of its box is not covered by the cut-outs pasted in front of it
# (CenterFace finds faces half hidden, rarely less). A moment of the truth is hidden when its face is not in sight
# within SIGHT_WINDOW_S of it: before and after a crossing, after an entry (a loitering follows its entry); its
# `seen_after` says how long after it the face first came in sight (None: never, while in view).
VISIBLE_SHARE = 0.5
SIGHT_WINDOW_S = 1.0


def visible_share(scene: Scene, walk: Walk, t: float) -> float:
    """The share of the walk's face box at `t` that no walk drawn in front of it (later in `scene.walks`) covers."""
    box = walk.box(t)
    if box is None:
        return 0.0
    gx, gy = np.meshgrid(np.linspace(box[0], box[2], 9), np.linspace(box[1], box[3], 9))
    covered = np.zeros(gx.shape, bool)
    for other in scene.walks[scene.walks.index(walk) + 1 :]:
        if (front := other.box(t)) is not None:
            x, y, w, h = other.face.cutout(front)
            covered |= ((gx - x - w / 2) / (w / 2)) ** 2 + ((gy - y - h / 2) / (h / 2)) ** 2 <= 1
    return 1.0 - float(covered.mean())


def first_in_sight(scene: Scene, walk: Walk, t0: float, t1: float, step_s: float = 0.1) -> float | None:
    """The first moment of [t0, t1] (sampled every `step_s`) when the walk's face is in sight; None if it never is."""
    return next((float(t) for t in np.arange(t0, t1 + step_s / 2, step_s) if visible_share(scene, walk, float(t)) >= VISIBLE_SHARE), None)


def in_sight(scene: Scene, walk: Walk, t0: float, t1: float) -> bool:
    return first_in_sight(scene, walk, t0, t1) is not None


def _seen_after(scene: Scene, walk: Walk, t: float, until: float) -> float | None:
    """Seconds from `t` until the face is first in sight by `until` (None: never): a camera can tell of a hidden
    moment no sooner."""
    seen = first_in_sight(scene, walk, t, until)
    return None if seen is None else round(seen - t, 2)


def truth_events(scene: Scene, step_s: float = 0.01) -> list[dict[str, Any]]:
    """The events the paths make, from the paths alone (face centres, sampled every `step_s`); each says whether
    it is `hidden` (its face out of sight around it, see VISIBLE_SHARE)."""
    events: list[dict[str, Any]] = []
    for walk in scene.walks:
        t0, t1 = walk.waypoints[0][0], walk.waypoints[-1][0]
        times = np.linspace(t0, t1, round((t1 - t0) / step_s) + 1)
        points = [walk.centre(float(t)) for t in times]
        for name, (a, b) in scene.lines.items():
            last: tuple[int, Point] | None = None  # the last side the centre was on (not on the line), and where
            for t, p in zip(times, points, strict=True):
                assert p is not None
                now = side(p, a, b)
                if now == 0:
                    continue
                if last is not None and last[0] != now and segments_intersect(last[1], p, a, b):
                    at = round(float(t), 2)
                    hidden = not (in_sight(scene, walk, at - SIGHT_WINDOW_S, at) and in_sight(scene, walk, at, at + SIGHT_WINDOW_S))
                    events.append(
                        {
                            "kind": "line",
                            "where": name,
                            "id": walk.id,
                            "direction": "in" if now > 0 else "out",
                            "t": at,
                            "hidden": hidden,
                            "seen_after": _seen_after(scene, walk, at, t1) if hidden else 0.0,
                        }
                    )
                last = (now, p)
        for name, polygon in scene.zones.items():
            inside_since: float | None = None
            for t, p in zip(times, points, strict=True):
                assert p is not None
                if inside(p, polygon) and inside_since is None:
                    inside_since = float(t)
                elif not inside(p, polygon) and inside_since is not None:
                    events.append(_visit(scene, walk, name, inside_since, float(t)))
                    inside_since = None
            if inside_since is not None:
                events.append(_visit(scene, walk, name, inside_since, float(times[-1])))
    return sorted(events, key=lambda e: (e["t"], e["id"]))


def _visit(scene: Scene, walk: Walk, zone: str, enter: float, leave: float) -> dict[str, Any]:
    return {
        "kind": "zone",
        "where": zone,
        "id": walk.id,
        "t": round(enter, 2),
        "until": round(leave, 2),
        "loiters": leave - enter >= scene.loiter_s,
        "hidden": (hidden := not in_sight(scene, walk, enter, min(leave, enter + SIGHT_WINDOW_S))),
        "seen_after": _seen_after(scene, walk, enter, leave) if hidden else 0.0,
    }


def truth(scene: Scene, width: int, height: int, fps: float) -> dict[str, Any]:
    """Everything known about the clip: per frame, the boxes and ids in view; the lines, zones and events (in
    pixels of the clip's size)."""
    scale = width / REFERENCE[0]
    frames = []
    for i in range(round(scene.seconds * fps)):
        t = i / fps
        frames.append([{"id": w.id, "box": [round(v, 1) for v in box]} for w in scene.walks if (box := w.box(t, scale)) is not None])
    return {
        "scene": scene.name,
        "width": width,
        "height": height,
        "fps": fps,
        "lines": {n: [[a[0] * scale, a[1] * scale], [b[0] * scale, b[1] * scale]] for n, (a, b) in scene.lines.items()},
        "zones": {n: [[x * scale, y * scale] for x, y in poly] for n, poly in scene.zones.items()},
        "loiterSeconds": scene.loiter_s,
        "events": truth_events(scene),
        "frames": frames,
    }


class _Renderer:
    def __init__(self, scene: Scene, width: int, height: int, seed: int = 3):
        self.scene, self.width, self.height, self.scale = scene, width, height, width / REFERENCE[0]
        self.background = _background(width, height)
        rng = np.random.default_rng(seed)
        self.noise = [_noise_pair(rng, height, width) for _ in range(4)]
        self.sprites = {id(f): _to_bgr(f.photo())[f.cut[1] : f.cut[3], f.cut[0] : f.cut[2]] for f in (ASTRONAUT, CAMERAMAN)}

    def frame(self, index: int, fps: float) -> np.ndarray:
        frame = self.background.copy()
        t = index / fps
        for walk in self.scene.walks:  # later walks pass in front
            box = walk.box(t, self.scale)
            if box is not None:
                self._paste(frame, walk.face, box)
        brighter, darker = self.noise[index % len(self.noise)]
        cv2.add(frame, brighter, dst=frame)
        cv2.subtract(frame, darker, dst=frame)
        return frame

    def _paste(self, frame: np.ndarray, face: Face, box: Box) -> None:
        """The face's cut-out, scaled so that its face lands on `box`, with a soft oval edge."""
        x, y, width, height = face.cutout(box)
        w, h = round(width), round(height)
        sprite = cv2.resize(self.sprites[id(face)], (w, h), interpolation=cv2.INTER_AREA)
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1.0, -1)
        alpha_mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, w / 30))[..., None]
        x0, y0 = round(x), round(y)  # the sprite's corner in the frame
        left, top, right, bottom = max(0, x0), max(0, y0), min(self.width, x0 + w), min(self.height, y0 + h)  # in view
        if left >= right or top >= bottom:
            return
        region = frame[top:bottom, left:right].astype(np.float32)
        part = sprite[top - y0 : bottom - y0, left - x0 : right - x0].astype(np.float32)
        alpha = alpha_mask[top - y0 : bottom - y0, left - x0 : right - x0]
        frame[top:bottom, left:right] = (alpha * part + (1 - alpha) * region).astype(np.uint8)


def _background(width: int, height: int) -> np.ndarray:
    """Brick above, gravel below, tinted: a wall and a floor."""
    out = np.zeros((height, width, 3), np.uint8)
    for texture, tint, top, bottom in (
        (skdata.brick, (150, 172, 205), 0, int(height * 0.62)),
        (skdata.gravel, (150, 150, 145), int(height * 0.62), height),
    ):
        tex = texture()
        rows = bottom - top
        tiled = np.tile(tex, (-(-rows // tex.shape[0]), -(-width // tex.shape[1])))[:rows, :width]
        out[top:bottom] = (tiled[..., None].astype(np.float32) * (np.asarray(tint, np.float32) / 255)).astype(np.uint8)
    return out


def write_scene(scene: Scene, out_dir: Path, width: int = 1280, height: int = 720, fps: float = 30.0) -> tuple[Path, Path]:
    """The clip (MPEG-4 part 2 in .mp4, as the demo clips) and its truth; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clip, truth_path = out_dir / f"{scene.name}.mp4", out_dir / f"{scene.name}.truth.json"
    renderer = _Renderer(scene, width, height)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {clip} with OpenCV's mp4v encoder")
    try:
        for i in range(round(scene.seconds * fps)):
            writer.write(renderer.frame(i, fps))
    finally:
        writer.release()
    truth_path.write_text(json.dumps(truth(scene, width, height, fps)))
    return clip, truth_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camerafleet_dev.truth_scenes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scene", choices=sorted(SCENES), default="lobby")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    clip, truth_path = write_scene(SCENES[args.scene], args.out, args.width, args.height, args.fps)
    print(f"{clip}\n{truth_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
