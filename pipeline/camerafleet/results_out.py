"""Where a consumer's results go, and how they are counted: the run's results log (when kept), the results
topic (every frame's record, whatever its outcome, so the ledger can be counted from Kafka alone) and the
dead-letter topic (failed frames, with the raw message when unreadable); each outcome counted by camera and
reason, in the actor's stats and its metrics."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from camerafleet import actor_metrics as metrics
from camerafleet.api.manifest import KafkaSpec
from camerafleet.api.messages import ResultRecord
from camerafleet.api.outcomes import Outcome
from camerafleet.kafka_access import client_options
from camerafleet.profiling import stage
from camerafleet.stats import CameraOutcomes

LATENCIES_KEPT = 5000  # the latest processed frames' latencies, for the run's percentiles (bounded: weeks of running)


class ResultsLog:
    """Appends JSON lines to the run's results log; one write per batch, O_APPEND, so several consumer
    processes can share one file without interleaving lines."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            os.write(self.fd, b"".join(orjson.dumps(r) + b"\n" for r in records))

    def close(self) -> None:
        os.close(self.fd)


class ResultsOut:
    def __init__(self, results_log: str | None) -> None:
        self.log = ResultsLog(results_log) if results_log else None  # None: the results topic is the record
        self.producer: AIOKafkaProducer | None = None

    async def start(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", **client_options())
        await self.producer.start()

    async def write(self, records: list[ResultRecord], kafka: KafkaSpec) -> None:
        """The results log first, then the results and dead-letter topics; returns once Kafka took them all."""
        assert self.producer is not None, "start() first"
        # The raw value of an unreadable message goes to the dead-letter topic only.
        rows = [r.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"value", "value_bytes"}) for r in records]
        if self.log is not None:
            await asyncio.to_thread(self._write_log, rows)
        with stage("results", frames=0):  # send() only appends to the client's batches
            futures = []
            for record, row in zip(records, rows, strict=True):
                key = record.camera_id.encode()
                futures.append(await self.producer.send(kafka.results_topic, orjson.dumps(row), key=key))
                if record.outcome == Outcome.FAILED:
                    futures.append(await self.producer.send(kafka.dead_letter_topic, orjson.dumps(record.to_dict()), key=key))
        if futures:
            await asyncio.gather(*futures)

    def _write_log(self, rows: list[dict[str, Any]]) -> None:
        assert self.log is not None
        with stage("results", frames=len(rows)):
            self.log.write(rows)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.log is not None:
            self.log.close()


class OutcomeTally:
    """Each written frame's outcome by camera and reason, the processed frames' latencies, and the batches."""

    def __init__(self) -> None:
        self.counts: dict[str, CameraOutcomes] = {}
        self.latencies_ms: deque[int] = deque(maxlen=LATENCIES_KEPT)
        self.batches = 0

    def add(self, records: list[ResultRecord]) -> None:
        self.batches += 1
        for r in records:
            camera = r.camera_id
            self.counts.setdefault(camera, CameraOutcomes()).add(r.outcome, r.reason)
            if r.outcome == Outcome.PROCESSED:
                assert r.latency_ms is not None
                self.latencies_ms.append(r.latency_ms)
                metrics.frames_processed().inc(tags={"camera": camera})
                metrics.e2e_latency_ms().observe(r.latency_ms, tags={"camera": camera})
            elif r.outcome == Outcome.DROPPED:
                metrics.frames_dropped().inc(tags={"camera": camera, "reason": str(r.reason)})
            else:
                metrics.frames_failed().inc(tags={"camera": camera, "reason": str(r.reason)})
