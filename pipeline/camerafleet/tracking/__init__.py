"""From detections to tracks: a per-camera, per-model multi-object tracker (`tracker`), its motion model
(`kalman`) and how tracks are matched to detections (`association`)."""

from camerafleet.tracking.tracker import Detection, EndedTrack, Observation, Tracker, TrackerSettings, TrackerUpdate

__all__ = ["Detection", "EndedTrack", "Observation", "Tracker", "TrackerSettings", "TrackerUpdate"]
