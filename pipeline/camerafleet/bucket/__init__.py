"""The frame bucket: where producers leave JPEG frames for the inference service to fetch.

One interface, two backends chosen by the URI scheme: a shared local directory (`file://`, a tmpfs on one
node) and S3-compatible object storage (`s3://`, MinIO or any S3). Kafka carries only the frame's URI.
"""

from __future__ import annotations

import os

from camerafleet.api.manifest import BucketSpec
from camerafleet.bucket.base import BucketError, FrameBucket, frame_key

__all__ = ["BucketError", "FrameBucket", "frame_key", "open_bucket"]


def open_bucket(spec: BucketSpec) -> FrameBucket:
    """The bucket a fleet's spec names; CAMERAFLEET_BUCKET_URI and CAMERAFLEET_S3_ENDPOINT override it."""
    uri = os.environ.get("CAMERAFLEET_BUCKET_URI") or spec.uri
    if uri.startswith("file://"):
        from camerafleet.bucket.local import DirectoryBucket

        return DirectoryBucket(uri, max_frame_bytes=spec.max_frame_bytes)
    if uri.startswith("s3://"):
        from camerafleet.bucket.s3 import S3Bucket

        endpoint = os.environ.get("CAMERAFLEET_S3_ENDPOINT") or spec.endpoint
        return S3Bucket(uri, endpoint=endpoint, region=spec.region, max_frame_bytes=spec.max_frame_bytes)
    raise BucketError("bad_bucket_uri", f"bucket URI {uri!r} must start with file:// or s3://")
