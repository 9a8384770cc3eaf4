"""S3 backend through the `minio` client: MinIO or any S3-compatible store on a cluster.

Credentials come only from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, set from a
Kubernetes Secret), never from the manifest. S3 lifecycle rules count in whole days, so a day-granular
rule is the backstop and producers sweep expired frames of their cameras at the configured TTL.
"""

from __future__ import annotations

import io
import math
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from camerafleet.bucket.base import BucketError, FrameBucket

_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class S3Bucket(FrameBucket):
    def __init__(self, uri: str, *, endpoint: str | None, region: str | None, max_frame_bytes: int):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BucketError("bad_bucket_uri", f"S3 bucket URI {uri!r} must look like s3://bucket/optional/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        super().__init__(f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}", max_frame_bytes)
        ep = urlparse(endpoint or (f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"))
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise BucketError("bad_bucket_uri", f"S3 endpoint {endpoint!r} must look like http(s)://host:port")
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise BucketError(
                "bucket_unavailable",
                "S3 bucket needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (from a Secret on Kubernetes)",
            )
        http = urllib3.PoolManager(
            num_pools=8,
            maxsize=32,
            # Frames are real-time: a store that has not answered in seconds fails the frame (counted with a
            # reason) rather than stalling its camera. A restarting store may ask for long Retry-After waits.
            timeout=urllib3.Timeout(connect=2, read=5),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504], respect_retry_after_header=False),
        )
        self.client = Minio(ep.netloc, access_key=access, secret_key=secret, secure=ep.scheme == "https", region=region, http_client=http)

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
            raise BucketError("bucket_unavailable", f"cannot prepare bucket {self.bucket}: {err.code}: {err.message}") from None
        except _NETWORK_ERRORS as err:
            raise BucketError("bucket_unavailable", f"S3 endpoint unreachable while preparing bucket {self.bucket}: {err}") from None

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(self.bucket, self._object(key), io.BytesIO(data), len(data), content_type="image/jpeg")
        except S3Error as err:
            raise BucketError("bucket_unavailable", f"cannot store frame {key}: {err.code}") from None
        except _NETWORK_ERRORS as err:
            raise BucketError("bucket_unavailable", f"S3 endpoint unreachable storing frame {key}: {type(err).__name__}") from None

    def _get(self, key: str) -> bytes:
        resp = None
        try:
            resp = self.client.get_object(self.bucket, self._object(key))
            size = int(resp.headers.get("Content-Length", "0") or 0)
            if size > self.max_frame_bytes:
                raise BucketError("frame_too_large", f"frame {key} has {size} bytes, more than the limit {self.max_frame_bytes}")
            data = resp.read(self.max_frame_bytes + 1)
            if len(data) > self.max_frame_bytes:
                raise BucketError("frame_too_large", f"frame {key} is larger than the limit {self.max_frame_bytes}")
            return data
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                raise BucketError("frame_missing", f"frame {key} is not in the bucket (expired or never written)") from None
            raise BucketError("bucket_unavailable", f"cannot fetch frame {key}: {err.code}") from None
        except _NETWORK_ERRORS as err:
            raise BucketError("bucket_unavailable", f"S3 endpoint unreachable fetching frame {key}: {type(err).__name__}") from None
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
        except (S3Error, *_NETWORK_ERRORS) as err:
            raise BucketError("bucket_unavailable", f"cannot sweep {prefix}: {err}") from None
        return len(old) - len(errors)
