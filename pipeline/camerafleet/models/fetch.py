"""Turn a manifest's `modelUri` into a local ONNX file.

Replicas start on whatever node Ray or Kubernetes picks, so model files either lie on a path every
node shares or in S3-compatible storage. An `s3://bucket/key` object is downloaded once per node into
a cache directory and reused while its ETag is unchanged; a plain path is used as it is.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger("camerafleet.models")

DEFAULT_S3_ENDPOINT = "https://s3.amazonaws.com"


class ModelFileError(RuntimeError):
    """A model file that cannot be found or downloaded; the message names the URI and the cause."""


def model_cache_dir() -> Path:
    """Where downloaded models are kept: `$CAMERAFLEET_MODEL_CACHE` or `~/.cache/camerafleet/models`."""
    configured = os.environ.get("CAMERAFLEET_MODEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "camerafleet" / "models"


def resolve_model_uri(uri: str) -> Path:
    """Return a local path holding the model named by `uri` (a local path or `s3://bucket/key`)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if not bucket or not key or key.endswith("/"):
            raise ModelFileError(f"model URI {uri!r} must have the form s3://bucket/key")
        if ".." in Path(key).parts:
            raise ModelFileError(f"model URI {uri!r} contains '..'; the key must not leave the model cache")
        return _download_s3(bucket, key)
    if "://" in uri:
        raise ModelFileError(f"model URI {uri!r} has an unsupported scheme {parsed.scheme!r}; use a local path or s3://bucket/key")
    path = Path(uri).expanduser()
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist (resolved from the working directory {os.getcwd()!r})")
    return path


def _download_s3(bucket: str, key: str) -> Path:
    from minio import Minio
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    endpoint = os.environ.get("CAMERAFLEET_S3_ENDPOINT") or DEFAULT_S3_ENDPOINT
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ModelFileError(
            f"CAMERAFLEET_S3_ENDPOINT={endpoint!r} is not an endpoint URL; expected e.g. http://127.0.0.1:9000 "
            "(the scheme decides whether TLS is used)"
        )
    client = Minio(
        parsed.netloc,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        session_token=os.environ.get("AWS_SESSION_TOKEN"),
        secure=parsed.scheme == "https",
    )
    uri = f"s3://{bucket}/{key}"
    target = model_cache_dir() / bucket / key
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
