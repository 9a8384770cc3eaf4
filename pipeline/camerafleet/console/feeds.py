"""Where the console's figures come from, each a loop that feeds the `FleetView`: the results topic (every
frame's outcome, with its detections), the events topic (tracks, zones, lines) and the track ids of each tracked
frame, the consumer group's backlog
(Kafka), and Serve's replica counts when the models run in this Ray cluster. Producer stats come from the
runner, which already polls them.

The topics are read without a consumer group (the results from their end when the console starts, the events
from a little before): the console is a reader on the side, it never moves the fleet's commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from camerafleet.admission import KafkaBacklog
from camerafleet.api.serve_options import deployment_name
from camerafleet.console.view import FleetView
from camerafleet.kafka_access import client_options
from camerafleet.ray_auth import dashboard_headers
from camerafleet.topics import end_offsets

log = logging.getLogger("camerafleet.console")
RETRY_S = 2.0  # after Kafka or Serve failed to answer
READ_TIMEOUT_S = 10.0  # for one reading of the consumer group's backlog


async def follow_results(view: FleetView, bootstrap: str, topic: str, started: asyncio.Event) -> None:
    """Read the results topic from its current end into `view`, until cancelled; `started` is set once the
    console's position is fixed (frames whose results come later are all seen)."""
    await _follow(bootstrap, topic, view.add_result, started, back=0, what="the results topic", view=view)


async def follow_tracks(view: FleetView, bootstrap: str, topic: str) -> None:
    """Read the events stage's tracks topic from its current end into `view`, until cancelled."""
    await _follow(bootstrap, topic, view.add_tracks, asyncio.Event(), back=0, what="the tracks topic", view=view)


# Event records read back from before the console started, per partition, so that its timeline is not empty.
EVENTS_BACK = 500


async def follow_events(view: FleetView, bootstrap: str, topic: str) -> None:
    """Read the events topic's committed records into `view`, from a little before its end, until cancelled."""
    await _follow(bootstrap, topic, view.add_event, asyncio.Event(), back=EVENTS_BACK, what="the events topic", view=view)


async def _follow(
    bootstrap: str, topic: str, take: Callable[[dict], None], started: asyncio.Event, back: int, what: str, view: FleetView
) -> None:
    position: dict[int, int] = {}  # partition -> next offset to read
    while True:
        # read_committed: the events stage writes in transactions, and an aborted one's records never happened.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=10000,
            isolation_level="read_committed",
            **client_options(),
        )
        try:
            if not started.is_set():
                position = {p: max(0, end - back) for p, end in (await end_offsets(bootstrap, [topic]))[topic].items()}
            await consumer.start()
            partitions = [TopicPartition(topic, p) for p in sorted(position)]
            consumer.assign(partitions)
            for tp in partitions:  # where this console started, or (after a retry) where it got to
                consumer.seek(tp, position[tp.partition])
            started.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batches.items():
                    position[tp.partition] = records[-1].offset + 1
                    for record in records:
                        try:
                            take(orjson.loads(record.value or b""))
                        except orjson.JSONDecodeError:
                            view.ignored_records += 1
        except (Exception, asyncio.CancelledError) as err:  # noqa: BLE001 -- see _failed
            _failed(err, f"cannot read {what}; retrying")
        finally:
            try:
                await asyncio.wait_for(consumer.stop(), timeout=5)
            except (Exception, asyncio.CancelledError) as err:  # noqa: BLE001 -- see _failed
                _failed(err, f"stopping the reader of {what}", quiet=True)
        await asyncio.sleep(RETRY_S)


async def follow_lag(view: FleetView, backlog: KafkaBacklog, partitions: Callable[[], list[TopicPartition]], every_s: float) -> None:
    """The consumer group's backlog over the camera topics, every `every_s`; unknown (None) while Kafka cannot tell."""
    try:
        while True:
            try:
                # A topic created moments ago can be missing from the client's first metadata, and then its end
                # offsets wait forever: give up after a while and start again with fresh clients.
                view.update_lag((await asyncio.wait_for(backlog.read(partitions()), timeout=READ_TIMEOUT_S)).waiting)
            except (Exception, asyncio.CancelledError) as err:  # noqa: BLE001 -- see _failed
                _failed(err, "consumer lag unknown for now", quiet=view.lag is None)
                view.update_lag(None)
                await backlog.close()
            await asyncio.sleep(every_s)
    finally:
        await backlog.close()


def _failed(err: BaseException, what: str, quiet: bool = False) -> None:
    """A feed's call failed: log it and go on, unless the feed itself is being cancelled. aiokafka's clients
    raise more than KafkaError, and after a request timed out a later call can raise CancelledError from a
    future of theirs: a feed that let either through would stop for good while the console keeps running."""
    task = asyncio.current_task()
    if isinstance(err, asyncio.CancelledError) and task is not None and task.cancelling():
        raise err
    if not quiet:
        log.warning("console: %s (%s: %s)", what, type(err).__name__, err)


ReplicaReader = Callable[[], Awaitable[dict[str, int]]]
"""Reads the running replicas of each deployment of the fleet's Serve app, by deployment name."""


def local_replicas(app_name: str) -> ReplicaReader:
    """From Serve's controller, when this process deployed the app on its own Ray cluster."""

    async def read() -> dict[str, int]:
        from ray import serve
        from ray.serve.schema import ReplicaState

        app = (await asyncio.to_thread(serve.status)).applications.get(app_name)
        return {name: d.replica_states.get(ReplicaState.RUNNING, 0) for name, d in (app.deployments.items() if app else ())}

    return read


def dashboard_replicas(dashboard_url: str, app_name: str) -> ReplicaReader:
    """From the Ray dashboard of the cluster that runs the app (a RayService's head), as KubeRay reads it."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0), headers=dashboard_headers())  # the fleet's token, from KubeRay

    async def read() -> dict[str, int]:
        resp = await client.get(f"{dashboard_url}/api/serve/applications/")
        resp.raise_for_status()
        app = (resp.json().get("applications") or {}).get(app_name) or {}
        return {
            name: sum(1 for r in d.get("replicas") or () if r.get("state") == "RUNNING")
            for name, d in (app.get("deployments") or {}).items()
        }

    return read


async def follow_replicas(view: FleetView, read: ReplicaReader, every_s: float) -> None:
    """Running replicas of each model, every `every_s`."""
    while True:
        try:
            running = await read()
            view.update_replicas({name: running[deployment_name(name)] for name in view.models if deployment_name(name) in running})
        except (Exception, asyncio.CancelledError) as err:  # noqa: BLE001 -- see _failed
            _failed(err, "model replicas unknown for now", quiet=True)
        await asyncio.sleep(every_s)
