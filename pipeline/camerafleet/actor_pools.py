"""The run's producer and consumer actors: sized at the start and by manifest edits, resized by their
autoscalers (`pool_scaling.py` decides, this carries it out), given their work again after Ray restarts one,
and said: the progress line, the run's metrics, the fleet's status and its Events.

A pool that grows gets its new actors first and hands them work only once Ray has placed them. On
Kubernetes a new actor may wait a minute or more for KubeRay's autoscaler to add a worker Pod (48 s on the
test cluster, more where an image is pulled): camera shards moved to an actor that is not running yet would
miss their slots meanwhile. The run's loop goes on while they wait (`settle` on each look); an actor not
placed within PLACE_S is given up and said, and the pool stays as it is until its autoscaler asks again.
A pool that shrinks moves its shards first (with a lead time, HANDOVER_S), or lets its consumers finish their
batches and leave the group, and only then stops the actors it no longer needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from camerafleet.api.manifest import FleetSpec
from camerafleet.api.pool_status import PoolStatus, now_rfc3339
from camerafleet.consumer import ConsumerActor
from camerafleet.pool_scaling import Decision, FleetPools, Pool, ScaleReason, keep_order
from camerafleet.producer import ProducerActor, ShardKey, plan_shards
from camerafleet.sources import CameraGrids, Grid
from camerafleet.stats import CameraOutcomes, ConsumerStats, ProducerCameraStats, ProducerStats, merge_outcomes, merge_producer_stats
from camerafleet.status_writer import StatusWriter

if TYPE_CHECKING:
    from camerafleet.driver_metrics import RunMetrics

log = logging.getLogger("camerafleet.run")

HANDOVER_S = 3.0  # lead time for a camera shard moving between producer actors to open its source
# Pool actors are spread over the cluster's nodes (best effort; Ray's default packs them onto the driver's node
# first): a node that dies takes fewer of a pool's actors with it, and a growing pool uses the other nodes' cores.
POOL_PLACEMENT = "SPREAD"
PLACE_S = 300.0  # a new actor Ray has not placed by then is given up: the cluster has no room for it
CHANGES_KEPT = 200  # the summary lists the last pool changes: a week's run must not grow it without bound
STATUS_REFRESH_S = 60.0  # the fleet's status.pools is written on each change and at least this often
# A pool member that does not answer a routine call (stats, a new spec, its shards) in this time is left out
# of that round, logged: a restarting actor answers within seconds, a hung one never would.
ACTOR_CALL_S = 30.0
# How long a new consumer may take to join its group and start (Kafka's group join waits up to a rebalance).
ACTOR_START_S = 120.0


@dataclass
class Placing:
    """A new actor Ray has not placed yet: `ready` ends with its first answer."""

    actor: Any
    ready: asyncio.Future[Any]
    since: float


class ActorPools:
    def __init__(
        self,
        fleet: str,
        spec: FleetSpec,
        epoch_ms: int,
        results_log: Path,
        say: Callable[[str], None],
        metrics: RunMetrics | None = None,
        status: StatusWriter | None = None,
    ) -> None:
        self.fleet, self.spec, self.epoch_ms, self.results_log = fleet, spec, epoch_ms, results_log
        self.say, self.metrics, self.status = say, metrics, status
        self.started = time.monotonic()
        self.producers: list[Any] = []
        self.producer_plan: list[set[ShardKey]] = []
        self.grids = CameraGrids(epoch_ms / 1000)
        self.producer_grids: dict[str, Grid] = {}  # what the producers were last given
        # The last stats seen of every producer actor incarnation that may still run, crashed ones included (an actor
        # Ray restarts comes back with zeroed counters, so its predecessor's stay counted here), and the final stats of
        # those stopped folded into one: one entry per camera however often the pool changes.
        self.producer_stats: dict[str, ProducerStats] = {}
        self.stopped_producers = ProducerStats(incarnation="stopped", restarted=False)
        self.consumers: list[Any] = []
        # Outcomes of every consumer incarnation: the last stats of those that may still be running, and the final
        # counts of those stopped folded into one, so the run's totals never go back when the pool shrinks (they
        # did: processed 145 -> 78 when a consumer of two left) and stay one entry per camera however often it does.
        self.consumer_stats: dict[str, ConsumerStats] = {}
        self.stopped_consumers = ConsumerStats()
        self.nodes: dict[Pool, set[str]] = {pool: set() for pool in Pool}  # every node each pool's actors were seen on
        self.node_of: dict[Any, str] = {}  # the node Ray placed each member on (by actor id), for choosing who leaves
        self.desired: dict[Pool, int] = {}  # the pools this run runs, and the size each should have
        self.placing: dict[Pool, list[Placing]] = {Pool.PRODUCER: [], Pool.CONSUMER: []}
        self.scaling = FleetPools()  # the autoscaled pools' watches (none when both pools are fixed)
        self.scaling.update_spec(spec)
        self.changes: deque[dict[str, Any]] = deque(maxlen=CHANGES_KEPT)
        self.last_scale: dict[Pool, tuple[str, str]] = {}  # when and why each pool last changed size
        self.written: dict[Pool, PoolStatus] = {}
        self.next_status = 0.0

    def members(self, pool: Pool) -> list[Any]:
        return self.producers if pool is Pool.PRODUCER else self.consumers

    def autoscaled(self) -> bool:
        return any(pool in self.scaling.watches for pool in self.desired)

    def update_spec(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.scaling.update_spec(spec)

    # -- sizes ---------------------------------------------------------------------------------------

    async def resize(self, pool: Pool, n: int, *, wait: bool = False) -> None:
        """Make `pool` `n` actors: shrink now; grow by placing new actors, which get work once placed (`wait`:
        before this returns, else on a later `settle`)."""
        self.desired[pool] = n
        placing, members = self.placing[pool], self.members(pool)
        while placing and len(members) + len(placing) > n:
            _kill(placing.pop().actor)
        if len(members) > n:
            await self._shrink(pool, n)
        for _ in range(n - len(members) - len(placing)):
            placing.append(self._new(pool))
        if wait:
            for p in placing:
                await _answer(p.ready, ACTOR_START_S, f"placing a new {pool} actor")
        await self.settle()

    def _new(self, pool: Pool) -> Placing:
        spec_json = self.spec.model_dump_json(by_alias=True)
        if pool is Pool.PRODUCER:
            # ray.remote adds `.options`; mypy does not apply class decorators.
            options = ProducerActor.options(num_cpus=self.spec.producer.cpus_per_actor, scheduling_strategy=POOL_PLACEMENT)  # type: ignore[attr-defined]
            actor = options.remote(spec_json, self.epoch_ms, self.fleet)
        else:
            options = ConsumerActor.options(num_cpus=self.spec.consumer.cpus_per_actor, scheduling_strategy=POOL_PLACEMENT)  # type: ignore[attr-defined]
            actor = options.remote(spec_json, str(self.results_log), self.fleet)
        return Placing(actor, asyncio.ensure_future(actor.stats.remote()), time.monotonic())

    async def settle(self) -> None:
        """Put placed actors to work; give up those Ray could not place within PLACE_S."""
        for pool, placing in self.placing.items():
            placed = [p for p in placing if p.ready.done() and p.ready.exception() is None]
            late = [p for p in placing if p not in placed and (p.ready.done() or time.monotonic() - p.since > PLACE_S)]
            for p in late:
                placing.remove(p)
                p.ready.cancel()
                _kill(p.actor)
            if late:
                self.desired[pool] = len(self.members(pool)) + len(placing)  # nothing asks for the others any more
                text = (
                    f"{pool} pool: {len(late)} new actor(s) not placed within {PLACE_S:.0f} s, given up: the Ray cluster has no "
                    "room for them (`ray status`; on Kubernetes: the worker group's maxReplicas, the nodes' free CPUs)"
                )
                self.say(text)
                if self.status is not None:
                    await asyncio.to_thread(self.status.event, "PoolShortOfCapacity", text, "Warning")
            if not placed:
                continue
            for p in placed:
                placing.remove(p)
                node = p.ready.result().node  # its first answer: the stats of where Ray placed it
                self.nodes[pool].add(node)
                self.node_of[p.actor._actor_id] = node
            if pool is Pool.CONSUMER:
                spec_json = self.spec.model_dump_json(by_alias=True)
                self.consumers += [p.actor for p in placed]  # one that fails to start is started again by restart_lost_members
                await member_answers((p.actor.start.remote(spec_json) for p in placed), ACTOR_START_S)
            else:
                self.producers += [p.actor for p in placed]
                self.producer_plan += [set() for _ in placed]
                await self._assign_shards(len(self.producers))
        await self.report()

    def _order_for_leaving(self, pool: Pool) -> None:
        """The pool's members reordered so that those to drop first are last (`keep_order`: whole nodes emptied)."""
        members = self.members(pool)
        order = keep_order([self.node_of.get(a._actor_id, "") for a in members])
        members[:] = [members[i] for i in order]
        if pool is Pool.PRODUCER:
            self.producer_plan = [self.producer_plan[i] for i in order]

    async def _shrink(self, pool: Pool, n: int) -> None:
        self._order_for_leaving(pool)
        if pool is Pool.CONSUMER:
            while len(self.consumers) > n:  # each finishes its batches and leaves the group first
                actor = self.consumers.pop()
                self.note_consumer_stats(await member_answers([actor.stop.remote()], ACTOR_START_S), stopped=True)
                self._forget(actor)
            return
        await self._assign_shards(n)  # the shards of the actors that go move to the first n
        while len(self.producers) > n:
            actor = self.producers.pop()
            self.producer_plan.pop()
            self.note_producer_stats(await member_answers([actor.stop.remote()], ACTOR_START_S), stopped=True)
            self._forget(actor)

    def _forget(self, actor: Any) -> None:
        self.node_of.pop(actor._actor_id, None)
        _kill(actor)

    async def _assign_shards(self, n: int) -> None:
        """Camera shards over the first `n` producers (the others get none). Moves happen at a handover time a few
        seconds ahead: the old owner produces the slots before it, the new owner (already placed) those after. A
        member that cannot take its shards now (its node died, Ray is restarting it) gets them from
        restart_lost_members once it is back."""
        spec_json = self.spec.model_dump_json(by_alias=True)
        plan = [{s.key for s in shards} for shards in plan_shards(self.spec, n)]
        plan += [set() for _ in range(len(self.producers) - n)]
        handover = time.time() + HANDOVER_S if any(self.producer_plan) else None
        self.producer_plan = plan
        cameras = [(c.id, c.inference_fps) for c in self.spec.cameras if c.enabled]
        grids = self.producer_grids = self.grids.follow(cameras, handover or time.time())
        await member_answers(
            (a.assign.remote(spec_json, sorted(p), grids, handover) for a, p in zip(self.producers, plan, strict=True)), ACTOR_START_S
        )

    async def apply_spec(self, spec: FleetSpec, sizes: dict[Pool, int]) -> None:
        """A manifest edit: the new spec to every member, the pools resized to `sizes`, shards planned anew over the
        producers placed (new ones join when Ray has placed them: on Kubernetes an edit that asks for more actors
        than the cluster holds waits for a worker Pod, or is given up and said, instead of ending the run)."""
        self.update_spec(spec)
        spec_json = spec.model_dump_json(by_alias=True)
        if Pool.CONSUMER in self.desired:
            await member_answers(c.update_spec.remote(spec_json) for c in self.consumers)
        for pool in (Pool.CONSUMER, Pool.PRODUCER):
            if pool in self.desired and sizes[pool] != self.desired[pool]:
                await self._scale(pool, self.desired[pool], sizes[pool], ScaleReason.MANIFEST)
        if Pool.PRODUCER in self.desired:
            await self._assign_shards(len(self.producers))

    async def restart_lost_members(self) -> None:
        """Ray restarts a crashed actor with a fresh state: give it its work again (both calls are idempotent)."""
        spec_json = self.spec.model_dump_json(by_alias=True)
        calls = [c.start.remote(spec_json) for c in self.consumers]
        calls += [
            a.assign.remote(spec_json, sorted(plan), self.producer_grids)
            for a, plan in zip(self.producers, self.producer_plan, strict=True)
        ]
        await member_answers(calls)

    # -- autoscaling -----------------------------------------------------------------------------------

    async def autoscale(self, producers: list[ProducerStats]) -> None:
        """Look at each autoscaled pool and resize it when its autoscaler decides so (`pool_scaling.py`)."""
        now = time.monotonic()
        size = {pool: len(self.members(pool)) + len(self.placing[pool]) for pool in Pool}
        placing = {pool: len(self.placing[pool]) for pool in Pool}
        looks: list[tuple[Pool, Decision | None]] = []
        if Pool.PRODUCER in self.desired:
            looks.append((Pool.PRODUCER, self.scaling.look_producers(now, producers, size[Pool.PRODUCER], placing[Pool.PRODUCER])))
        if Pool.CONSUMER in self.desired and Pool.CONSUMER in self.scaling.watches:
            consumers: list[ConsumerStats] = await member_answers(c.stats.remote() for c in self.consumers)
            self.note_consumer_stats(consumers)
            shed = sum(c.shed_slots for c in self.producer_totals().values())
            decision = self.scaling.look_consumers(now, consumers, shed, size[Pool.CONSUMER], placing[Pool.CONSUMER])
            looks.append((Pool.CONSUMER, decision))
        for pool, decision in looks:
            watch = self.scaling.watches.get(pool)
            if self.metrics is not None and watch is not None:
                self.metrics.pool(pool, len(self.members(pool)), watch.last_busy)
            if decision is not None and decision.changes(size[pool]):
                await self._scale(pool, size[pool], decision.actors, decision.reason)

    async def _scale(self, pool: Pool, current: int, n: int, reason: ScaleReason) -> None:
        """A change of a pool's size, said (log, the summary's changes, metrics, an Event, status.pools), then made."""
        text = f"{pool} pool: {current} -> {n} actors ({reason})"
        self.say(text)
        self.changes.append({"pool": pool, "from": current, "to": n, "reason": reason, "atS": round(time.monotonic() - self.started, 1)})
        self.last_scale[pool] = (now_rfc3339(), reason)
        if self.metrics is not None:
            self.metrics.pool_scaled(pool, current, n, reason)
        if self.status is not None:
            await asyncio.to_thread(self.status.event, "PoolScaled", text)
        await self.resize(pool, n)

    # -- what is seen --------------------------------------------------------------------------------

    def note_producer_stats(self, answers: Iterable[ProducerStats], *, stopped: bool = False) -> None:
        for stats in answers:
            self.nodes[Pool.PRODUCER].add(stats.node)
            if stopped:
                self.producer_stats.pop(stats.incarnation, None)
                for camera in stats.cameras.values():
                    camera.source_up = False  # its sources are closed: whether a camera is up is for its live owner to say
                self.stopped_producers.cameras = merge_producer_stats([self.stopped_producers, stats])
            else:
                self.producer_stats[stats.incarnation] = stats

    def producer_totals(self) -> dict[str, ProducerCameraStats]:
        """Each camera's producer stats of the run so far, over every producer incarnation."""
        return merge_producer_stats([self.stopped_producers, *self.producer_stats.values()])

    def note_consumer_stats(self, answers: Iterable[ConsumerStats], *, stopped: bool = False) -> None:
        for stats in answers:
            self.nodes[Pool.CONSUMER].add(stats.node)
            if stopped:
                self.consumer_stats.pop(stats.incarnation, None)
                self.stopped_consumers.cameras = merge_outcomes([self.stopped_consumers, stats])
            else:
                self.consumer_stats[stats.incarnation] = stats

    def consumer_outcomes(self) -> dict[str, CameraOutcomes]:
        """Outcomes per camera of the run so far, over every consumer incarnation."""
        return merge_outcomes([self.stopped_consumers, *self.consumer_stats.values()])

    def pool_status(self, pool: Pool) -> PoolStatus:
        waiting = len(self.placing[pool])
        when, why = self.last_scale.get(pool, (None, None))
        return PoolStatus(
            actors=len(self.members(pool)),
            desired_actors=self.desired[pool],
            nodes=len(self.nodes[pool]),
            last_scale_time=when,
            last_scale_reason=why,
            message=f"{waiting} new actor(s) waiting for Ray to place them" if waiting else "",
        )

    async def report(self, *, force: bool = False) -> None:
        """The pools' sizes in the run's metrics, and in the fleet's status when they changed (or a while passed)."""
        pools = {pool: self.pool_status(pool) for pool in self.desired}
        if self.metrics is not None:
            for pool, status in pools.items():
                self.metrics.pool(pool, status.actors)
        if self.status is None:
            return
        if force or pools != self.written or time.monotonic() >= self.next_status:
            self.written, self.next_status = pools, time.monotonic() + STATUS_REFRESH_S
            await asyncio.to_thread(self.status.pools, {str(pool): s for pool, s in pools.items()})

    def describe(self) -> str:
        """The pools for the progress line: `actors 2 producing (+1 placing), 1 consuming`."""
        parts = []
        for pool, verb in ((Pool.PRODUCER, "producing"), (Pool.CONSUMER, "consuming")):
            if pool in self.desired:
                waiting = len(self.placing[pool])
                parts.append(f"{len(self.members(pool))} {verb}" + (f" (+{waiting} placing)" if waiting else ""))
        return "actors " + ", ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "producer": {"actors": len(self.producers), "nodes": sorted(self.nodes[Pool.PRODUCER])},
            "consumer": {"actors": len(self.consumers), "nodes": sorted(self.nodes[Pool.CONSUMER])},
            "changes": list(self.changes),
        }

    def release(self) -> None:
        """Kill every actor of the run, those still being placed too (also after a failed start)."""
        for actor in [*self.producers, *self.consumers, *(p.actor for ps in self.placing.values() for p in ps)]:
            _kill(actor)
        self.producers, self.consumers = [], []
        self.placing = {Pool.PRODUCER: [], Pool.CONSUMER: []}
        self.node_of.clear()


def _kill(actor: Any) -> None:
    with contextlib.suppress(Exception):  # already dead
        ray.kill(actor)


async def member_answers(calls: Any, timeout_s: float = ACTOR_CALL_S) -> list[Any]:
    """Results of actor calls, leaving out members that are dead, restarting or do not answer within
    `timeout_s` (logged)."""
    results = await asyncio.gather(*(asyncio.wait_for(c, timeout_s) for c in calls), return_exceptions=True)
    for err in (r for r in results if isinstance(r, BaseException)):
        why = f"no answer within {timeout_s:.0f} s" if isinstance(err, TimeoutError) else type(err).__name__
        log.warning("a pool member did not answer: %s", why)
    return [r for r in results if not isinstance(r, BaseException)]


async def _answer(call: asyncio.Future[Any], timeout_s: float, what: str) -> Any:
    """One actor call that must succeed (a new actor's first answer at the start), within `timeout_s`."""
    try:
        return await asyncio.wait_for(asyncio.shield(call), timeout_s)
    except TimeoutError:
        raise RuntimeError(f"{what} did not finish within {timeout_s:.0f} s; is the Ray cluster short of CPUs? (`ray status`)") from None
