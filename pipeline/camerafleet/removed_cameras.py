"""Cameras removed from a running fleet, whose topics the consumers still read until nothing is left on them.

A manifest edit reaches the consumers and the producers separately (on Kubernetes they are two jobs reading
the ConfigMap each on its own; locally the consumers are told first). A consumer that left a removed camera's
topic at once would leave unread both its backlog and what the camera's producer announced until it heard of
the edit: frames with no result and no reason (a 45-minute soak that removed a camera every 10 minutes left 11
such frames of 22,346). So a removed camera's topic stays subscribed, its frames answered like any other, until
this member has been caught up on it (position at the high watermark of every partition it holds) for
`DRAIN_QUIET_S`, or `DRAIN_MOST_S` after the removal, whatever is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DRAIN_QUIET_S = 120.0
"""Longer than a producer can take to hear of an edit: seconds through the API server, about a minute and a half
when it falls back to the mounted ConfigMap (the kubelet's sync period and cache)."""

DRAIN_MOST_S = 900.0
"""A producer that still announces 15 minutes after the removal (one whose manifest is never refreshed) is not
followed for ever: the topic is left, and the frames still unread are said in the log."""


@dataclass
class _Draining:
    camera: str
    removed_at: float
    caught_up_since: float


@dataclass(frozen=True)
class Drained:
    topic: str
    camera: str
    complete: bool  # False: left after DRAIN_MOST_S while still behind


class RemovedCameras:
    """The topics (and cameras) still read after their camera was removed; times are `time.monotonic()`."""

    def __init__(self) -> None:
        self._draining: dict[str, _Draining] = {}

    def edit(self, before: Mapping[str, str], after: Mapping[str, str], now: float) -> None:
        """A manifest edit, as each fleet's topic -> camera before and after it. A camera added back stops draining."""
        for topic in after:
            self._draining.pop(topic, None)
        for topic, camera in before.items():
            if topic not in after and topic not in self._draining:
                self._draining[topic] = _Draining(camera, now, now)

    def unread(self, leftover: Mapping[str, str], now: float) -> None:
        """Topics (topic -> camera) of cameras no longer in the fleet with frames the group never answered, found
        when a consumer starts: the drain state of the member before a restart is gone with it."""
        for topic, camera in leftover.items():
            self._draining.setdefault(topic, _Draining(camera, now, now))

    def cameras(self) -> dict[str, str]:
        """topic -> camera of the cameras still drained."""
        return {topic: d.camera for topic, d in self._draining.items()}

    def settle(self, behind: set[str], now: float) -> list[Drained]:
        """The topics done with, given those this member is still behind on (or does not know its position on)."""
        done: list[Drained] = []
        for topic, d in list(self._draining.items()):
            if topic in behind:
                d.caught_up_since = now
            quiet = now - d.caught_up_since >= DRAIN_QUIET_S
            if quiet or now - d.removed_at >= DRAIN_MOST_S:
                done.append(Drained(topic, d.camera, complete=quiet))
                del self._draining[topic]
        return done
