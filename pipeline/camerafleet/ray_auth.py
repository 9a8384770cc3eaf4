"""The header that opens a Ray dashboard whose cluster runs with token authentication.

On Kubernetes every Ray cluster of a fleet (its RayService and both RayJobs) shares one token, from the
Secret the operator creates (KubeRay's `authOptions`). KubeRay puts it in each Ray container's
environment as `RAY_AUTH_TOKEN`; Ray 2.60's dashboard then answers 401 to a request without it, even on
loopback. Plain standard library: the preStop hook imports it before anything else is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
HEADER = "x-ray-authorization"  # Ray's dashboard reads it before `Authorization`, which proxies may take for themselves


def dashboard_headers(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`{HEADER: "Bearer <token>"}` when this process has a token, else nothing (a cluster without auth)."""
    token = env.get(TOKEN_ENV, "").strip()
    if not token and env.get(TOKEN_PATH_ENV):
        token = Path(env[TOKEN_PATH_ENV]).read_text().strip()
    return {HEADER: f"Bearer {token}"} if token else {}
