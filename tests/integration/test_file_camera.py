"""A video file as a camera, end to end on the real Kafka broker, Ray and Serve (issue 27): sampled at 1 fps, a
30 fps clip with a keyframe every second costs about one decode per frame taken, where decoding every frame would
cost 30, and every frame processed shows what a full decode of the clip shows at its capture time.

Each frame of the clip is one flat grey, a level of its own, so the camera-health model's brightness of a
processed frame tells which frame of the clip it was (decoded levels at least 2 apart; a JPEG round trip moves a
flat grey by well under 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from camerafleet.api.source_report import DecodeMode
from camerafleet.sources.decoding import to_bgr
from tests.fixtures.pipeline import health_model, read_results, run_fleet_for, until_processed, write_fleet

pytestmark = pytest.mark.integration

FPS = 30
FRAMES = 90  # three seconds, a keyframe at 0, 1 and 2 s; the replay loops
TAKEN = 6  # processed frames waited for: two loops of the clip


def level(i: int) -> int:
    return round(5 + 2.8 * i)  # 5 to 254: after H.264's YUV and back, neighbours stay at least 2 apart


def write_clip(path: Path) -> Path:
    """H.264 at 30 fps, a keyframe every 30 frames and no B-frames, as many cameras send."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.gop_size = FPS
        stream.codec_context.max_b_frames = 0
        stream.options = {"crf": "10", "sc_threshold": "0", "keyint_min": str(FPS)}
        for i in range(FRAMES):
            frame = np.full((360, 640, 3), level(i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def fully_decoded_levels(path: Path) -> list[float]:
    """Each frame's mean grey (0.299 R + 0.587 G + 0.114 B, the health model's brightness), decoding every frame in
    order into the pipeline's BGR: what a source that decodes everything sees."""
    with av.open(str(path)) as clip:
        return [float(cv2.cvtColor(to_bgr(f), cv2.COLOR_BGR2GRAY).mean()) for f in clip.decode(video=0)]


def test_a_file_camera_at_1_fps_decodes_one_frame_per_sample_and_takes_the_right_ones(tmp_path, kafka_server, ray_cluster):
    clip = write_clip(tmp_path / "clip.mp4")
    truth = fully_decoded_levels(clip)
    assert len(truth) == FRAMES and min(np.diff(truth)) >= 1.5, f"the clip's frames are not told apart by their grey: {truth}"
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "file-camera",
        kafka_server.bootstrap,
        cameras=[{"id": "clip", "source": str(clip), "inferenceFps": 1}],
        models=[health_model()],
    )
    runner, s = asyncio.run(run_fleet_for(manifest, None, lambda r: until_processed(r, TAKEN)))

    assert s["ledger_balanced"] and s["failed"] == 0, s
    cam = s["per_camera"]["clip"]
    assert cam["decode_mode"] == DecodeMode.KEYFRAMES_ONLY, cam
    # Every frame taken is a keyframe decoded alone; a few more allow for a start inside a group of pictures.
    # Decoding every frame would have cost 30 a frame taken.
    assert cam["sampled"] <= cam["frames_decoded"] <= cam["sampled"] + 3, cam
    processed = [r for r in read_results(runner) if r["outcome"] == "processed"]
    assert len(processed) >= TAKEN, cam
    for r in processed:
        index = round((r["captureTsMs"] - r["epochMs"]) * FPS / 1000) % FRAMES  # the replay's frame at that time
        brightness = r["models"]["health"]["health"]["brightness"]
        assert abs(brightness - truth[index]) < 1, (
            f"frame {r['seq']} at {index} of the clip shows {brightness}, a full decode {truth[index]:.1f}"
        )
        assert index % FPS == 0, f"frame {r['seq']} is frame {index} of the clip, not a keyframe: at 1 fps every slot holds one"
