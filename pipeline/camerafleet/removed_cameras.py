"""Cameras removed from a running fleet, whose topics the consumers still read until nothing is left on them.

A manifest edit reaches the consumers and the producers separately (on Kubernetes they are two jobs reading
the ConfigMap each on its own; locally the consumers are told first). A consumer that left a removed camera's
topic at once would leave unread both its backlog and what the camera's producer announced until it heard of
the edit: frames with no result and no reason (a 45-minute soak that removed a camera every 10 minutes left 11
such frames of 22,346). So a removed camera's topic stays subscribed, its frames answered like any other, until
this member has been caught up on it (position at the high watermark of every partition it holds) for
`DRAIN_QUIET_S`, or `DRAIN_MOST_S` after the removal, whatever is left.

A member knows of a removal from the edit, or, started after it (a restarted actor or Pod), from the group's
committed offsets: a topic outside the fleet on which the group committed short of its end still has frames
to answer. It looks at start and every `UNREAD_LOOK_S` after, since frames can come after a member that had
caught up was replaced; a topic left after `DRAIN_MOST_S` is not taken up again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DRAIN_QUIET_S = 120.0
"""Longer than a producer can take to hear of an edit: seconds through the API server, about a minute and a half
when it falls back to the mounted ConfigMap (the kubelet's sync period and cache)."""

UNREAD_LOOK_S = 60.0
"""How often a member looks for removed cameras' topics with frames the group never answered: within a minute
of a producer's last frames however the members came and went (one request for the group's offsets and one for
the topics' ends)."""

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
        self._given_up: set[str] = set()  # left after DRAIN_MOST_S while still written to

    def edit(self, before: Mapping[str, str], after: Mapping[str, str], now: float) -> None:
        """A manifest edit, as each fleet's topic -> camera before and after it. A camera added back stops draining."""
        for topic in after:
            self._draining.pop(topic, None)
            self._given_up.discard(topic)
        for topic, camera in before.items():
            if topic not in after and topic not in self._draining:
                self._draining[topic] = _Draining(camera, now, now)

    def unread(self, leftover: Mapping[str, str], now: float) -> list[str]:
        """Topics (topic -> camera) of cameras no longer in the fleet with frames the group never answered, found
        when a consumer starts and every UNREAD_LOOK_S: the drain state of the member before a restart is gone with
        it. Returns the topics it starts to drain (none given up before)."""
        new = [t for t in leftover if t not in self._draining and t not in self._given_up]
        for topic in new:
            self._draining[topic] = _Draining(leftover[topic], now, now)
        return new

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
                if not quiet:
                    self._given_up.add(topic)
        return done
