"""Turn a manifest's `modelUri` into a local ONNX file.

Replicas start on whatever node Ray or Kubernetes picks, so model files either lie on a path every
node shares or in S3-compatible storage. An `s3://bucket/key` object is fetched from the fleet's S3
store (the endpoint and region of `spec.bucket`, the environment's credentials: the same client as the
frames), once per node into a cache directory, and reused while its ETag is unchanged; a plain path is
used as it is.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from minio.error import MinioException
from urllib3.exceptions import HTTPError

from camerafleet.api.manifest import BucketSpec
from camerafleet.api.settings import Settings
from camerafleet.s3_client import S3ConfigError, endpoint_url, s3_client

logger = logging.getLogger("camerafleet.models")


class ModelFileError(RuntimeError):
    """A model file that cannot be found or downloaded; the message names the URI and the cause."""


def resolve_model_uri(uri: str, store: BucketSpec | None = None, settings: Settings | None = None) -> Path:
    """A local path holding the model named by `uri` (a local path, or `s3://bucket/key` fetched from the
    S3 store `store` describes: its endpoint and region)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if not bucket or not key or key.endswith("/"):
            raise ModelFileError(f"model URI {uri!r} must have the form s3://bucket/key")
        if ".." in Path(key).parts:
            raise ModelFileError(f"model URI {uri!r} contains '..'; the key must not leave the model cache")
        return _download_s3(bucket, key, store or BucketSpec(), settings or Settings.from_env())
    if "://" in uri:
        raise ModelFileError(f"model URI {uri!r} has an unsupported scheme {parsed.scheme!r}; use a local path or s3://bucket/key")
    path = Path(uri).expanduser()
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist (resolved from the working directory {os.getcwd()!r})")
    return path


def _download_s3(bucket: str, key: str, store: BucketSpec, settings: Settings) -> Path:
    uri = f"s3://{bucket}/{key}"
    endpoint = endpoint_url(store.endpoint, store.region)
    try:
        client = s3_client(store.endpoint, store.region, settings)
    except S3ConfigError as err:
        raise ModelFileError(f"cannot download model {uri}: {err}") from None
    target = settings.model_cache / bucket / key
    etag_file = target.with_name(target.name + ".etag")
    partial: Path | None = None
    try:
        etag = client.stat_object(bucket, key).etag or ""
        if target.is_file() and etag_file.is_file() and etag_file.read_text() == etag:
            logger.info("model %s: using cached copy %s", uri, target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Download next to the target and rename, so concurrent replicas never read a partial file.
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
            partial = Path(tmp.name)
            response = client.get_object(bucket, key)
            try:
                for chunk in response.stream(1 << 20):
                    tmp.write(chunk)
            finally:
                response.close()
                response.release_conn()
        os.replace(partial, target)
        partial = None
        etag_file.write_text(etag)
    except (MinioException, HTTPError, OSError, ValueError) as err:
        raise ModelFileError(f"cannot download model {uri} from {endpoint}: {err}") from err
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    logger.info("model %s: downloaded from %s to %s", uri, endpoint, target)
    return target
