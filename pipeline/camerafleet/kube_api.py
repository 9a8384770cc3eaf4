"""The Kubernetes API as a run in a Pod sees it: its service account's token, the cluster's CA, its own
namespace. A few plain HTTPS calls (read the fleet's ConfigMap, write its pools' status, post an Event),
so a job's driver needs no Kubernetes client library; each call is bounded, since the run's loop waits on it.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT_S = 5.0  # the run's watch loop waits on these calls: a hung API server must not stall it


class KubeApiError(RuntimeError):
    """A call that did not succeed. `code`: the HTTP status when the API server answered, else None."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KubeApi:
    server: str  # https://host:port
    namespace: str
    token_path: Path
    ca_path: Path

    @classmethod
    def in_cluster(cls, environ: dict[str, str] | None = None) -> KubeApi:
        """This Pod's API server (the `kubernetes` Service) and namespace; KubeApiError outside a Pod."""
        env = os.environ if environ is None else environ
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeApiError("not in a Pod (KUBERNETES_SERVICE_HOST is not set)")
        try:
            namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
        except OSError as err:
            raise KubeApiError(f"no service account mounted ({SERVICE_ACCOUNT_DIR}: {err.strerror})") from None
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        return cls(server, namespace, SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt")

    def path(self, api: str, resource: str, name: str = "", sub: str = "") -> str:
        """`/api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]]` in this namespace (`api`: "v1" or "group/version")."""
        root = "/api/v1" if api == "v1" else f"/apis/{api}"
        parts = [root, "namespaces", urllib.parse.quote(self.namespace), resource]
        parts += [urllib.parse.quote(p) for p in (name, sub) if p]
        return "/".join(parts)

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        """One request (the token is read each time: the kubelet rotates projected tokens); the JSON answer."""
        try:
            token = self.token_path.read_text().strip()
            context = ssl.create_default_context(cafile=str(self.ca_path))
            data = None if body is None else json.dumps(body).encode()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            request = urllib.request.Request(self.server + path, data=data, headers=headers, method=method)
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S, context=context) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as err:
            raise KubeApiError(f"HTTP {err.code}: {err.reason}", err.code) from None
        except (OSError, ValueError) as err:  # connection, TLS, timeout, token file, JSON
            raise KubeApiError(str(err)) from None
        return answer if isinstance(answer, dict) else {}
