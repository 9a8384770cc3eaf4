"""How consumers reach the inference service: a Serve DeploymentHandle when both live in one Ray
cluster, or HTTP to the Serve endpoint (one request per batch of frames) when they do not
(`spec.serving.url`, e.g. a KubeRay RayService's serve Service). Both answer one `InferenceReply` per
frame, in order."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from camerafleet.api.manifest import FleetSpec
from camerafleet.api.messages import InferenceReply

CONNECTION_MAX_AGE_S = 20.0
"""The HTTP transport opens new connections at this age. A Service balances connections, not requests, and
keep-alive pins each to the serve Pod it was opened to. When Serve no longer needs a worker Pod it drains the proxy
there and the Pod leaves the Service, but the proxy is drained only once it has been draining for 30 s
(`RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S`) and has no request left. A busy consumer's old connections never leave
it idle, so Ray's autoscaler never removed the Pod (session 25's e2e run: DRAINING for more than 10 minutes, three
connections from the consumer). Below 30 s, the proxy is idle once the requests it had end. The same age lets a
new serving Pod get its share of the requests within 20 s."""


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


@dataclass(eq=False)
class _Client:
    """One generation of the HTTP transport's connections."""

    http: httpx.AsyncClient
    opened_at: float
    in_flight: int = 0


class HttpTransport(Transport):
    """POSTs each batch to the Serve endpoint over a keep-alive pool that is replaced every `max_connection_age_s`
    (`CONNECTION_MAX_AGE_S`): new requests go to a new pool, and the old one is closed when its last request ends,
    so no request is cut."""

    def __init__(
        self, url: str, timeout_s: float, max_connection_age_s: float = CONNECTION_MAX_AGE_S, clock: Callable[[], float] = time.monotonic
    ):
        self.url = url
        self._timeout = httpx.Timeout(timeout_s, connect=5.0)
        self._max_age_s = max_connection_age_s
        self._clock = clock
        self._current = self._open()
        self._retired: set[_Client] = set()  # replaced, with requests still on them: at most timeout / age + 1

    def _open(self) -> _Client:
        return _Client(httpx.AsyncClient(timeout=self._timeout, limits=httpx.Limits(max_connections=8)), self._clock())

    async def _retire(self, client: _Client) -> None:
        if client.in_flight:
            self._retired.add(client)
            return
        self._retired.discard(client)
        await client.http.aclose()

    async def _post(self, body: bytes) -> httpx.Response:
        if self._clock() - self._current.opened_at >= self._max_age_s:
            old, self._current = self._current, self._open()
            await self._retire(old)
        client = self._current
        client.in_flight += 1
        try:
            return await client.http.post(self.url, content=body, headers={"content-type": "application/json"})
        finally:
            client.in_flight -= 1
            if client is not self._current:
                await self._retire(client)

    async def infer(self, frames: list[dict[str, Any]]) -> list[InferenceReply]:
        try:
            resp = await self._post(orjson.dumps({"frames": frames}))
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
        for client in (self._current, *self._retired):
            await client.http.aclose()
        self._retired.clear()


def make_transport(spec: FleetSpec) -> Transport:
    """HTTP to `serving.url` when the app runs elsewhere, else a handle to the app on this Ray cluster."""
    url, timeout = spec.serving.url, spec.consumer.inference_timeout_seconds
    return HttpTransport(url, timeout) if url else HandleTransport(spec.serving.app_name, timeout)
