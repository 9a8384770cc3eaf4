"""Samples the running benchmark: memory and CPU of every process it started (grouped into pipeline
components by process title), Serve replicas per deployment and consumer lag, as time series."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from typing import Any

import psutil

from camerafleet.actor_pools import member_answers

# Process-title fragments -> component, first match wins (Ray names worker processes after their actor).
COMPONENTS = (
    ("ProducerActor", "producer"),
    ("ConsumerActor", "consumer"),
    (":ingress", "serve ingress"),
    (":model-", "model:"),
    ("ServeController", "serve system"),
    ("ProxyActor", "serve system"),
    ("kafka.Kafka", "kafka broker"),
    ("gcs_server", "ray system"),
    ("raylet", "ray system"),
    ("dashboard", "ray system"),
    ("log_monitor", "ray system"),
    ("ray/_private", "ray system"),
    ("ray::", "ray idle workers"),
)


def component_of(proc: psutil.Process) -> str:
    try:
        title = " ".join(proc.cmdline()) or proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    for fragment, name in COMPONENTS:
        if fragment in title:
            if name == "model:":
                return "model " + title.split(":model-", 1)[1].split()[0].split(".")[0].split(":")[0]
            return name
    return "bench driver" if proc.pid == psutil.Process().pid else "other"


class ProcessProbe:
    """Tracks this process and all its descendants (Ray and, when the bench started it, Kafka)."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.cpu_s: dict[int, tuple[str, float]] = {}  # pid -> (component, CPU seconds last seen)
        self.names: dict[int, str] = {}

    def sample(self) -> dict[str, int]:
        """RSS bytes by component now; also refreshes every process's CPU total."""
        rss: dict[str, int] = defaultdict(int)
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    name = self.names.get(proc.pid) or component_of(proc)
                    if name not in ("other", "ray idle workers"):
                        self.names[proc.pid] = name
                    times = proc.cpu_times()
                    self.cpu_s[proc.pid] = (name, times.user + times.system)
                    rss[name] += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return dict(rss)

    def cpu_totals(self) -> dict[int, tuple[str, float]]:
        self.sample()
        return dict(self.cpu_s)


def cpu_by_component(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each component used between two `cpu_totals` snapshots."""
    used: dict[str, float] = defaultdict(float)
    for pid, (name, total) in after.items():
        used[name] += total - before.get(pid, (name, 0.0))[1]
    return {k: round(v, 3) for k, v in sorted(used.items())}


def serve_replicas(app: str) -> dict[str, int]:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return {}
    counts = {}
    for name, d in status.deployments.items():
        states = {str(getattr(k, "value", k)): v for k, v in d.replica_states.items()}
        counts[name] = states.get("RUNNING", 0)
        counts[f"{name} (incl. starting)"] = states.get("RUNNING", 0) + states.get("STARTING", 0)
    return counts


# How often a phase whose replica counts are fixed by its manifest reads them (a replica that dies shows within
# this long). `serve.status()` builds Serve's whole status model in this driver and in the controller: reading it
# every 2 s cost the bench driver 15 CPU-ms a second, twice what the runner in it costs, and the limit loop it is
# compared with pays nothing like it (ad-hoc idle probe, 2026-12-07: driver 23.0/24.2 ms/s at 2 s, 8.7/8.0 at 60 s).
FIXED_REPLICAS_LOOK_S = 10.0


class TimeSeries:
    """Samples replicas, pool sizes, lag and memory of one phase every `interval` seconds until stopped.

    Replicas are read at every sample only where a model autoscales (`autoscaled`); otherwise every
    `FIXED_REPLICAS_LOOK_S`, the rows between carrying the last counts."""

    def __init__(self, probe: ProcessProbe, runner: Any, app: str, interval: float, autoscaled: bool = True):
        self.probe, self.runner, self.app, self.interval = probe, runner, app, interval
        self.replicas_look_s = interval if autoscaled else max(interval, FIXED_REPLICAS_LOOK_S)
        self.t0 = time.time()
        self.rows: list[dict[str, Any]] = []
        self.task: asyncio.Task | None = None

    async def _loop(self) -> None:
        replicas: dict[str, int] = {}
        replicas_at = -math.inf
        while True:
            rss = await asyncio.to_thread(self.probe.sample)
            if time.monotonic() - replicas_at >= self.replicas_look_s:
                replicas, replicas_at = await asyncio.to_thread(serve_replicas, self.app), time.monotonic()
            consumers = await member_answers(c.stats.remote() for c in self.runner.pools.consumers)
            lag = sum(c.total_lag for c in consumers)
            pools = {"producer": len(self.runner.pools.producers), "consumer": len(self.runner.pools.consumers)}
            row = {"t": round(time.time() - self.t0, 2), "wall": time.time(), "replicas": replicas, "lag": lag, "rss": rss, "pools": pools}
            self.rows.append(row)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> list[dict[str, Any]]:
        """The rows sampled; the sampler's own failure, if it had one, is raised rather than leaving gaps."""
        if self.task is not None:
            if self.task.done():
                self.task.result()
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        return self.rows
