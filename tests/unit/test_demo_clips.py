"""The generated demo clips decode with the requested size, rate and length, move, and are reproducible."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from camerafleet_dev import clips as clips_module
from camerafleet_dev.clips import Container, main, write_demo_clips

WIDTH, HEIGHT, FPS, SECONDS = 320, 180, 15, 1.0


def _decode(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of the clip at `path` and its frame rate."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_demo_clips(tmp_path_factory.mktemp("clips"), seconds=SECONDS, width=WIDTH, height=HEIGHT, fps=FPS)


def test_both_cameras_are_written(clips: list[Path]) -> None:
    assert [path.stem for path in clips] == ["camera_1", "camera_2"]
    assert all(path.suffix in {".mp4", ".avi"} and path.stat().st_size > 0 for path in clips)
    assert not list(clips[0].parent.glob(".*partial*")), "temporary files are left behind"


@pytest.mark.parametrize("camera", [0, 1])
def test_clip_decodes_with_the_requested_format(clips: list[Path], camera: int) -> None:
    frames, fps = _decode(clips[camera])
    assert len(frames) == round(SECONDS * FPS)
    assert fps == pytest.approx(FPS)
    assert {frame.shape for frame in frames} == {(HEIGHT, WIDTH, 3)}


@pytest.mark.parametrize("camera", [0, 1])
def test_clip_is_not_constant(clips: list[Path], camera: int) -> None:
    frames, _ = _decode(clips[camera])
    first, middle = frames[0].astype(np.int16), frames[len(frames) // 2].astype(np.int16)
    assert float(np.abs(middle - first).mean()) > 5.0, "the camera does not move"
    assert float(frames[0].std()) > 20.0, "the frame has no content"


def test_existing_matching_clips_are_kept_unless_forced(clips: list[Path]) -> None:
    mtimes = [path.stat().st_mtime_ns for path in clips]
    again = write_demo_clips(clips[0].parent, seconds=SECONDS, width=WIDTH, height=HEIGHT, fps=FPS)
    assert again == clips
    assert [path.stat().st_mtime_ns for path in clips] == mtimes


def test_mismatching_or_forced_clips_are_rewritten(tmp_path: Path) -> None:
    paths = write_demo_clips(tmp_path, seconds=0.5, width=WIDTH, height=HEIGHT, fps=FPS)
    mtimes = [path.stat().st_mtime_ns for path in paths]
    longer = write_demo_clips(tmp_path, seconds=1.0, width=WIDTH, height=HEIGHT, fps=FPS)
    assert [len(_decode(path)[0]) for path in longer] == [FPS, FPS]
    assert all(path.stat().st_mtime_ns > mtime for path, mtime in zip(longer, mtimes, strict=True))
    mtimes = [path.stat().st_mtime_ns for path in longer]
    forced = write_demo_clips(tmp_path, seconds=1.0, width=WIDTH, height=HEIGHT, fps=FPS, force=True)
    assert all(path.stat().st_mtime_ns > mtime for path, mtime in zip(forced, mtimes, strict=True))


def test_output_is_deterministic(clips: list[Path], tmp_path: Path) -> None:
    again = write_demo_clips(tmp_path, seconds=SECONDS, width=WIDTH, height=HEIGHT, fps=FPS)
    for first, second in zip(clips, again, strict=True):
        first_frames, _ = _decode(first)
        second_frames, _ = _decode(second)
        assert all(np.array_equal(a, b) for a, b in zip(first_frames, second_frames, strict=True))


def test_falls_back_to_mjpg_avi_when_the_first_codec_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clips_module, "CONTAINERS", (Container("ZZZZ", ".mp4"), Container("MJPG", ".avi")))
    paths = write_demo_clips(tmp_path, seconds=0.4, width=160, height=96, fps=10)
    assert [path.name for path in paths] == ["camera_1.avi", "camera_2.avi"]
    frames, fps = _decode(paths[0])
    assert (len(frames), fps, frames[0].shape) == (4, 10, (96, 160, 3))


@pytest.mark.parametrize(("seconds", "width", "height", "fps"), [(0, 320, 180, 15), (1, 321, 180, 15), (1, 8, 8, 15), (1, 320, 180, 0)])
def test_impossible_parameters_are_refused(tmp_path: Path, seconds: float, width: int, height: int, fps: float) -> None:
    with pytest.raises(ValueError):
        write_demo_clips(tmp_path, seconds=seconds, width=width, height=height, fps=fps)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--seconds", "0.4", "--width", "160", "--height", "96", "--fps", "10"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for camera_id in ("camera_1", "camera_2"):
        assert camera_id in printed
        frames, fps = _decode(next(tmp_path.glob(f"{camera_id}.*")))
        assert (len(frames), fps, frames[0].shape) == (4, 10, (96, 160, 3))
