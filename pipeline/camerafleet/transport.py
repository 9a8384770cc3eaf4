"""How consumers reach the inference service: a Serve DeploymentHandle when both live in one Ray
cluster, or HTTP to the Serve endpoint (one request per batch of frames) when they do not.

The baseline design (`serving.design: per-frame-sequential`) always uses HTTP with one request per
frame, to the local Serve proxy unless `serving.url` names another."""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from typing import Any

import httpx
import orjson

from camerafleet.api.manifest import FleetSpec


class InferenceUnavailable(Exception):
    """The inference service could not be reached or answered with an error; the call may be retried."""


class Transport(ABC):
    @abstractmethod
    async def infer(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per frame, in order."""

    async def close(self) -> None:
        pass


class HandleTransport(Transport):
    def __init__(self, app_name: str, timeout_s: float):
        from ray import serve

        self.handle = serve.get_app_handle(app_name)
        self.timeout_s = timeout_s

    async def infer(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return await asyncio.wait_for(self.handle.infer.remote(frames), timeout=self.timeout_s)
        except TimeoutError:
            raise
        except Exception as err:
            raise InferenceUnavailable(f"{type(err).__name__}: {str(err)[:300]}") from err


class HttpTransport(Transport):
    def __init__(self, url: str, timeout_s: float):
        self.url = url
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0), limits=httpx.Limits(max_connections=8))

    async def infer(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            resp = await self.client.post(self.url, content=orjson.dumps({"frames": frames}), headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            raise TimeoutError() from None
        except httpx.HTTPError as err:
            raise InferenceUnavailable(f"cannot reach {self.url}: {type(err).__name__}") from err
        if resp.status_code != 200:
            raise InferenceUnavailable(f"{self.url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        results = orjson.loads(resp.content)["results"]
        if len(results) != len(frames):
            raise InferenceUnavailable(f"{self.url} returned {len(results)} results for {len(frames)} frames")
        return results


class PerFrameHttpTransport(HttpTransport):
    """The baseline design: one HTTP request per frame (the frames of a batch are sent concurrently)."""

    async def infer(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = await asyncio.gather(*(super(PerFrameHttpTransport, self).infer([f]) for f in frames))
        return [a[0] for a in answers]

    async def close(self) -> None:
        await self.client.aclose()


def serve_url(spec: FleetSpec) -> str | None:
    return os.environ.get("CAMERAFLEET_SERVE_URL") or spec.serving.url


def local_serve_url(spec: FleetSpec) -> str:
    """The app's route on this node's Serve HTTP proxy (`camerafleet run` starts it on CAMERAFLEET_SERVE_PORT)."""
    return f"http://127.0.0.1:{os.environ.get('CAMERAFLEET_SERVE_PORT', '8000')}{spec.serving.route_prefix}"


def make_transport(spec: FleetSpec) -> Transport:
    url = serve_url(spec)
    timeout = spec.consumer.inference_timeout_seconds
    if spec.serving.design == "per-frame-sequential":
        return PerFrameHttpTransport(url or local_serve_url(spec), timeout)
    return HttpTransport(url, timeout) if url else HandleTransport(spec.serving.app_name, timeout)
