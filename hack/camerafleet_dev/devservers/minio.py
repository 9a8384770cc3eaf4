"""A real MinIO (S3-compatible object store) server run as a local process.

The pipeline stores frames, clips and model files in S3; the tests, the demo and the benchmarks use a
real MinIO server so that the S3 client code runs against the real protocol. MinIO no longer publishes
binaries for every platform we may meet, and there is no Docker engine, so the server is built once
from source with ``go install`` at a pinned commit into the tool cache (see ``cache.py``). It then runs
as a single-drive server on free loopback ports with fresh random root credentials per instance, which
are passed through the environment and never printed or logged.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import string
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._process import (
    LocalServer,
    ServerStartError,
    free_port,
    port_accepts,
)
from .cache import ensure_tool, is_complete, tool_dir
from .gobuild import go_install
from .tls import make_server_certificate

if TYPE_CHECKING:
    from minio import Minio

MINIO_MODULE = "github.com/minio/minio"
#: Pseudo-version of the pinned MinIO commit (2026-02-12, 7aac2a2c5b7c).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

_GO_HINT = (
    "Building the MinIO dev server needs Go 1.24 or newer: install it from https://go.dev/dl/ "
    "(or your package manager) and put its bin/ directory on PATH."
)

# Settings of the server process; anything else MINIO_* in our environment is not passed on, so that
# a developer's own MinIO configuration cannot leak into the tests.
_SERVER_ENV = {
    "MINIO_UPDATE": "off",  # never check for or apply updates
    "MINIO_CALLHOME_ENABLE": "off",  # no diagnostics sent anywhere
}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _trusting(ca: Path) -> urllib.request.OpenerDirector:
    """An opener without proxies that trusts `ca` (a dev server's private CA)."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(ca)))
    )


def minio_home() -> Path:
    """The cache directory of the pinned MinIO (``bin/minio``); it may not be built yet."""
    return tool_dir("minio", MINIO_VERSION)


def minio_binary() -> Path:
    return minio_home() / "bin" / "minio"


def is_fetched() -> bool:
    """Whether the pinned MinIO is already built in the tool cache."""
    return is_complete(minio_home())


def fetch_minio(out: TextIO | None = None) -> Path:
    """Make sure the pinned MinIO server binary is built in the tool cache; return its path.

    The first call builds it with ``go install`` (several minutes on 2 cores, with progress on
    ``out``). Safe to call from several processes at once: one builds, the others wait.
    """
    out = sys.stderr if out is None else out
    home = ensure_tool("minio", MINIO_VERSION, lambda staging: _build(staging, out), out=out)
    return home / "bin" / "minio"


def _build(staging: Path, out: TextIO) -> None:
    go_install(staging, MINIO_MODULE, MINIO_VERSION, name="minio", go_hint=_GO_HINT, out=out)


def _random_token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits  # safe unquoted in shells, make and URLs
    return "".join(secrets.choice(alphabet) for _ in range(length))


class MinioServer(LocalServer):
    """A single-drive MinIO server on free loopback ports with random root credentials.

    >>> with MinioServer() as s3:                # doctest: +SKIP
    ...     client = s3.client()

    ``endpoint`` ("http://127.0.0.1:<port>"), ``access_key`` and ``secret_key`` stay the same across
    ``restart()`` and ``stop()`` / ``start()``; objects live in ``data_dir / "data"``. The secret key
    is kept out of ``repr`` and of the log excerpts in error messages.
    """

    kind = "minio"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        console_port: int | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        startup_timeout_s: float = 60.0,
        detached: bool = False,
        out: TextIO | None = None,
        listen_host: str = "127.0.0.1",
        https: bool = False,
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=startup_timeout_s, detached=detached, out=out)
        #: The address clients use (loopback; a node's address when Pods are the clients, ``cluster.py``).
        self.listen_host = listen_host
        #: With ``https``: the private CA that signed MinIO's certificate (what clients trust), else None.
        self.tls = make_server_certificate(self.data_dir / "certs-made", [listen_host, "localhost"]) if https else None
        self.port = port or free_port()
        self.console_port = console_port or free_port(exclude=[self.port])
        self.access_key = access_key or f"cf{_random_token(14)}"
        self.secret_key = secret_key or _random_token(40)
        if len(self.access_key) < 3 or len(self.secret_key) < 8:
            raise ValueError("MinIO needs an access key of 3+ characters and a secret key of 8+")
        self._binary: Path | None = None

    def __repr__(self) -> str:
        return (
            f"MinioServer(endpoint={self.endpoint!r}, access_key={self.access_key!r}, "
            f"data_dir={str(self.data_dir)!r}, running={self.is_running()})"
        )

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL: ``http(s)://<listen host>:<port>``."""
        return f"{'https' if self.tls else 'http'}://{self.listen_host}:{self.port}"

    @property
    def host(self) -> str:
        """``<listen host>:<port>``, the form the ``minio`` client's ``Minio(...)`` takes."""
        return f"{self.listen_host}:{self.port}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def storage_dir(self) -> Path:
        """The drive MinIO keeps buckets and objects on."""
        return self.data_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.stdout_path  # MinIO logs to stdout/stderr

    def client(self) -> Minio:
        """A ``minio.Minio`` client with the root credentials."""
        from minio import Minio

        if self.tls is None:
            return Minio(self.host, access_key=self.access_key, secret_key=self.secret_key, secure=False)
        import urllib3

        trusting = urllib3.PoolManager(ca_certs=str(self.tls.ca))
        return Minio(self.host, access_key=self.access_key, secret_key=self.secret_key, secure=True, http_client=trusting)

    def _secrets(self) -> Sequence[str]:
        return (self.secret_key,)

    def _prepare(self) -> None:
        self._binary = fetch_minio(out=self._out)
        if not os.access(self._binary, os.X_OK):
            raise ServerStartError(
                f"the MinIO tool cache {minio_home()} is damaged ({self._binary} is missing or not "
                f"executable): delete that directory and run "
                f"'python -m camerafleet_dev.devservers fetch minio'"
            )
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None:  # MinIO's layout: <certs dir>/public.crt and private.key
            certs = self.data_dir / "certs"
            certs.mkdir(exist_ok=True)
            shutil.copyfile(self.tls.cert, certs / "public.crt")
            shutil.copyfile(self.tls.key, certs / "private.key")

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        assert self._binary is not None
        env = {key: value for key, value in os.environ.items() if not key.startswith("MINIO_")}
        env.update(_SERVER_ENV)
        env["MINIO_ROOT_USER"] = self.access_key
        env["MINIO_ROOT_PASSWORD"] = self.secret_key
        argv = [
            str(self._binary),
            "server",
            "--address",
            self.host,
            "--console-address",
            f"127.0.0.1:{self.console_port}",
            *(["--certs-dir", str(self.data_dir / "certs")] if self.tls else []),
            str(self.storage_dir),
        ]
        return argv, env

    def _ready(self) -> bool:
        # "live" answers as soon as the HTTP server is up; "cluster" only once the object layer,
        # bucket metadata and IAM are initialised, i.e. once S3 requests will succeed.
        if not port_accepts(self.port, host=self.listen_host):
            return False
        return all(self._health(path) for path in ("live", "cluster"))

    def _health(self, check: str) -> bool:
        try:
            opener = _NO_PROXY if self.tls is None else _trusting(self.tls.ca)
            with opener.open(f"{self.endpoint}/minio/health/{check}", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


__all__ = ["MINIO_MODULE", "MINIO_VERSION", "MinioServer", "fetch_minio", "is_fetched", "minio_binary", "minio_home"]
