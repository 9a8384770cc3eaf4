"""A real Prometheus server (and its promtool) run as a local process.

The dashboard and the alerting rules are only worth shipping if their PromQL returns data from what a
running fleet really exports, so the tests scrape the fleet with a real Prometheus and evaluate them
there; ``promtool`` checks and unit-tests the rules. Both are built once with ``go install`` from the
Go module proxy into the tool cache (like MinIO), with the build tags that leave out every service
discovery but Kubernetes' (a third of the build time, and nothing the tests use). The server keeps
its data in a temporary directory and listens on a free loopback port.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from ._process import LocalServer, ServerStartError, free_port, port_accepts
from .cache import ensure_tool, is_complete, tool_dir
from .gobuild import go_install

PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
#: Prometheus 3.16.0 (its Go module versions are v0.<minor>.<patch>).
PROMETHEUS_VERSION = "v0.316.0"
_TAGS = ("remove_all_sd", "enable_kubernetes_sd")
_GO_HINT = (
    "Building Prometheus needs Go 1.26 or newer: install it from https://go.dev/dl/ "
    "(or your package manager) and put its bin/ directory on PATH."
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prometheus_home() -> Path:
    """The cache directory of the pinned Prometheus (``bin/prometheus``, ``bin/promtool``)."""
    return tool_dir("prometheus", PROMETHEUS_VERSION)


def is_fetched() -> bool:
    return is_complete(prometheus_home())


def fetch_prometheus(out: TextIO | None = None) -> Path:
    """Make sure Prometheus and promtool are built in the tool cache; return the ``bin`` directory.

    The first call builds them (about 10 minutes on 2 cores, with progress on ``out``); concurrent
    callers wait for one build.
    """
    out = sys.stderr if out is None else out
    home = ensure_tool("prometheus", PROMETHEUS_VERSION, lambda staging: _build(staging, out), out=out)
    return home / "bin"


def promtool(out: TextIO | None = None) -> Path:
    return fetch_prometheus(out) / "promtool"


def _build(staging: Path, out: TextIO) -> None:
    go_install(
        staging,
        f"{PROMETHEUS_MODULE}/cmd/prometheus",
        PROMETHEUS_VERSION,
        also=(f"{PROMETHEUS_MODULE}/cmd/promtool",),
        tags=_TAGS,
        name="prometheus",
        go_hint=_GO_HINT,
        out=out,
    )


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"  # Prometheus durations take no decimals


class PrometheusError(RuntimeError):
    """A query the server refused (bad PromQL) or could not answer."""


class PrometheusServer(LocalServer):
    """Prometheus on a free loopback port, scraping ``targets`` and evaluating ``rule_files``.

    ``targets`` maps a job name to ``host:port`` addresses; ``scrape_configs`` are further jobs as
    Prometheus takes them (Kubernetes service discovery, for one). Queries go through the HTTP API, as
    Grafana's do.
    """

    kind = "prometheus"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        targets: Mapping[str, Sequence[str]] | None = None,
        scrape_configs: Sequence[Mapping[str, Any]] = (),
        rule_files: Sequence[Path] = (),
        scrape_interval_s: float = 2.0,
        evaluation_interval_s: float = 2.0,
        startup_timeout_s: float = 60.0,
        out: TextIO | None = None,
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=startup_timeout_s, out=out)
        self.port = free_port()
        self.targets = {job: list(addresses) for job, addresses in (targets or {}).items()}
        self.scrape_configs = [dict(c) for c in scrape_configs]
        self.rule_files = [Path(p).absolute() for p in rule_files]
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self._bin: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    @property
    def config_path(self) -> Path:
        return self.data_dir / "prometheus.yml"

    def _config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": _duration(self.scrape_interval_s), "evaluation_interval": _duration(self.evaluation_interval_s)},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "scrape_timeout": _duration(self.scrape_interval_s), "static_configs": [{"targets": addresses}]}
                for job, addresses in self.targets.items()
            ]
            + self.scrape_configs,
        }

    def _prepare(self) -> None:
        self._bin = fetch_prometheus(out=self._out)
        if not os.access(self._bin / "prometheus", os.X_OK):
            raise ServerStartError(f"the Prometheus tool cache {prometheus_home()} is damaged: delete it and run 'make tools-prometheus'")
        self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        assert self._bin is not None
        argv = [
            str(self._bin / "prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        return argv, dict(os.environ)

    def _ready(self) -> bool:
        if not port_accepts(self.port):
            return False
        try:
            with _NO_PROXY.open(f"{self.url}/-/ready", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # -- the HTTP API -----------------------------------------------------------------------------

    def api(self, path: str, **params: str | float) -> Any:
        """GET ``/api/v1/<path>``; return its ``data`` or raise PrometheusError with the server's error."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        try:
            with _NO_PROXY.open(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at the current time: the result vector."""
        return list(self.api("query", query=expr)["result"])

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, Any]]:
        """A range query, as a Grafana time-series panel makes it: one matrix series per label set."""
        return list(self.api("query_range", query=expr, start=start_s, end=end_s, step=step_s)["result"])

    def wait_for_targets_up(self, timeout_s: float) -> None:
        """Until every configured target has been scraped successfully once."""
        deadline = time.monotonic() + timeout_s
        while True:
            active = self.api("targets")["activeTargets"]
            wanted = sum(len(a) for a in self.targets.values())
            down = [
                f"{t['labels'].get('job')} {t['scrapeUrl']}: {t.get('lastError') or t['health']}" for t in active if t["health"] != "up"
            ]
            if len(active) == wanted and not down:
                return
            if time.monotonic() > deadline:
                raise PrometheusError(f"targets not up after {timeout_s:.0f} s: {down or active}")
            time.sleep(1)


__all__ = ["PROMETHEUS_VERSION", "PrometheusError", "PrometheusServer", "fetch_prometheus", "is_fetched", "prometheus_home", "promtool"]
