"""S3 backend through the `minio` client: MinIO or any S3-compatible store on a cluster.

The client is `camerafleet.s3_client`'s: credentials come only from the environment (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, set from a Kubernetes Secret), never from the manifest. S3 lifecycle rules count
in whole days, so a day-granular rule is the backstop and producers sweep expired frames of their
cameras at the configured TTL.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from minio.commonconfig import ENABLED, CopySource, Filter
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from camerafleet.api.manifest import SHARED_BUCKET_HINT
from camerafleet.api.outcomes import Reason
from camerafleet.bucket.base import BucketConfigError, BucketError, FrameBucket
from camerafleet.s3_client import NETWORK_ERRORS, S3ConfigError, s3_client


@contextmanager
def _s3_errors(doing: str, frame: str | None = None) -> Iterator[None]:
    """S3's and the network's errors as the BucketError the caller counts: `frame`'s object missing (expired or
    never written) is FRAME_MISSING, anything else BUCKET_UNAVAILABLE; `doing` says what was asked."""
    try:
        yield
    except S3Error as err:
        if frame is not None and err.code in ("NoSuchKey", "NoSuchBucket"):
            raise BucketError(Reason.FRAME_MISSING, f"frame {frame} is not in the bucket (expired or never written)") from None
        raise BucketError(Reason.BUCKET_UNAVAILABLE, f"S3 refused {doing}: {err.code}: {err.message}") from None
    except NETWORK_ERRORS as err:
        raise BucketError(Reason.BUCKET_UNAVAILABLE, f"S3 endpoint unreachable {doing}: {type(err).__name__}") from None


class S3Bucket(FrameBucket):
    def __init__(self, uri: str, *, endpoint: str | None, region: str | None, max_frame_bytes: int):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BucketConfigError(f"S3 bucket URI {uri!r} must look like s3://bucket/optional/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if not self.prefix:  # the manifest refuses it too (BucketSpec); a URI built in code is checked here
            raise BucketConfigError(f"S3 bucket URI {uri!r} has no prefix: {SHARED_BUCKET_HINT}")
        super().__init__(f"s3://{self.bucket}/{self.prefix}", max_frame_bytes)
        try:
            self.client = s3_client(endpoint, region)
        except S3ConfigError as err:
            raise BucketConfigError(f"bucket {uri}: {err}") from None

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    @property
    def rule_id(self) -> str:
        """The fleet's lifecycle rule, named by its prefix: fleets sharing a bucket each keep their own."""
        return f"camerafleet {self.prefix}/"[:255]

    def prepare(self, ttl_seconds: int) -> None:
        """The bucket made if missing, and the expiry rule of this prefix merged into its lifecycle: S3 sets the
        whole configuration at once, so the other rules (another fleet's, the owner's) are read and kept."""
        with _s3_errors(f"preparing bucket {self.bucket}"):
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
            ours = Rule(
                ENABLED,
                rule_filter=Filter(prefix=f"{self.prefix}/"),
                rule_id=self.rule_id,
                expiration=Expiration(days=max(1, math.ceil(ttl_seconds / 86400))),
            )
            existing = self.client.get_bucket_lifecycle(self.bucket)  # None when the bucket has no rules
            others = [r for r in (existing.rules if existing else []) if r.rule_id != self.rule_id]
            self.client.set_bucket_lifecycle(self.bucket, LifecycleConfig([*others, ours]))

    def _put(self, key: str, data: bytes) -> None:
        with _s3_errors(f"storing {key}"):  # frames, and the runs' JSON summaries
            content_type = "application/json" if key.endswith(".json") else "image/jpeg"
            self.client.put_object(self.bucket, self._object(key), io.BytesIO(data), len(data), content_type=content_type)

    def _get(self, key: str) -> bytes:
        resp = None
        try:
            with _s3_errors(f"fetching frame {key}", frame=key):
                resp = self.client.get_object(self.bucket, self._object(key))
                size = int(resp.headers.get("Content-Length", "0") or 0)
                if size > self.max_frame_bytes:
                    raise BucketError(Reason.FRAME_TOO_LARGE, f"frame {key} has {size} bytes, more than the limit {self.max_frame_bytes}")
                data = resp.read(self.max_frame_bytes + 1)
            if len(data) > self.max_frame_bytes:
                raise BucketError(Reason.FRAME_TOO_LARGE, f"frame {key} is larger than the limit {self.max_frame_bytes}")
            return data
        finally:
            if resp is not None:
                resp.close()
                resp.release_conn()

    def _copy(self, source: str, key: str) -> None:
        """A server-side copy: the frame's bytes do not pass through this process."""
        with _s3_errors(f"keeping frame {source}", frame=source):
            self.client.copy_object(self.bucket, self._object(key), CopySource(self.bucket, self._object(source)))

    def _keys(self, folder: str, after: str, upto: str, most: int) -> list[str]:
        base = self._object(folder) + "/"
        keys: list[str] = []
        with _s3_errors(f"listing {folder}"):
            for o in self.client.list_objects(self.bucket, prefix=base, start_after=base + after):
                name = o.object_name[len(base) :]
                if name > upto or len(keys) >= most:
                    break
                if "/" not in name:
                    keys.append(f"{folder}/{name}")
        return keys

    def sweep(self, prefix: str, ttl_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=ttl_seconds)
        folder = self._object(prefix.strip("/")) + "/"  # camera 1's folder, not camera 10's too
        with _s3_errors(f"sweeping {prefix}"):
            old = [
                DeleteObject(o.object_name)
                for o in self.client.list_objects(self.bucket, prefix=folder, recursive=True)
                if o.last_modified is not None and o.last_modified < cutoff
            ]
            if not old:
                return 0
            errors = list(self.client.remove_objects(self.bucket, old))
        return len(old) - len(errors)
