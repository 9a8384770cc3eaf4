"""The consumer's HTTP transport against a real uvicorn, the server each Serve proxy runs: its keep-alive
connections are replaced once they reach `CONNECTION_MAX_AGE_S`, and a request still running on an old connection
ends normally before that connection is closed. Without this a draining Serve proxy kept answering a busy
consumer's old connections and was never drained, so its worker Pod was never removed (transport.py says more).
The transport's clock is the test's, so nothing here waits for 20 s to pass."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import psutil
import pytest
import uvicorn

from camerafleet.api.outcomes import Outcome
from camerafleet.transport import CONNECTION_MAX_AGE_S, HttpTransport
from camerafleet_dev.devservers._process import free_port

pytestmark = pytest.mark.integration
START_S = 30  # uvicorn starts in well under a second; generous for a busy 2-core machine


class RecordingApp:
    """Answers every frame processed and records each request's client port, one per connection. A frame
    {"hold": true} is answered only once `release` is set."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        frames = orjson.loads(body)["frames"]
        self.ports.append(scope["client"][1])
        if any(f.get("hold") for f in frames):
            self.held.set()
            await self.release.wait()
        reply = {"outcome": "processed", "models": {"m": {}}}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps({"results": [reply] * len(frames)})})


@contextlib.asynccontextmanager
async def serving(app: RecordingApp) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(START_S):
            while not server.started:  # noqa: ASYNC110 (uvicorn has no event for it)
                await asyncio.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        await task


def open_connections(port: int) -> int:
    """This process's established connections to the server: the transport's, seen from the client side."""
    return sum(
        1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_connections_are_replaced_at_their_age_without_cutting_a_request():
    async def scenario() -> None:
        app, now = RecordingApp(), [1000.0]
        async with serving(app) as port:
            transport = HttpTransport(f"http://127.0.0.1:{port}/fleet", timeout_s=60, clock=lambda: now[0])
            try:
                for _ in range(3):
                    assert [r.outcome for r in await transport.infer([{"seq": 1}])] == [Outcome.PROCESSED]
                assert len(set(app.ports)) == 1, f"keep-alive reuses one connection while it is young: {app.ports}"
                assert open_connections(port) == 1

                held = asyncio.create_task(transport.infer([{"hold": True}]))  # still running when the age passes
                await asyncio.wait_for(app.held.wait(), START_S)
                now[0] += CONNECTION_MAX_AGE_S
                await transport.infer([{"seq": 2}])
                assert app.ports[-1] != app.ports[0], f"a request after the age opens a new connection: {app.ports}"
                assert open_connections(port) == 2, "the old connection stays open while a request runs on it"

                app.release.set()
                assert [r.outcome for r in await asyncio.wait_for(held, START_S)] == [Outcome.PROCESSED], "the held request was not cut"
                assert open_connections(port) == 1, "the old connection is closed once its last request ended"

                now[0] += CONNECTION_MAX_AGE_S / 2
                await transport.infer([{"seq": 3}])
                assert app.ports[-1] == app.ports[-2], "a connection younger than the age is kept"
            finally:
                await transport.close()
            assert open_connections(port) == 0, "close() releases every connection"

    asyncio.run(scenario())
