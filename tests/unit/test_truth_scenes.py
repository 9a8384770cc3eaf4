"""The scenes with known truth that tracks and events are measured against: the truth follows from the paths
alone, the fleet's face model finds the pasted faces where the truth says they are, and the clip has a frame
for every frame of the truth."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

from camerafleet.api.manifest import ModelSpec
from camerafleet.models.face import FaceModel
from camerafleet.tracking.association import iou_matrix
from camerafleet_dev.truth_scenes import (
    ASTRONAUT,
    CAMERAMAN,
    LOBBY,
    Scene,
    Walk,
    _Renderer,
    truth,
    truth_events,
    visible_share,
    write_scene,
)

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_the_lobby_truth_is_what_its_paths_were_drawn_for() -> None:
    events = truth_events(LOBBY)
    crossings = [(e["id"], e["direction"]) for e in events if e["kind"] == "line"]
    # 3 walks up to the door and back, 7 passes below its end: neither crosses.
    assert crossings == [(1, "out"), (2, "in"), (5, "out"), (6, "in")]
    visits = [e for e in events if e["kind"] == "zone"]
    assert [(v["id"], v["loiters"]) for v in visits] == [(4, True)]
    assert 17 < float(visits[0]["t"]) < 19 and 35 < float(visits[0]["until"]) < 38


def test_the_face_model_finds_every_face_where_the_truth_says() -> None:
    model = FaceModel(ModelSpec(name="faces", type="face", model_uri=str(MODELS / "centerface.onnx")))
    model.load()
    renderer, known = _Renderer(LOBBY, 1280, 720), truth(LOBBY, 1280, 720, 30.0)
    for index in (60, 180, 600, 1200):  # faces apart: each one in full view
        boxes = np.array([t["box"] for t in known["frames"][index]])
        found = np.array([d["box"] for d in model.infer([renderer.frame(index, 30.0)])[0]["detections"]]).reshape(-1, 4)
        assert len(boxes) and (iou_matrix(boxes, found).max(axis=1, initial=0) >= 0.7).all(), (index, boxes, found)


def test_the_clip_has_a_frame_for_every_frame_of_the_truth(tmp_path: Path) -> None:
    clip, truth_path = write_scene(LOBBY, tmp_path, width=320, height=180, fps=2.0)
    known = json.loads(truth_path.read_text())
    with av.open(str(clip)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == len(known["frames"]) == 96
    assert known["lines"]["door"] == [[160.0, 15.0], [160.0, 150.0]]  # scaled to the clip


def test_a_crossing_behind_another_face_is_hidden_and_one_beside_it_is_not() -> None:
    behind = Walk(1, ASTRONAUT, 80, ((0.0, 300, 300), (8.0, 1000, 300)))
    in_front = Walk(2, CAMERAMAN, 90, ((0.0, 310, 305), (8.0, 1010, 305)))  # drawn later: in front, all the way
    beside = Walk(3, ASTRONAUT, 80, ((0.0, 300, 500), (8.0, 1000, 500)))
    scene = Scene("test", 10.0, (behind, in_front, beside), {"door": ((640.0, 60.0), (640.0, 600.0))}, {})
    assert visible_share(scene, behind, 4.0) == 0.0 and visible_share(scene, in_front, 4.0) == visible_share(scene, beside, 4.0) == 1.0
    assert sorted((e["id"], e["hidden"]) for e in truth_events(scene)) == [(1, True), (2, False), (3, False)]
    assert not any(e["hidden"] for e in truth_events(LOBBY)), "the lobby's faces are in sight at every event"
