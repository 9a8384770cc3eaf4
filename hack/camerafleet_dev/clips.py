"""Generate the demo camera clips: a virtual surveillance camera over scenes made of real photographs.

No video can be downloaded where CameraFleet is developed, so the demo footage is rendered here. Each
camera looks at a fixed scene (a canvas twice the output size, composed from the photographs that ship
inside scikit-image, on tiled and tinted textures) and moves over it like a PTZ camera: it pans, tilts
and zooms back and forth along cosine paths whose cycles divide the clip, so every clip loops
seamlessly. Each frame gets mild sensor noise and a CCTV overlay (camera id, timestamp, frame counter).

- `camera_1` watches a lobby with a large poster of the astronaut: her face (110-200 px wide in a
  1280x720 frame) is in view in every frame, and the cameraman hangs beside her.
- `camera_2` sweeps a yard: the cameraman is in view for about 45 % of the frames, the rest of the
  sweep shows a rocket, a coffee table and walls, so frames with and without faces both occur.

Rendering is one `cv2.warpAffine` of the canvas and two saturating adds of pre-drawn noise per frame,
so both default clips (12 s, 1280x720, 30 fps) are written in a few seconds. The output is seeded and
therefore the same on every run; existing clips whose metadata match the request are kept unless
`force` is given.

    python -m camerafleet_dev.clips --out DIR [--seconds 12] [--width 1280 --height 720 --fps 30]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

_log = logging.getLogger(__name__)

#: Size of the scene canvas in design units; it is rescaled so that it is twice the output size.
DESIGN_WIDTH, DESIGN_HEIGHT = 2560, 1440
#: Output size the design canvas is drawn for (half the design size).
REFERENCE_WIDTH, REFERENCE_HEIGHT = DESIGN_WIDTH // 2, DESIGN_HEIGHT // 2

_NOISE_SIGMA = 3.5
_NOISE_BANK = 6
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Container:
    """A codec and the file extension of the container it is written to."""

    fourcc: str
    extension: str


#: Containers tried in order: MPEG-4 part 2 in .mp4, and Motion JPEG in .avi where mp4v is missing.
CONTAINERS: tuple[Container, ...] = (Container("mp4v", ".mp4"), Container("MJPG", ".avi"))


@dataclass(frozen=True)
class TextureBand:
    """A horizontal band of the canvas filled with a tiled, tinted greyscale texture."""

    texture: Callable[[], np.ndarray]
    tint_bgr: tuple[int, int, int]
    top: int
    bottom: int
    scale: float = 1.5


@dataclass(frozen=True)
class Photo:
    """A photograph hung on the canvas in a dark frame; `x`, `y`, `width` in design units."""

    image: Callable[[], np.ndarray]
    x: int
    y: int
    width: int
    border: int = 14


@dataclass(frozen=True)
class Sweep:
    """One axis of the camera motion: a cosine between `low` and `high` with a nominal period.

    The period is rounded so that a whole number of cycles fits the clip, which makes it loop.
    """

    low: float
    high: float
    period_s: float
    phase: float = 0.0

    def at(self, t: float, duration_s: float) -> float:
        """Value at `t` in [0, 1), the fraction of a clip of `duration_s` seconds that has played."""
        cycles = max(1, round(duration_s / self.period_s))
        wave = (1.0 - math.cos(2.0 * math.pi * (cycles * t + self.phase))) / 2.0
        return self.low + (self.high - self.low) * wave


@dataclass(frozen=True)
class DemoCamera:
    """A demo camera: the scene it watches and how it moves over it.

    `zoom` is the view width as a fraction of the widest view that fits the canvas; `pan` and `tilt`
    place the view within the canvas (0: left/top edge, 1: right/bottom edge).
    """

    camera_id: str
    seed: int
    start: datetime
    bands: tuple[TextureBand, ...]
    photos: tuple[Photo, ...]
    zoom: Sweep
    pan: Sweep
    tilt: Sweep


DEMO_CAMERAS: tuple[DemoCamera, ...] = (
    DemoCamera(
        camera_id="camera_1",
        seed=1,
        start=datetime(2024, 5, 17, 8, 30, 0),
        bands=(
            TextureBand(skdata.brick, (150, 172, 205), 0, 1190),
            TextureBand(skdata.gravel, (150, 150, 145), 1190, DESIGN_HEIGHT),
        ),
        photos=(
            Photo(skdata.camera, x=90, y=250, width=560),
            Photo(skdata.astronaut, x=760, y=110, width=1150),
            Photo(skdata.chelsea, x=1990, y=170, width=500),
            Photo(skdata.coffee, x=2000, y=760, width=480),
        ),
        zoom=Sweep(0.55, 0.85, period_s=6.0),
        pan=Sweep(0.2, 0.8, period_s=12.0),
        tilt=Sweep(0.1, 0.4, period_s=12.0, phase=0.25),
    ),
    DemoCamera(
        camera_id="camera_2",
        seed=2,
        start=datetime(2024, 5, 17, 8, 30, 4),
        bands=(
            TextureBand(skdata.brick, (175, 165, 160), 0, 760),
            TextureBand(skdata.gravel, (135, 150, 160), 760, DESIGN_HEIGHT),
        ),
        photos=(
            Photo(skdata.camera, x=40, y=120, width=1000),
            Photo(skdata.rocket, x=1480, y=130, width=900),
            Photo(skdata.coffee, x=1640, y=860, width=700),
        ),
        zoom=Sweep(0.5, 0.6, period_s=12.0, phase=0.5),
        pan=Sweep(0.0, 1.0, period_s=12.0),
        tilt=Sweep(0.2, 0.5, period_s=6.0),
    ),
)


@dataclass(frozen=True)
class ClipSpec:
    """What a clip must be: size in pixels, frame rate and frame count."""

    width: int
    height: int
    fps: float
    frames: int

    @property
    def duration_s(self) -> float:
        """Length of the clip in seconds."""
        return self.frames / self.fps


def write_demo_clips(
    out_dir: Path,
    seconds: float = 12,
    width: int = 1280,
    height: int = 720,
    fps: float = 30,
    force: bool = False,
) -> list[Path]:
    """Write (or keep) the demo clips `camera_1` and `camera_2` in `out_dir` and return their paths.

    A clip already there whose frame count, frame rate and size match is kept unless `force` is true.
    Clips are mp4v in .mp4; where OpenCV cannot write mp4v they are Motion JPEG in .avi (logged as a
    warning). Raises `ValueError` for impossible parameters and `RuntimeError` when a written clip
    does not read back as requested.
    """
    if not (seconds > 0 and fps > 0):
        raise ValueError(f"seconds and fps must be positive, got seconds={seconds}, fps={fps}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and at least 16, got {width}x{height}")
    spec = ClipSpec(width=width, height=height, fps=float(fps), frames=max(1, round(seconds * fps)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for camera in DEMO_CAMERAS:
        existing = None if force else _matching_clip(out_dir, camera.camera_id, spec)
        if existing is not None:
            _log.info("%s: kept, it already matches (%s)", existing, _describe(spec))
            paths.append(existing)
        else:
            paths.append(_write_clip(camera, out_dir, spec))
    return paths


def write_demo_frames(
    out_dir: Path, camera_id: str = "camera_1", seconds: float = 6, width: int = 1920, height: int = 1080, fps: float = 30
) -> Path:
    """Write one demo camera's frames as numbered JPEGs (what the test IP cameras of
    ``devservers/camera.py`` play in a loop) and return the directory; a complete set is kept."""
    camera = next(c for c in DEMO_CAMERAS if c.camera_id == camera_id)
    spec = ClipSpec(width=width, height=height, fps=float(fps), frames=max(1, round(seconds * fps)))
    target = Path(out_dir) / f"{camera_id}-{width}x{height}-{spec.frames}f"
    if (target / "complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    renderer = _Renderer(camera, spec)
    for index in range(spec.frames):
        ok, jpeg = cv2.imencode(".jpg", renderer.frame(index), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError(f"cannot encode frame {index} of {camera_id}")
        (target / f"{index:05d}.jpg").write_bytes(jpeg.tobytes())
    (target / "complete").touch()
    _log.info("%s: %s as JPEG frames", target, _describe(spec))
    return target


def _describe(spec: ClipSpec) -> str:
    return f"{spec.frames} frames, {spec.width}x{spec.height} @ {spec.fps:g} fps"


def _matching_clip(out_dir: Path, camera_id: str, spec: ClipSpec) -> Path | None:
    """The existing clip of `camera_id` in `out_dir` that matches `spec`, if there is one."""
    for container in CONTAINERS:
        path = out_dir / f"{camera_id}{container.extension}"
        if path.is_file() and _clip_mismatch(path, spec) is None:
            return path
    return None


def _clip_mismatch(path: Path, spec: ClipSpec) -> str | None:
    """Why the clip at `path` does not match `spec`, or None when it does and its first frame decodes."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return "it cannot be opened"
        found = ClipSpec(
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=capture.get(cv2.CAP_PROP_FPS),
            frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
        if (found.width, found.height, found.frames) != (spec.width, spec.height, spec.frames) or not math.isclose(
            found.fps, spec.fps, rel_tol=1e-3
        ):
            return f"it has {_describe(found)}, not {_describe(spec)}"
        ok, frame = capture.read()
        if not ok or frame.shape != (spec.height, spec.width, 3):
            return "its first frame does not decode"
        return None
    finally:
        capture.release()


def _open_writer(out_dir: Path, camera_id: str, spec: ClipSpec) -> tuple[cv2.VideoWriter, Path, Path]:
    """Open a writer on a temporary file; returns it with that file and the clip's final path."""
    for container in CONTAINERS:
        partial = out_dir / f".{camera_id}.partial{container.extension}"
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*container.fourcc), spec.fps, (spec.width, spec.height))
        if writer.isOpened():
            if container is not CONTAINERS[0]:
                _log.warning(
                    "%s: OpenCV cannot write %s here, writing %s%s instead",
                    camera_id,
                    CONTAINERS[0].fourcc,
                    container.fourcc,
                    container.extension,
                )
            return writer, partial, out_dir / f"{camera_id}{container.extension}"
        writer.release()
        partial.unlink(missing_ok=True)
    raise RuntimeError(f"OpenCV can write none of {', '.join(c.fourcc for c in CONTAINERS)} in {out_dir}")


def _write_clip(camera: DemoCamera, out_dir: Path, spec: ClipSpec) -> Path:
    """Render and write one camera's clip, verify that it reads back, and move it into place."""
    started = time.perf_counter()
    renderer = _Renderer(camera, spec)
    writer, partial, path = _open_writer(out_dir, camera.camera_id, spec)
    frames_per_second = max(1, round(spec.fps))
    try:
        for index in range(spec.frames):
            writer.write(renderer.frame(index))
            if (index + 1) % frames_per_second == 0 or index + 1 == spec.frames:
                _log.info("%s: %.1f/%.1f s written", path.name, (index + 1) / spec.fps, spec.duration_s)
    finally:
        writer.release()
    mismatch = _clip_mismatch(partial, spec)
    if mismatch is not None:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{path.name} does not read back as written: {mismatch}")
    os.replace(partial, path)
    _log.info("%s: %s in %.1f s", path, _describe(spec), time.perf_counter() - started)
    return path


def _to_bgr(image: np.ndarray) -> np.ndarray:
    """A scikit-image photograph (RGB or greyscale) as an 8-bit BGR image."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def build_canvas(camera: DemoCamera) -> np.ndarray:
    """The scene `camera` watches, as a BGR image of the design size."""
    canvas = np.zeros((DESIGN_HEIGHT, DESIGN_WIDTH, 3), np.uint8)
    for band in camera.bands:
        texture = band.texture()
        texture = cv2.resize(texture, None, fx=band.scale, fy=band.scale, interpolation=cv2.INTER_CUBIC)
        rows, cols = band.bottom - band.top, DESIGN_WIDTH
        tiled = np.tile(texture, (-(-rows // texture.shape[0]), -(-cols // texture.shape[1])))[:rows, :cols]
        tint = np.asarray(band.tint_bgr, np.float32) / 255.0
        canvas[band.top : band.bottom] = (tiled[..., None].astype(np.float32) * tint).astype(np.uint8)
    for photo in camera.photos:
        image = _to_bgr(photo.image())
        height = round(image.shape[0] * photo.width / image.shape[1])
        image = cv2.resize(image, (photo.width, height), interpolation=cv2.INTER_CUBIC)
        b = photo.border
        frame_corners = (photo.x - b, photo.y - b), (photo.x + photo.width + b, photo.y + height + b)
        cv2.rectangle(canvas, *frame_corners, (30, 30, 30), -1)
        canvas[photo.y : photo.y + height, photo.x : photo.x + photo.width] = image
    return canvas


class _Renderer:
    """Draws the frames of one camera's clip: view of the canvas, sensor noise and CCTV overlay."""

    def __init__(self, camera: DemoCamera, spec: ClipSpec) -> None:
        self._camera = camera
        self._spec = spec
        # The canvas is drawn at twice the output size, whatever the output size is.
        self._scale = max(spec.width / REFERENCE_WIDTH, spec.height / REFERENCE_HEIGHT)
        canvas = build_canvas(camera)
        if self._scale != 1.0:
            size = (round(DESIGN_WIDTH * self._scale), round(DESIGN_HEIGHT * self._scale))
            interpolation = cv2.INTER_AREA if self._scale < 1.0 else cv2.INTER_CUBIC
            canvas = cv2.resize(canvas, size, interpolation=interpolation)
        self._canvas = canvas
        rng = np.random.default_rng(camera.seed)
        self._noise = [_noise_pair(rng, spec.height, spec.width) for _ in range(_NOISE_BANK)]
        # Consecutive frames never reuse a noise pattern, so the noise flickers like a real sensor's.
        self._noise_order = np.cumsum(rng.integers(1, _NOISE_BANK, spec.frames)) % _NOISE_BANK
        self._font_scale = 0.8 * spec.height / REFERENCE_HEIGHT
        self._thickness = max(1, round(2 * spec.height / REFERENCE_HEIGHT))

    def view(self, index: int) -> tuple[float, float, float]:
        """Top-left corner and width of frame `index`'s view, in design units."""
        spec, camera = self._spec, self._camera
        t, aspect = index / spec.frames, spec.width / spec.height
        view_width = min(DESIGN_WIDTH, DESIGN_HEIGHT * aspect) * camera.zoom.at(t, spec.duration_s)
        view_height = view_width / aspect
        left = (DESIGN_WIDTH - view_width) * camera.pan.at(t, spec.duration_s)
        top = (DESIGN_HEIGHT - view_height) * camera.tilt.at(t, spec.duration_s)
        return left, top, view_width

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` of the clip as a BGR image of the output size."""
        spec = self._spec
        left, top, view_width = self.view(index)
        zoom = spec.width / (view_width * self._scale)
        to_frame = np.array([[zoom, 0.0, -left * self._scale * zoom], [0.0, zoom, -top * self._scale * zoom]], np.float64)
        frame = cv2.warpAffine(self._canvas, to_frame, (spec.width, spec.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        brighter, darker = self._noise[self._noise_order[index]]
        cv2.add(frame, brighter, dst=frame)
        cv2.subtract(frame, darker, dst=frame)
        timestamp = self._camera.start + timedelta(seconds=index / spec.fps)
        stamp = f"{timestamp:%Y-%m-%d %H:%M:%S}.{timestamp.microsecond // 1000:03d}"
        self._label(frame, f"{self._camera.camera_id.upper()}  {stamp}", bottom=False)
        self._label(frame, f"FRAME {index:06d}", bottom=True)
        return frame

    def _label(self, frame: np.ndarray, text: str, bottom: bool) -> None:
        """Write `text` in white on a black box at the top-left or bottom-left corner of `frame`."""
        (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, self._font_scale, self._thickness)
        pad = max(2, round(8 * self._spec.height / REFERENCE_HEIGHT))
        box_height = text_height + baseline + 2 * pad
        box_top = self._spec.height - box_height if bottom else 0
        cv2.rectangle(frame, (0, box_top), (text_width + 2 * pad, box_top + box_height), (0, 0, 0), -1)
        origin = (pad, box_top + pad + text_height)
        cv2.putText(frame, text, origin, _FONT, self._font_scale, (255, 255, 255), self._thickness, cv2.LINE_AA)


def _noise_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian sensor noise split into its positive and negative parts, for saturating add/subtract."""
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * _NOISE_SIGMA
    return np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the demo clips and print where they are."""
    parser = argparse.ArgumentParser(prog="python -m camerafleet_dev.clips", description="Generate the CameraFleet demo camera clips.")
    parser.add_argument("--out", type=Path, required=True, help="Directory that receives camera_1 and camera_2.")
    parser.add_argument("--seconds", type=float, default=12.0, help="Length of each clip in seconds (default 12).")
    parser.add_argument("--width", type=int, default=1280, help="Frame width in pixels (default 1280).")
    parser.add_argument("--height", type=int, default=720, help="Frame height in pixels (default 720).")
    parser.add_argument("--fps", type=float, default=30.0, help="Frames per second (default 30).")
    parser.add_argument("--force", action="store_true", help="Rewrite clips even when they already match.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    try:
        paths = write_demo_clips(args.out, args.seconds, args.width, args.height, args.fps, args.force)
    except (ValueError, RuntimeError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"demo clips ready in {time.perf_counter() - started:.1f} s:")
    for path in paths:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
