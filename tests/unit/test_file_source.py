"""A video file as a camera: each sample is the right frame of the endless replay, and costs about one decode
when the file's keyframes allow it (issue 27: a clip at 30 fps sampled at 1 fps decoded 30 frames per sample)."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

import camerafleet.sources.files as files
from camerafleet.api.source_report import DecodeMode
from camerafleet.sources import Sampler, SourceError
from camerafleet.sources.files import VideoFileSource
from camerafleet.sources.opening import open_source

FPS = 30
FRAMES = 90  # three seconds: samples cross the file's end and loop
EPOCH = 1_000_000.0  # in the past: nothing waits for the wall clock


_BACKGROUND = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def _marked(i: int) -> np.ndarray:
    """A 64x64 frame whose two marks say its index (i % 16 and i // 16, in steps of 16 grey levels), on a fixed
    texture: the picture changes little from frame to frame, so encoders make keyframes only where told."""
    img = _BACKGROUND.copy()
    img[:16, :16] = (i % 16) * 16 + 8
    img[:16, 16:32] = (i // 16) * 16 + 8
    return img


def _index_of(img: np.ndarray) -> int:
    return int(img[2:14, 2:14].mean() // 16) + 16 * int(img[2:14, 18:30].mean() // 16)


def _clip(path, codec: str, gop: int, b_frames: int = 0) -> str:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = b_frames
        if codec == "libx264":
            stream.options = {"crf": "10", "sc_threshold": "0", "keyint_min": str(gop)}
        else:
            stream.codec_context.qmax = 4
        for i in range(FRAMES):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_marked(i), format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch):
    monkeypatch.setattr(files.time, "sleep", lambda s: None)


@pytest.fixture(params=[("mpeg4", 12, 0), ("libx264", 30, 2)], ids=["mpeg4-gop12", "h264-gop30-bframes"])
def clip(request, tmp_path):
    codec, gop, b = request.param
    return _clip(tmp_path / f"clip-{codec}.mp4", codec, gop, b), gop


@pytest.mark.parametrize("fps", [0.5, 1.0, 2.5, 7.0, 30.0, 60.0])
def test_every_sample_is_its_slots_frame_of_the_endless_replay(clip, fps):
    path, _ = clip
    source = VideoFileSource(path, EPOCH, 1 / fps)
    sampler = Sampler(source.grid.continued(EPOCH, fps) if fps != FPS else source.grid)
    seen = []
    for _ in range(int(fps * 7)):  # past the file's end twice at the lower rates
        due = sampler.next_due()
        t, img = source.read_due(due)
        index = source.grid.slot_of(t)
        assert due - 1e-6 <= t < due + max(1 / fps, 1 / FPS), "a frame outside the slot it was asked for (or its file frame)"
        assert _index_of(img) == index % FRAMES, f"frame {index} of the replay shows frame {_index_of(img)} of the file"
        assert sampler.accept(t) is not None
        seen.append(index)
    assert seen == sorted(set(seen)), "a frame returned twice or out of order"
    assert sampler.skipped_slots == 0 or fps > FPS, "a slot the file had a frame for was skipped"


def test_a_rate_under_the_keyframe_interval_decodes_one_frame_per_sample(clip):
    path, gop = clip
    fps = FPS / gop  # one keyframe in every slot
    source = VideoFileSource(path, EPOCH, 1 / fps)
    samples = 20
    for k in range(samples):
        source.read_due(EPOCH + 10 + k / fps + 0.3 / fps)  # due in mid-slot: the next keyframe is still inside it
    assert source.decode_mode is DecodeMode.KEYFRAMES_ONLY
    assert source.counts.decoded <= samples + 3, f"{source.counts.decoded} frames decoded for {samples} samples"


def test_a_rate_over_the_keyframe_interval_decodes_up_to_the_sampled_frame_only(clip):
    path, gop = clip
    fps = 2 * FPS / gop  # two samples per group of pictures: its first frame and its middle one
    source = VideoFileSource(path, EPOCH, 1 / fps)
    samples = 40
    for k in range(samples):
        source.read_due(EPOCH + 10 + k / fps)
    assert source.decode_mode is DecodeMode.UNTIL_LAST_SAMPLED
    everything = samples * FPS / fps
    # Each group is decoded up to its middle (plus the frames B-frames need), never to its end.
    assert samples < source.counts.decoded < everything * 0.7, (
        f"{source.counts.decoded} decoded for {samples} samples of {everything:.0f} frames"
    )


def test_a_late_producer_jumps_instead_of_decoding_what_it_missed(clip):
    path, gop = clip
    source = VideoFileSource(path, EPOCH, 1.0)
    source.read_due(EPOCH + 10)
    before = source.counts.decoded
    t, img = source.read_due(EPOCH + 1000.5)  # a thousand seconds later
    assert _index_of(img) == source.grid.slot_of(t) % FRAMES
    assert source.counts.decoded - before <= gop + 2


def test_a_file_that_is_not_a_video_names_the_problem(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(SourceError, match="cannot open video file"):
        VideoFileSource(str(text), EPOCH, 1.0)


def test_any_url_but_a_file_is_read_live(tmp_path):
    with pytest.raises(SourceError) as err:
        open_source("srt://127.0.0.1:1/feed", epoch_s=EPOCH, inference_fps=1, stall_timeout_s=1, max_frame_age_s=5, display_name="dock")
    assert "camera stream 'dock'" in str(err.value)
    path = _clip(tmp_path / "a.mp4", "mpeg4", 12)
    assert isinstance(open_source(f"file://{path}", epoch_s=EPOCH, inference_fps=1, stall_timeout_s=1, max_frame_age_s=5), VideoFileSource)
    assert math.isclose(VideoFileSource(path, EPOCH, 1.0).grid.fps, FPS)
