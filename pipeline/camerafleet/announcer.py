"""A producer actor's Kafka side: one idempotent client per actor, started on first use and replaced when it
can send no more, and each frame's announcement sent until Kafka takes it (with backoff), or refused.

While Kafka is down every waiting announcement retries on its own; the client is not started again more
than once a second (the frames waiting need not each try), and the warning is said once per 10 s, not per
frame. The client is idempotent, so its own retries add no duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError, KafkaError, KafkaTimeoutError, OutOfOrderSequenceNumber, ProducerClosed, ProducerFenced

from camerafleet.kafka_access import client_options
from camerafleet.profiling import stage

log = logging.getLogger("camerafleet.producer")

RETRY_INITIAL_S = 0.25  # first wait before re-sending an announcement Kafka did not take; doubles
RETRY_MAX_S = 5.0
WARNING_INTERVAL_S = 10.0  # while Kafka is down, one warning per this many seconds, not one per frame
CLOSE_S = 10.0  # closing a client waits this long for what it still holds

SendAction = Literal["retry", "reset", "fail"]


class Refused(Exception):
    """Kafka refused this message (too large, not authorized): sending it again would not help."""


def on_send_error(err: BaseException) -> SendAction:
    """What to do after Kafka did not take an announcement: `retry` it (Kafka unreachable, slow, or moving a
    partition), `reset` the client first (the client itself cannot send any more), or `fail` the frame
    (Kafka refused this message, e.g. too large; retrying would not help)."""
    if isinstance(err, (ProducerClosed, ProducerFenced, OutOfOrderSequenceNumber)):
        return "reset"
    if isinstance(err, KafkaTimeoutError) or getattr(err, "retriable", False):
        return "retry"
    if isinstance(err, BrokerResponseError):
        return "fail"
    return "reset" if isinstance(err, KafkaError) else "fail"


class Announcer:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.client: AIOKafkaProducer | None = None
        self.lock = asyncio.Lock()
        self.start_error: tuple[float, Exception] | None = None
        self.last_warning = 0.0
        self.closing: set[asyncio.Task[None]] = set()  # clients being thrown away (referenced until closed)

    async def connect(self) -> AIOKafkaProducer:
        """The client, started on first use (and again after a reset); raises while Kafka is unreachable."""
        async with self.lock:
            if self.client is None:
                if self.start_error is not None and time.monotonic() - self.start_error[0] < RETRY_INITIAL_S * 4:
                    raise self.start_error[1]  # tried a moment ago: the frames waiting need not each try again
                client = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    linger_ms=5,
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=30_000,
                    retry_backoff_ms=250,
                    **client_options(),
                )
                try:
                    await client.start()
                except Exception as err:
                    self.start_error = (time.monotonic(), err)
                    await _close_quietly(client)
                    raise
                self.client, self.start_error = client, None
            return self.client

    async def send(self, topic: str, value: bytes, key: bytes, partition: int, on_retry: Callable[[BaseException], None]) -> None:
        """Returns once Kafka took the message; until then retries with backoff (`on_retry` told each time).
        Raises Refused when Kafka refuses this message."""
        delay = RETRY_INITIAL_S
        while True:
            client = None
            try:
                client = await self.connect()
                with stage("produce"):  # send() only appends to the client's batch unless it must wait for metadata
                    fut = await client.send(topic, value, key=key, partition=partition)
                await fut
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # sorted: retry, new client, or refused (raised)
                action = on_send_error(err)
                if action == "fail":
                    raise Refused(f"{type(err).__name__}: {err}") from err
                if action == "reset" and client is not None:
                    await self._reset(client)
                on_retry(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _reset(self, client: AIOKafkaProducer) -> None:
        """Drop a client that cannot send any more (fenced, out of sequence, sender stopped); the next send makes a new one."""
        async with self.lock:
            if self.client is client:
                self.client = None
                task = asyncio.create_task(_close_quietly(client))
                self.closing.add(task)
                task.add_done_callback(self.closing.discard)

    def warn(self, text: str) -> None:
        """A warning about Kafka, said at most once per WARNING_INTERVAL_S."""
        now = time.monotonic()
        if now - self.last_warning >= WARNING_INTERVAL_S:
            self.last_warning = now
            log.warning(text)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await _close_quietly(client, logging.WARNING)


async def _close_quietly(client: AIOKafkaProducer, level: int = logging.DEBUG) -> None:
    """Stop a client within CLOSE_S; what goes wrong is only logged, at `level` (debug: a broken client thrown away)."""
    try:
        await asyncio.wait_for(client.stop(), timeout=CLOSE_S)
    except Exception as err:  # noqa: BLE001 - stopping must not fail the caller's own stop
        log.log(level, "closing a Kafka client: %s", type(err).__name__)
