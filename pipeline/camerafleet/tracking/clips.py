"""Which of a camera's frames to keep for clips: those from a pre-roll before a track is first seen to a post-roll
after the last sighting of any track.

Frames come in capture order (after the reorder buffer), so the decision depends only on the results: the same
results keep the same frames. Frames not (yet) kept wait in a window of the pre-roll, bounded by `RECENT_MOST`
(a camera sampled at 30 fps with a 60 s pre-roll would hold 1,800; the cap keeps its state a few KB).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

RECENT_MOST = 600


@dataclass(frozen=True)
class ClipSettings:
    pre_roll_ms: int = 5000
    post_roll_ms: int = 5000


class ClipFrames:
    def __init__(self, settings: ClipSettings):
        self.settings = settings
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_MOST)  # (capture ms, uri) not kept, in the pre-roll
        self.keep_until_ms = -1  # frames up to this capture time are kept (a post-roll after the last open track)

    def frame(self, capture_ms: int, uri: str, tracking: bool) -> list[tuple[int, str]]:
        """The frames to keep now, given the next frame in capture order and whether any track is open after it."""
        if tracking:
            self.keep_until_ms = capture_ms + self.settings.post_roll_ms
        if capture_ms <= self.keep_until_ms:
            kept = [(ms, u) for ms, u in self.recent if ms >= capture_ms - self.settings.pre_roll_ms]
            self.recent.clear()
            return [*kept, (capture_ms, uri)]
        self.recent.append((capture_ms, uri))
        while self.recent and self.recent[0][0] < capture_ms - self.settings.pre_roll_ms:
            self.recent.popleft()
        return []

    def to_state(self) -> dict[str, Any]:
        return {"recent": [list(f) for f in self.recent], "keep_until_ms": self.keep_until_ms}

    def restore(self, state: dict[str, Any]) -> None:
        self.recent.extend((ms, uri) for ms, uri in state["recent"])
        self.keep_until_ms = state["keep_until_ms"]
