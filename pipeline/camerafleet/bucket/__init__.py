"""The frame bucket: where producers leave JPEG frames for the inference service to fetch.

One interface, two backends chosen by the URI scheme: a shared local directory (`file://`, a tmpfs on one
node) and S3-compatible object storage (`s3://`, MinIO or any S3). Kafka carries only the frame's URI.
"""

from __future__ import annotations

from camerafleet.api.manifest import BucketSpec
from camerafleet.bucket.base import BucketConfigError, BucketError, FrameBucket, frame_key, summary_key

__all__ = ["BucketConfigError", "BucketError", "FrameBucket", "frame_key", "open_bucket", "summary_key"]


def open_bucket(spec: BucketSpec) -> FrameBucket:
    """The bucket a fleet's (effective) spec names; BucketConfigError when it cannot be used."""
    if spec.uri.startswith("file://"):
        from camerafleet.bucket.local import DirectoryBucket

        return DirectoryBucket(spec.uri, max_frame_bytes=spec.max_frame_bytes)
    if spec.uri.startswith("s3://"):
        from camerafleet.bucket.s3 import S3Bucket

        return S3Bucket(spec.uri, endpoint=spec.endpoint, region=spec.region, max_frame_bytes=spec.max_frame_bytes)
    raise BucketConfigError(f"bucket URI {spec.uri!r} must start with file:// or s3://")
