"""What every camera source is: a `FrameSource` that delivers the frame due at a time, or a `SourceError`
that says what is wrong with the camera; and how a source URL is shown without its secrets."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from camerafleet.api.source_report import DecodeMode, SourceProblem, TimeSource

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames; the producer reconnects with backoff
    (slowly for refused credentials: trying again soon would not help and may lock the account)."""

    def __init__(self, message: str, problem: SourceProblem = SourceProblem.UNREADABLE):
        super().__init__(message)
        self.problem = problem


@dataclass
class DecodeCounts:
    """What a live source received and decoded since the producer last took the counts."""

    packets: int = 0
    decoded: int = 0

    def take(self) -> DecodeCounts:
        taken = DecodeCounts(self.packets, self.decoded)
        self.packets = self.decoded = 0
        return taken


class FrameSource(ABC):
    """A camera. `read_due(t)` blocks until the first frame captured at or after wall-clock time `t`.

    A file or synthetic frame's capture time is its presentation time on the wall clock (so a briefly
    delayed producer still takes every slot, and the delay shows as latency); a live stream's is the
    moment it was grabbed."""

    name: str
    live: bool = False
    """True for a live stream, which must keep reading while it waits; others are read when due."""
    decode_mode: DecodeMode | None = None
    time_source: TimeSource | None = None

    def __init__(self) -> None:
        self.counts = DecodeCounts()

    @abstractmethod
    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        """(capture time in seconds since the Unix epoch, BGR frame); SourceError when the source fails."""

    def close(self) -> None:
        """Release the source."""


def is_stream_url(source: str) -> bool:
    """Any URL but file:// is a stream (rtsp, http MJPEG, srt, ...): read live, never indexed like a file."""
    return bool(_URL.match(source)) and not source.lower().startswith("file://")


_USERINFO = re.compile(r"(?<=://)[^?#]*@")  # up to the last '@' before the query: passwords may hold '@' or '/'
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&;#]*(?:pass|pwd|token|key|secret|auth|sig|cred|user|usr|login)[^=&;#]*=)[^&;#]*")


def redact(url: str) -> str:
    """A source URL safe for logs: user info and credential-like query values replaced by ***.

    Errs on the side of hiding: with an unencoded '@' or '/' in a password, everything before the last
    '@' (ahead of the query) goes."""
    if "://" not in url:
        return url
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("***@", url, count=1))
