"""How consumers reach the inference service: a Serve DeploymentHandle when both live in one Ray
cluster, or HTTP to the Serve endpoint (one request per batch of frames) when they do not
(`spec.serving.url`, e.g. a KubeRay RayService's serve Service). Both answer one `InferenceReply` per
frame, in order."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from camerafleet.api.manifest import FleetSpec
from camerafleet.api.messages import InferenceReply


class InferenceUnavailable(Exception):
    """The inference service could not be reached or answered with an error; the call may be retried."""


class Transport(ABC):
    @abstractmethod
    async def infer(self, frames: list[dict[str, Any]]) -> list[InferenceReply]:
        """One reply per frame reference, in order."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


class HandleTransport(Transport):
    def __init__(self, app_name: str, timeout_s: float):
        from ray import serve

        self.handle = serve.get_app_handle(app_name)
        self.timeout_s = timeout_s

    async def infer(self, frames: list[dict[str, Any]]) -> list[InferenceReply]:
        try:
            replies: list[InferenceReply] = await asyncio.wait_for(self.handle.infer.remote(frames), timeout=self.timeout_s)
        except TimeoutError:
            raise
        except Exception as err:  # Ray raises many types when a replica or actor dies
            raise InferenceUnavailable(f"{type(err).__name__}: {str(err)[:300]}") from err
        return replies

    async def close(self) -> None:
        pass


class HttpTransport(Transport):
    def __init__(self, url: str, timeout_s: float):
        self.url = url
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0), limits=httpx.Limits(max_connections=8))

    async def infer(self, frames: list[dict[str, Any]]) -> list[InferenceReply]:
        try:
            resp = await self.client.post(self.url, content=orjson.dumps({"frames": frames}), headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            raise TimeoutError() from None
        except httpx.HTTPError as err:
            raise InferenceUnavailable(f"cannot reach {self.url}: {type(err).__name__}") from err
        if resp.status_code != 200:
            raise InferenceUnavailable(f"{self.url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            replies = [InferenceReply.model_validate(r) for r in orjson.loads(resp.content)["results"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError) as err:
            raise InferenceUnavailable(f"{self.url} answered something that is not a list of replies: {str(err)[:200]}") from None
        if len(replies) != len(frames):
            raise InferenceUnavailable(f"{self.url} returned {len(replies)} results for {len(frames)} frames")
        return replies

    async def close(self) -> None:
        await self.client.aclose()


def make_transport(spec: FleetSpec) -> Transport:
    """HTTP to `serving.url` when the app runs elsewhere, else a handle to the app on this Ray cluster."""
    url, timeout = spec.serving.url, spec.consumer.inference_timeout_seconds
    return HttpTransport(url, timeout) if url else HandleTransport(spec.serving.app_name, timeout)
