"""The console as a part of `camerafleet run`: its web server (uvicorn, in the run's own event loop) and
the loops that feed its view, started and stopped with the run.

It lives in the process that runs the producers (locally the whole pipeline, on Kubernetes the producer
RayJob's driver): that process knows which cameras are down, and reads everything else (results, lag)
from Kafka, like any reader of the fleet's topics."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, replace

import uvicorn
from aiokafka import TopicPartition

from camerafleet.admission import KafkaBacklog
from camerafleet.api.manifest import FleetSpec
from camerafleet.bucket import FrameBucket, open_bucket
from camerafleet.clip_store import ClipStore
from camerafleet.console.clips import ClipMaker, ClipWindow
from camerafleet.console.feeds import ReplicaReader, follow_events, follow_lag, follow_replicas, follow_results, follow_tracks
from camerafleet.console.records import PoolView, Shape
from camerafleet.console.server import FrameCache, console_app
from camerafleet.console.view import FleetView
from camerafleet.stats import ProducerCameraStats

START_TIMEOUT_S = 30.0  # the results topic's end offsets and the listening socket, on a busy machine


class ConsoleError(RuntimeError):
    """The console cannot start (its port is taken, Kafka does not answer); the message says which."""


@dataclass(frozen=True)
class ConsoleOptions:
    port: int
    host: str = "127.0.0.1"  # loopback unless asked: the page shows what the cameras see
    refresh_s: float = 1.0  # the live stream's update period
    lag_every_s: float = 2.0
    replicas_every_s: float = 5.0
    token: str | None = None  # required of every viewer when set (CAMERAFLEET_CONSOLE_TOKEN)


def _cameras(spec: FleetSpec) -> dict[str, float]:
    return {c.id: c.stall_timeout_seconds for c in spec.cameras}


def _models(spec: FleetSpec) -> dict[str, int]:
    return {m.name: m.autoscaling.max_replicas for m in spec.models}


def _shapes(spec: FleetSpec) -> dict[str, list[Shape]]:
    return {
        c.id: [Shape(kind="zone", name=z.name, points=[(x, y) for x, y in z.points]) for z in c.zones]
        + [Shape(kind="line", name=ln.name, points=[(x, y) for x, y in ln.points]) for ln in c.lines]
        for c in spec.cameras
        if c.zones or c.lines
    }


def _clips(spec: FleetSpec, bucket: FrameBucket) -> ClipMaker | None:
    c = spec.events.clips
    if not spec.events.keeps_clips:
        return None
    window = ClipWindow(round(c.pre_roll_seconds * 1000), round(c.post_roll_seconds * 1000), round(c.max_seconds * 1000))
    return ClipMaker(ClipStore(bucket, c.keep_days), window)


class Console:
    def __init__(self, spec: FleetSpec, fleet: str, options: ConsoleOptions):
        self.spec = spec
        self.options = options
        self.view = FleetView(fleet, _cameras(spec), _models(spec), shapes=_shapes(spec))
        self.stopping = asyncio.Event()
        bucket = open_bucket(spec.bucket)
        frames = FrameCache(bucket, entries=2 * len(spec.cameras) + 32)
        app = console_app(self.view, frames, options.refresh_s, self.stopping, options.token, clips=_clips(spec, bucket))
        config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning", access_log=False, lifespan="off")
        self.server = _EmbeddedServer(config)
        self.feeds: list[asyncio.Task[None]] = []
        self.serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "::") else self.options.host
        return f"http://{host}:{self.options.port}/"

    async def start(self) -> None:
        spec = self.spec
        following = asyncio.Event()
        backlog = KafkaBacklog(spec.kafka.bootstrap_servers, spec.kafka.consumer_group)
        self.feeds = [
            asyncio.create_task(follow_results(self.view, spec.kafka.bootstrap_servers, spec.kafka.results_topic, following)),
            asyncio.create_task(follow_lag(self.view, backlog, self._camera_partitions, self.options.lag_every_s)),
        ]
        if spec.events.enabled:
            self.feeds.append(asyncio.create_task(follow_events(self.view, spec.kafka.bootstrap_servers, spec.kafka.events_topic)))
            self.feeds.append(asyncio.create_task(follow_tracks(self.view, spec.kafka.bootstrap_servers, spec.kafka.events_tracks_topic)))
        try:
            # Bound here, not by uvicorn: uvicorn ends the process (SystemExit) when it cannot bind.
            listening = socket.create_server((self.options.host, self.options.port), reuse_port=False)
        except OSError as err:
            await self.stop()
            raise ConsoleError(f"cannot listen on {self.options.host}:{self.options.port}: {err.strerror}") from None
        self.serving = asyncio.create_task(self.server.serve(sockets=[listening]))
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await following.wait()
        except TimeoutError:
            await self.stop()
            raise ConsoleError(
                f"the console could not read the results topic {spec.kafka.results_topic} within {START_TIMEOUT_S:.0f} s"
            ) from None
        except BaseException:
            await self.stop()
            raise

    def follow_serve(self, read: ReplicaReader) -> None:
        """Show the models' running replicas, as `read` finds them."""
        self.feeds.append(asyncio.create_task(follow_replicas(self.view, read, self.options.replicas_every_s)))

    def _camera_partitions(self) -> list[TopicPartition]:
        n = self.spec.kafka.partitions_per_topic
        return [TopicPartition(self.spec.topic(c.id), p) for c in self.spec.cameras for p in range(n)]

    def update_spec(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.view.set_fleet(_cameras(spec), _models(spec), _shapes(spec))

    def update_producers(self, run: dict[str, ProducerCameraStats], live: dict[str, ProducerCameraStats]) -> None:
        """`run`: the run's counts, retired actor incarnations included; `live`: what the live actors say now,
        the only word on whether a source is up (a retired incarnation's last word is stale)."""
        now = {}
        for cam, stats in run.items():
            current = live.get(cam)
            up, problem = (current.source_up, current.last_problem) if current is not None else (False, None)
            now[cam] = replace(stats, source_up=up, last_problem=problem)
        self.view.update_producers(now)

    def update_pools(self, pools: list[PoolView]) -> None:
        self.view.update_pools(pools)

    async def stop(self) -> None:
        self.stopping.set()  # ends the live streams, so uvicorn's shutdown does not wait for them
        self.server.should_exit = True
        for task in self.feeds:
            task.cancel()
        tasks = [*self.feeds, *([self.serving] if self.serving else [])]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=10)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the run's event loop: the run, not uvicorn, handles SIGINT and SIGTERM."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()
