"""`camerafleet run`: brings a fleet up on a Ray cluster, keeps it in line with its manifest, and
drains it into a summary.

It starts a local Ray instance unless RAY_ADDRESS names a cluster, so the same command is the
entrypoint of a KubeRay RayJob. Roles split the pipeline for Kubernetes: `all` (one machine: Serve app,
consumers and producers), `producer`, `consumer` (reaches the Serve app over HTTP via serving.url).
While running it watches the manifest file and applies changes to cameras and actor counts in place.

One lifecycle for every caller (the CLI, the benchmark, the tests)::

    async with FleetRunner(fleet, opts) as runner:   # topics, bucket, Ray, Serve app, actor pools
        await runner.run_until_stopped()             # until the duration, a signal or stop_event
    runner.summary                                   # drained, counted, written to <run dir>/summary.json
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TextIO

import orjson
import ray

from camerafleet.actor_pools import ActorPools, member_answers
from camerafleet.api.manifest import RESTART_SECTIONS, CameraFleet, ManifestError, manifest_from_text
from camerafleet.api.outcomes import Outcome
from camerafleet.api.serve_options import default_serve_controller_env
from camerafleet.api.settings import Settings
from camerafleet.bucket import BucketConfigError, BucketError, open_bucket, summary_key
from camerafleet.console.feeds import dashboard_replicas, local_replicas
from camerafleet.events_pool import EventsPool
from camerafleet.manifest_source import RunManifest
from camerafleet.pool_scaling import Pool, pool_size_after_edit
from camerafleet.stats import ConsumerStats, ProducerCameraStats, merge_producer_stats
from camerafleet.status_writer import StatusWriter
from camerafleet.summary import build_summary, percentiles, read_records
from camerafleet.topics import KafkaUnavailable, end_offsets, ensure_topics, read_span, wait_committed, wait_for_group_members

if TYPE_CHECKING:
    from camerafleet.console.records import PoolView
    from camerafleet.console.service import Console

log = logging.getLogger("camerafleet.run")

Role = Literal["all", "producer", "consumer"]
SCALE_LOOK_S = 5.0  # how often autoscaled pools are looked at: a 15 s upscale delay then spans 4 looks
CONSUMERS_WAIT_S = 600.0  # producers alone wait this long for consumers (their Pods may be pulling a large image)
KafkaSpan = dict[str, dict[str, Any]]  # camera -> {"topic": t, "offsets": {partition: [start, end]}}


class RunError(RuntimeError):
    """A run that cannot start; the message says what to fix."""


@dataclass
class RunOptions:
    manifest: Path
    duration_s: float = 0.0
    role: Role = "all"
    progress_interval_s: float = 5.0
    drain_timeout_s: float = 60.0
    watch_interval_s: float = 2.0
    summary_path: Path | None = None
    metrics_port: int | None = None
    console_port: int | None = None
    console_host: str = "127.0.0.1"
    console_open: bool = False  # open the console in the desktop's browser, when there is a desktop
    stream: TextIO = field(default_factory=lambda: sys.stderr)


# The whole stop (producers, drain, consumers, the run's results read back): a job's Ray job is killed
# RAY_JOB_STOP_WAIT_TIME_S (90 s) after it is asked to stop, and the summary must be written before then.
# Locally, a longer --drain-timeout gets its drain plus this reserve.
STOP_BUDGET_S = 80.0
STOP_RESERVE_S = 20.0


class StopBudget:
    """What is left of the stop's time, shared out to its steps."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, at_most: float, keep: float = 0.0) -> float:
        """At most `at_most` seconds, leaving `keep` for the steps after it (at least 1 s)."""
        return max(1.0, min(at_most, self.end - keep - time.monotonic()))


class FleetRunner:
    """One run of a fleet; see the module docstring for its lifecycle."""

    def __init__(self, fleet: CameraFleet, opts: RunOptions, settings: Settings | None = None):
        self.fleet = fleet
        self.opts = opts
        self.settings = settings or Settings.from_env()
        # The effective spec: relative paths resolved, the environment's overrides applied. Every actor and
        # the Serve app get this one, so nothing downstream reads the environment again.
        self.spec = self.settings.apply(fleet.spec.with_absolute_paths(Path.cwd()))
        self.bootstrap = self.spec.kafka.bootstrap_servers
        self.epoch_ms = int(time.time() * 1000)
        self.run_id = f"{fleet.metadata.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(self.epoch_ms / 1000))}"
        self.run_dir = Path(self.spec.results.log_dir) / self.run_id
        self.results_log = self.run_dir / "results.jsonl"
        self.admission_shares: list[float] = []  # each live producer actor's admitted share of slots, last seen
        # Per camera topic, each partition's end offset when the run (or the camera) started: the ledger
        # counts what was announced during the run from Kafka itself, which outlives any actor.
        self.start_offsets: dict[str, dict[int, int]] = {}
        # Where consumers keep no results log (Kubernetes: they run on worker Pods), the results topic's end
        # offsets when the run started: the run's results are that topic's messages from there on.
        self.results_start: dict[int, int] | None = None
        self.next_scale_look = 0.0
        self.stop_event = asyncio.Event()
        self.signals = False  # whether SIGINT and SIGTERM stop this run (the CLI's)
        self.manifest = RunManifest.open(opts.manifest, self.settings.manifest_config_map, self.say)
        self.started = time.monotonic()
        self.deployed_app: str | None = None  # the Serve app this run deployed, and deletes at the end
        self.summary: dict[str, Any] | None = None
        self.metrics = None
        if opts.metrics_port:
            from camerafleet.driver_metrics import RunMetrics

            self.metrics = RunMetrics(opts.metrics_port, fleet.metadata.name)
        status = StatusWriter.for_run(self.settings.manifest_config_map, fleet.metadata.name)
        self.pools = ActorPools(fleet.metadata.name, self.spec, self.epoch_ms, self.results_log, self.say, self.metrics, status)
        self.console: Console | None = None
        runs_events = self.spec.events.enabled and opts.role in ("all", "consumer")
        self.events = EventsPool(fleet.metadata.name, self.spec, self.run_dir, self.say) if runs_events else None

    def say(self, text: str) -> None:
        print(text, file=self.opts.stream, flush=True)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop_console()
            self._release()
            raise
        self.started = self.pools.started = time.monotonic()  # pool changes are timed from here, as progress lines are
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.summary = await self.stop()
            self.write_summary(self.summary)
        finally:
            await self.stop_console()
            self._release()

    # -- start ---------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Everything outside Ray: topics and bucket. Fails fast with a message naming the problem."""
        try:
            plan = await ensure_topics(self.spec, self.bootstrap)
        except KafkaUnavailable as err:
            raise RunError(str(err)) from None
        self.say(f"kafka {self.bootstrap}: {len(self.spec.cameras)} camera topics ready ({len(plan.create)} created)")
        for problem in plan.not_supported:
            self.say(f"kafka: {problem}; the topic is left as it is")
        await self.note_start_offsets()
        if not self.spec.results.local_log:  # every role: the producers' summary counts outcomes too
            topic = self.spec.kafka.results_topic
            try:
                self.results_start = (await end_offsets(self.bootstrap, [topic]))[topic]
            except KafkaUnavailable as err:
                raise RunError(str(err)) from None
        try:
            bucket = open_bucket(self.spec.bucket)
            bucket.prepare(self.spec.bucket_retention_seconds())
        except (BucketConfigError, BucketError) as err:
            raise RunError(f"frame bucket: {err}") from None
        self.say(f"bucket {bucket.root_uri}: ready (frames expire after {self.spec.bucket.ttl_seconds} s)")

    def stop_on_signals(self) -> None:
        """SIGINT and SIGTERM (`ray job stop`, a Pod's deletion) stop the run gracefully: drained, summarized."""
        self.signals = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop_event.set)

    def connect_ray(self) -> None:
        address = self.settings.ray_address
        if not ray.is_initialized():
            if not address:  # the local instance's processes (Serve's controller among them) inherit this environment
                default_serve_controller_env(os.environ)
            ray.init(
                address=address, namespace="camerafleet", logging_level=logging.WARNING, include_dashboard=False if not address else None
            )
            if self.signals:  # ray.init makes SIGTERM a sys.exit, which skips the drain (and aborted a driver mid-call)
                self.stop_on_signals()
        cpus = ray.cluster_resources().get("CPU", 0)
        self.say(f"ray: {'cluster ' + address if address else 'local instance'} with {cpus:.0f} CPUs")
        wanted = self.spec.requested_cpus()
        if not address and wanted > cpus:
            raise RunError(
                f"the fleet reserves {wanted:g} Ray CPUs at start but this machine's Ray instance has {cpus:g}: lower "
                "resources.cpus of the models, cpusPerActor or actor counts in the manifest (fractions such as 0.25 are fine)"
            )

    def deploy_serving(self) -> None:
        """Deploy the fleet's Serve app and wait for its replicas. Called in a worker thread: the wait (10 s in the
        demo) on the run's loop stalled the console's page and its Kafka readers, whose fetches then timed out
        (an aiokafka `ERROR Failed fetch messages ... RequestTimedOutError` in every `make demo`)."""
        from ray import serve

        from camerafleet.serving.app import fleet_app

        if self.spec.serving.url:
            self.say(f"serve: using the inference service at {self.spec.serving.url}")
            return
        t0 = time.monotonic()
        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        # One HTTP proxy, on the head: the run's consumers call the app through handles, and a proxy on every node
        # would bind the same loopback port on each (several Ray nodes of one machine share its address).
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": self.settings.serve_port}, logging_config=quiet)
        serve.run(
            fleet_app(self.spec.serving_app(self.fleet.metadata.name)),
            name=self.spec.serving.app_name,
            route_prefix=self.spec.serving.route_prefix,
            logging_config=quiet,
        )
        self.deployed_app = self.spec.serving.app_name
        models = ", ".join(f"{m.name} ({m.type})" for m in self.spec.models)
        self.say(f"serve: app {self.spec.serving.app_name!r} running with {models} in {time.monotonic() - t0:.1f} s")

    async def start_console(self) -> None:
        """The fleet console, reading the results topic from now on (before any frame of this run is produced)."""
        if not self.opts.console_port:
            return
        from camerafleet.console.service import Console, ConsoleError, ConsoleOptions

        console = Console(
            self.spec,
            self.fleet.metadata.name,
            ConsoleOptions(self.opts.console_port, self.opts.console_host, token=self.settings.console_token_value()),
        )
        try:
            await console.start()
        except ConsoleError as err:
            raise RunError(f"console: {err}") from None
        self.console = console
        if self.settings.serve_status_url:  # the models run in another Ray cluster (a RayService)
            console.follow_serve(dashboard_replicas(self.settings.serve_status_url, self.spec.serving.app_name))
        self.say(f"console: {console.url}")
        if self.opts.console_open and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            webbrowser.open(console.url)  # without a desktop, webbrowser would start a text browser in this terminal

    async def stop_console(self) -> None:
        console, self.console = self.console, None
        if console is not None:
            await console.stop()

    async def start(self) -> None:
        await self.prepare()
        # Ray's start blocks this loop for seconds (ray.init must run on the main thread, which owns SIGTERM),
        # so the console, whose Kafka readers and web server live on this loop, starts once Ray is up.
        self.connect_ray()
        await self.start_console()
        if self.opts.role in ("all", "consumer"):
            if self.opts.role == "all":
                await asyncio.to_thread(self.deploy_serving)
                if self.console is not None and self.deployed_app is not None:
                    self.console.follow_serve(local_replicas(self.deployed_app))
            elif not self.spec.serving.url:
                raise RunError("role consumer needs the inference service's URL: set spec.serving.url or CAMERAFLEET_SERVE_URL")
            await self.pools.resize(Pool.CONSUMER, self.spec.consumer.actors, wait=True)
            if self.events is not None:
                await self.events.start()
        if self.opts.role == "producer":
            await self.wait_for_consumers()
        if self.opts.role in ("all", "producer"):
            await self.pools.resize(Pool.PRODUCER, self.spec.producer.actors, wait=True)
        await self.pools.report(force=True)
        where = self.results_log if self.spec.results.local_log else f"Kafka topic {self.spec.kafka.results_topic}"
        self.say(f"run {self.run_id}: results in {where}")

    async def wait_for_consumers(self) -> None:
        """Producers on their own (a RayJob of their own) start once a consumer has joined the group: frames
        produced while the consumers' Pods still start would only go stale."""
        group = self.spec.kafka.consumer_group
        self.say(f"waiting for a consumer in group {group!r} before producing (up to {CONSUMERS_WAIT_S:.0f} s) ...")
        if await wait_for_group_members(self.bootstrap, group, CONSUMERS_WAIT_S, self.stop_event):
            self.say(f"consumer group {group!r} has members: producing")
        elif not self.stop_event.is_set():
            self.say(
                f"no consumer joined group {group!r} within {CONSUMERS_WAIT_S:.0f} s: producing anyway (frames no consumer "
                "reads within maxFrameAgeMs will be dropped as stale)"
            )

    # -- while running ---------------------------------------------------------------------------------

    async def apply_manifest_change(self) -> None:
        if (changed := await asyncio.to_thread(self.manifest.change)) is None:
            return
        text, source = changed
        try:
            new = self.settings.apply(manifest_from_text(text, source).spec.with_absolute_paths(Path.cwd()))
        except ManifestError as err:
            self.say(f"manifest changed but is invalid; still running the previous one:\n{err}")
            return
        old, self.spec = self.spec, new
        ignored = [k for k in RESTART_SECTIONS if getattr(old, k) != getattr(new, k)]
        if ignored:
            self.say(f"manifest change to {', '.join(ignored)} needs a restart; not applied")
            self.spec = new.model_copy(update={k: getattr(old, k) for k in ignored})
        await ensure_topics(self.spec, self.bootstrap)
        await self.note_start_offsets()
        if self.console is not None:
            self.console.update_spec(self.spec)
        if (
            self.opts.role == "all"
            and old.serving_app(self.fleet.metadata.name) != self.spec.serving_app(self.fleet.metadata.name)
            and not self.spec.serving.url
        ):
            await asyncio.to_thread(self.deploy_serving)
        sizes = {
            Pool.PRODUCER: pool_size_after_edit(self.spec.producer, self.pools.desired.get(Pool.PRODUCER, 0)),
            Pool.CONSUMER: pool_size_after_edit(self.spec.consumer, self.pools.desired.get(Pool.CONSUMER, 0)),
        }
        await self.pools.apply_spec(self.spec, sizes)
        if self.events is not None:
            await self.events.update_spec(self.spec)  # cameras' zones and lines
        self.say(f"manifest change from {source} applied: {len(self.spec.cameras)} cameras, {self.pools.describe()}")

    # -- the ledger's sources ---------------------------------------------------------------------------

    async def note_start_offsets(self) -> None:
        """Remember the end offsets of camera topics not seen yet, before any producer announces on them."""
        topics = [self.spec.topic(c.id) for c in self.spec.cameras if self.spec.topic(c.id) not in self.start_offsets]
        if topics:
            try:
                self.start_offsets.update(await end_offsets(self.bootstrap, topics))
            except KafkaUnavailable as err:
                raise RunError(str(err)) from None

    async def kafka_ledger(self) -> KafkaSpan | None:
        """Per camera, its topic and each partition's [start, end) offsets of this run; None (the summary then
        counts what producers report) when Kafka cannot tell within a while."""
        cameras = {self.spec.topic(c.id): c.id for c in self.spec.cameras}
        cameras.update({t: t.removeprefix(self.spec.kafka.topic_prefix) for t in self.start_offsets if t not in cameras})
        for attempt in range(4):
            try:
                ends = await end_offsets(self.bootstrap, list(self.start_offsets))
                break
            except KafkaUnavailable as err:
                if attempt == 3:
                    self.say(f"ledger: {err}; counting produced frames from the producers' own counts instead")
                    return None
                await asyncio.sleep(5)
        return {
            cameras[topic]: {"topic": topic, "offsets": {str(p): [start.get(p, 0), end] for p, end in ends[topic].items()}}
            for topic, start in self.start_offsets.items()
        }

    async def gather_stats(self) -> tuple[dict[str, ProducerCameraStats], list[ConsumerStats]]:
        answers = await member_answers(a.stats.remote() for a in self.pools.producers)
        self.pools.note_producer_stats(answers)
        self.admission_shares = [a.admission_share for a in answers]
        producer = self.pools.producer_totals()
        consumers: list[ConsumerStats] = await member_answers(c.stats.remote() for c in self.pools.consumers)
        self.pools.note_consumer_stats(consumers)
        return producer, consumers

    async def progress(self) -> None:
        producer, consumers = await self.gather_stats()
        outcomes = self.pools.consumer_outcomes()
        lag = sum(c.total_lag for c in consumers)
        if self.metrics is not None:
            self.metrics.update(producer, outcomes, lag)
        await self.pools.report()
        elapsed = time.monotonic() - self.started
        produced = sum(p.produced for p in producer.values())
        processed, dropped, failed = (
            sum(o.total(kind) for o in outcomes.values()) for kind in (Outcome.PROCESSED, Outcome.DROPPED, Outcome.FAILED)
        )
        lat = percentiles([x for c in consumers for x in c.latencies_ms[-500:]])
        down = sorted(cam for cam, p in producer.items() if not p.source_up)
        shed = sum(p.shed_slots for p in producer.values())
        admitting = f"  shed {shed} (admitting {min(self.admission_shares):.0%})" if shed and self.admission_shares else ""
        self.say(
            f"[{elapsed:6.0f}s] produced {produced} ({produced / max(elapsed, 1e-9):.1f}/s)  processed {processed}  "
            f"dropped {dropped}  failed {failed}{admitting}  lag {lag}  p50 {lat['p50']} ms"
            + (f"  {self.pools.describe()}" if self.pools.autoscaled() else "")
            + (f"  cameras down: {', '.join(down)}" if down else "")
        )

    async def run_until_stopped(self) -> None:
        deadline = self.started + self.opts.duration_s if self.opts.duration_s > 0 else None
        next_progress = time.monotonic() + self.opts.progress_interval_s
        while not self.stop_event.is_set():
            timeout = (
                self.opts.watch_interval_s if deadline is None else min(self.opts.watch_interval_s, max(0.0, deadline - time.monotonic()))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=timeout)
            if deadline is not None and time.monotonic() >= deadline:
                break
            await self.apply_manifest_change()
            await self.pools.restart_lost_members()
            live = await member_answers(a.stats.remote() for a in self.pools.producers)
            self.pools.note_producer_stats(live)
            await self.pools.settle()
            if self.pools.autoscaled() and time.monotonic() >= self.next_scale_look:
                self.next_scale_look = time.monotonic() + SCALE_LOOK_S
                await self.pools.autoscale(live)
            if self.console is not None:
                self.console.update_producers(self.pools.producer_totals(), merge_producer_stats(live))
                self.console.update_pools(self.pool_views())
            if time.monotonic() >= next_progress:
                await self.progress()
                next_progress += self.opts.progress_interval_s

    def pool_views(self) -> list[PoolView]:
        """The console's view of the pools this run runs."""
        from camerafleet.console.records import PoolView

        views = []
        for pool in self.pools.desired:
            status, scaling = self.pools.pool_status(pool), getattr(self.spec, pool).autoscaling
            max_actors = None if scaling is None else scaling.max_actors
            views.append(PoolView(pool=pool, actors=status.actors, desired_actors=status.desired_actors, max_actors=max_actors))
        return views

    # -- stop ----------------------------------------------------------------------------------------

    async def drain(self, kafka: KafkaSpan | None = None, timeout_s: float | None = None) -> None:
        """Wait until consumers have caught up with everything produced, or the drain timeout. With the run's
        Kafka offsets: until the group has committed every camera topic up to its end offset (it commits only
        after writing those frames' results). Without: until no consumer lags and no batch finished for 2 s."""
        timeout_s = self.opts.drain_timeout_s if timeout_s is None else timeout_s
        if not self.pools.consumers and self.results_start is None:
            return  # a producer-only run with its own results log: nobody's outcomes to wait for
        if kafka is not None:
            want = {(i["topic"], int(p)): end for i in kafka.values() for p, (start, end) in i["offsets"].items() if end > start}
            behind = await wait_committed(self.bootstrap, self.spec.kafka.consumer_group, want, timeout_s)
            if behind:
                self.say(
                    f"drain: consumers did not catch up within {timeout_s:.0f} s ({sum(behind.values())} messages "
                    "without results); the rest is reported in flight"
                )
            return
        deadline = time.monotonic() + timeout_s
        quiet_since, last_batches = time.monotonic(), -1
        while time.monotonic() < deadline:
            stats: list[ConsumerStats] = await member_answers(c.stats.remote() for c in self.pools.consumers)
            batches = sum(s.batches for s in stats)
            if batches != last_batches:
                quiet_since, last_batches = time.monotonic(), batches
            if sum(s.total_lag for s in stats) == 0 and time.monotonic() - quiet_since > 2.0:
                return
            await asyncio.sleep(0.5)
        self.say(f"drain: consumers did not catch up within {timeout_s:.0f} s; the rest is reported in flight")

    async def stop(self) -> dict[str, Any]:
        """Stop producers, drain consumers, stop them; the run's summary."""
        self.say("stopping producers, draining consumers ...")
        produce_seconds = time.monotonic() - self.started
        budget = StopBudget(max(STOP_BUDGET_S, self.opts.drain_timeout_s + STOP_RESERVE_S))
        # Noted as running, not folded as stopped: the summary says whether each camera was up when the run ended.
        self.pools.note_producer_stats(await member_answers((a.stop.remote() for a in self.pools.producers), budget.left(15)))
        kafka = await self.kafka_ledger() if self.start_offsets else None
        await self.drain(kafka, budget.left(self.opts.drain_timeout_s, keep=STOP_RESERVE_S))
        stopped: list[ConsumerStats] = await member_answers((c.stop.remote() for c in self.pools.consumers), budget.left(15, keep=5))
        self.pools.note_consumer_stats(stopped, stopped=True)
        events = None
        if self.events is not None:
            await self.events.drain(budget.left(60, keep=STOP_RESERVE_S))
            events = await self.events.stop()
        records, results_from = await self.results(budget.left(60))
        summary = build_summary(
            fleet=self.fleet.metadata.name,
            run_id=self.run_id,
            epoch_ms=self.epoch_ms,
            duration_s=produce_seconds,
            producer=self.pools.producer_totals(),
            records=records,
            results_from=results_from,
            cameras=[c.id for c in self.spec.cameras],
            kafka=kafka,
            shards={c.id: c.producer_shards for c in self.spec.cameras},
        )
        summary["pools"] = self.pools.summary()
        if events is not None:
            summary["events"] = events
        return summary

    async def results(self, timeout_s: float = 120.0) -> tuple[list[dict[str, Any]], str]:
        """The run's results and where they were read: the results log, or the run's span of the results topic
        (what is not read within `timeout_s` is reported in flight)."""
        if self.results_start is None:
            return read_records(self.results_log), str(self.results_log)
        topic = self.spec.kafka.results_topic
        try:
            end = (await end_offsets(self.bootstrap, [topic]))[topic]
            values = await read_span(self.bootstrap, topic, self.results_start, end, timeout_s)
        except KafkaUnavailable as err:
            self.say(f"ledger: cannot read the run's results from {topic}: {err}; they are reported in flight")
            return [], f"kafka topic {topic} (unreadable: {err})"
        return [orjson.loads(v) for v in values], f"kafka topic {topic}"

    def write_summary(self, summary: dict[str, Any]) -> None:
        """The summary in the run directory, at --summary, and, where the run keeps no local results (a job's
        Pods on Kubernetes, whose disks go with them), in the bucket: `Summaries/<fleet>/<run id>-<role>.json`
        beside the frames, kept as long as they are."""
        payload = orjson.dumps(summary, option=orjson.OPT_INDENT_2)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "summary.json").write_bytes(payload)
        if self.opts.summary_path:
            self.opts.summary_path.parent.mkdir(parents=True, exist_ok=True)
            self.opts.summary_path.write_bytes(payload)
        if not self.spec.results.local_log:
            key = summary_key(self.fleet.metadata.name, self.run_id, self.opts.role)
            try:
                uri = open_bucket(self.spec.bucket).put(key, payload)
            except (BucketConfigError, BucketError) as err:
                self.say(f"summary: not stored in the bucket ({err}); it is in this job's log")
            else:
                self.say(f"summary: {uri}")

    def _release(self) -> None:
        """Kill the actors and delete the Serve app this run started (also after a failed start)."""
        self.pools.release()
        if self.deployed_app is not None:
            from ray import serve

            with contextlib.suppress(Exception):  # Serve already shut down with its Ray instance
                serve.delete(self.deployed_app)
            self.deployed_app = None


async def run_fleet(fleet: CameraFleet, opts: RunOptions) -> dict[str, Any]:
    """The CLI's run: until the duration ends or SIGINT / SIGTERM; returns the summary."""
    runner = FleetRunner(fleet, opts)
    runner.stop_on_signals()  # also while starting: producers may wait for consumers
    async with runner:
        await runner.run_until_stopped()
    assert runner.summary is not None
    return runner.summary
