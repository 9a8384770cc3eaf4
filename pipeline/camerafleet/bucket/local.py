"""Directory backend: frames as files under a shared local directory, typically a tmpfs such as
/dev/shm, the in-memory bucket of one node. Writes are atomic (temp file + rename) so a reader never sees
half a frame; a sweeper deletes files older than the TTL."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from camerafleet.api.outcomes import Reason
from camerafleet.bucket.base import BucketConfigError, BucketError, FrameBucket


class DirectoryBucket(FrameBucket):
    def __init__(self, uri: str, max_frame_bytes: int):
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise BucketConfigError(f"directory bucket URI {uri!r} must look like file:///absolute/path")
        super().__init__(f"file://{parsed.path.rstrip('/')}", max_frame_bytes)
        self.root = Path(unquote(parsed.path)).resolve()

    def prepare(self, ttl_seconds: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path.parent != self.root and self.root not in path.parents:
            raise BucketError(Reason.URI_OUTSIDE_BUCKET, f"frame key {key!r} resolves outside the bucket directory")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
        except OSError as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot write {path}: {err.strerror}") from None
        os.replace(tmp, path)

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > self.max_frame_bytes:
                    raise BucketError(Reason.FRAME_TOO_LARGE, f"frame {key} has {size} bytes, more than the limit {self.max_frame_bytes}")
                return f.read()
        except FileNotFoundError:
            raise BucketError(Reason.FRAME_MISSING, f"frame {key} is not in the bucket (expired or never written)") from None
        except IsADirectoryError:
            raise BucketError(Reason.FRAME_MISSING, f"frame {key} is a directory, not a frame") from None
        except PermissionError as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot read {path}: {err.strerror}") from None

    def _copy(self, source: str, key: str) -> None:
        """A hard link: no bytes copied, and the frame's data stays when the producer's sweep unlinks the frame."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(self._path(source), path)
        except FileExistsError:
            return
        except FileNotFoundError:
            raise BucketError(Reason.FRAME_MISSING, f"frame {source} is not in the bucket (expired or never written)") from None
        except OSError as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot keep {source} as {key}: {err.strerror}") from None

    def _keys(self, folder: str, after: str, upto: str, most: int) -> list[str]:
        try:
            names = sorted(n for n in os.listdir(self._path(folder)) if after < n <= upto and not n.startswith("."))
        except FileNotFoundError:
            return []
        return [f"{folder}/{n}" for n in names[:most]]

    def sweep(self, prefix: str, ttl_seconds: float) -> int:
        folder = self._path(prefix.rstrip("/")) if prefix else self.root
        cutoff = time.time() - ttl_seconds
        deleted = 0
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    deleted += 1
            except FileNotFoundError:
                continue
        return deleted
