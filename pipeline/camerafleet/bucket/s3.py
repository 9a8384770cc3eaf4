"""S3 backend through the `minio` client: MinIO or any S3-compatible store on a cluster.

The client is `camerafleet.s3`'s: credentials come only from the environment (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, set from a Kubernetes Secret), never from the manifest. S3 lifecycle rules count
in whole days, so a day-granular rule is the backstop and producers sweep expired frames of their
cameras at the configured TTL.
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from camerafleet.api.outcomes import Reason
from camerafleet.bucket.base import BucketConfigError, BucketError, FrameBucket
from camerafleet.s3 import NETWORK_ERRORS, S3ConfigError, s3_client


class S3Bucket(FrameBucket):
    def __init__(self, uri: str, *, endpoint: str | None, region: str | None, max_frame_bytes: int):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BucketConfigError(f"S3 bucket URI {uri!r} must look like s3://bucket/optional/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        super().__init__(f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}", max_frame_bytes)
        try:
            self.client = s3_client(endpoint, region)
        except S3ConfigError as err:
            raise BucketConfigError(f"bucket {uri}: {err}") from None

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def prepare(self, ttl_seconds: int) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
            rule = Rule(
                ENABLED,
                rule_filter=Filter(prefix=f"{self.prefix}/" if self.prefix else ""),
                rule_id="camerafleet-frame-ttl",
                expiration=Expiration(days=max(1, math.ceil(ttl_seconds / 86400))),
            )
            self.client.set_bucket_lifecycle(self.bucket, LifecycleConfig([rule]))
        except S3Error as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot prepare bucket {self.bucket}: {err.code}: {err.message}") from None
        except NETWORK_ERRORS as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"S3 endpoint unreachable while preparing bucket {self.bucket}: {err}") from None

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(self.bucket, self._object(key), io.BytesIO(data), len(data), content_type="image/jpeg")
        except S3Error as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot store frame {key}: {err.code}") from None
        except NETWORK_ERRORS as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"S3 endpoint unreachable storing frame {key}: {type(err).__name__}") from None

    def _get(self, key: str) -> bytes:
        resp = None
        try:
            resp = self.client.get_object(self.bucket, self._object(key))
            size = int(resp.headers.get("Content-Length", "0") or 0)
            if size > self.max_frame_bytes:
                raise BucketError(Reason.FRAME_TOO_LARGE, f"frame {key} has {size} bytes, more than the limit {self.max_frame_bytes}")
            data = resp.read(self.max_frame_bytes + 1)
            if len(data) > self.max_frame_bytes:
                raise BucketError(Reason.FRAME_TOO_LARGE, f"frame {key} is larger than the limit {self.max_frame_bytes}")
            return data
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                raise BucketError(Reason.FRAME_MISSING, f"frame {key} is not in the bucket (expired or never written)") from None
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot fetch frame {key}: {err.code}") from None
        except NETWORK_ERRORS as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"S3 endpoint unreachable fetching frame {key}: {type(err).__name__}") from None
        finally:
            if resp is not None:
                resp.close()
                resp.release_conn()

    def sweep(self, prefix: str, ttl_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=ttl_seconds)
        try:
            old = [
                DeleteObject(o.object_name)
                for o in self.client.list_objects(self.bucket, prefix=self._object(prefix), recursive=True)
                if o.last_modified is not None and o.last_modified < cutoff
            ]
            if not old:
                return 0
            errors = list(self.client.remove_objects(self.bucket, old))
        except (S3Error, *NETWORK_ERRORS) as err:
            raise BucketError(Reason.BUCKET_UNAVAILABLE, f"cannot sweep {prefix}: {err}") from None
        return len(old) - len(errors)
