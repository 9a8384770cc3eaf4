"""The one S3 client of the pipeline (the `minio` library), for the frame bucket and for model files.

Both take the endpoint and region of the manifest's `spec.bucket` (after environment overrides) and the
credentials of the environment, so a model at `s3://...` is fetched from the same store, the same way,
as the frames. Timeouts are short: frames are real-time, and a store that does not answer in seconds
fails the frame (counted with a reason) rather than stalling its camera.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlparse

import urllib3
from minio import Minio

from camerafleet.api.settings import Settings

AWS_DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class S3ConfigError(ValueError):
    """An endpoint or credentials the client cannot work with; the message says what to set."""


def endpoint_url(endpoint: str | None, region: str | None) -> str:
    """The endpoint to use: the configured one, else AWS's for the region."""
    return endpoint or (f"https://s3.{region}.amazonaws.com" if region else AWS_DEFAULT_ENDPOINT)


def s3_client(endpoint: str | None, region: str | None, settings: Settings | None = None) -> Minio:
    """A client for `endpoint` (http(s)://host[:port]; AWS's endpoint of `region` when empty) with the
    environment's credentials."""
    url = endpoint_url(endpoint, region)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
        raise S3ConfigError(f"S3 endpoint {url!r} must look like http(s)://host:port (the scheme decides whether TLS is used)")
    settings = settings or Settings.from_env()
    credentials = settings.s3_credentials()
    if credentials is None:
        raise S3ConfigError("S3 needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (from a Secret on Kubernetes)")
    access, secret, token = credentials
    http = urllib3.PoolManager(
        num_pools=8,
        maxsize=32,
        timeout=urllib3.Timeout(connect=2, read=5),
        # A restarting store may ask for long Retry-After waits: a real-time frame cannot wait for them.
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504], respect_retry_after_header=False),
        # A private CA as well as the system's (CAMERAFLEET_S3_CA_FILE).
        ssl_context=ssl.create_default_context(cafile=str(settings.s3_ca_file) if settings.s3_ca_file else None),
    )
    return Minio(
        parsed.netloc,
        access_key=access,
        secret_key=secret,
        session_token=token,
        secure=parsed.scheme == "https",
        region=region,
        http_client=http,
    )
