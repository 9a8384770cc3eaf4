"""The pools' scaling policy, without Ray: sizes follow the busy share, falling behind adds one, every change
waits for its delay, bounds hold, and a steady or noisy load changes nothing."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from camerafleet.api.manifest import FleetSpec, PoolAutoscalingSpec, ProducerSpec
from camerafleet.pool_scaling import (
    ActorWork,
    BusyWatch,
    FleetPools,
    GrowthWatch,
    Pool,
    PoolLoad,
    PoolScaler,
    PoolWatch,
    ScaleReason,
    ask,
    consumers_models_can_use,
    keep_order,
    pool_size_after_edit,
)
from camerafleet.stats import ProducerStats

SPEC = PoolAutoscalingSpec(min_actors=1, max_actors=6, target_busy=0.6, upscale_delay_seconds=15, downscale_delay_seconds=120)
LOOK_S = 5.0


def run(scaler: PoolScaler, actors: int, loads: list[tuple[float, bool]], start: float = 0.0) -> list[tuple[float, int, ScaleReason]]:
    """Feed one look every LOOK_S seconds; the pool follows each decision. Returns the changes (time, size, reason)."""
    changes = []
    for i, (busy, behind) in enumerate(loads):
        now = start + i * LOOK_S
        decision = scaler.decide(now, PoolLoad(actors, busy, behind))
        if decision.changes(actors):
            changes.append((now, decision.actors, decision.reason))
            actors = decision.actors
    return changes


def test_one_look_asks_for_the_hpa_size_within_bounds():
    assert ask(PoolLoad(2, 1.2), SPEC) == (4, ScaleReason.BUSY)  # ceil(2 x 1.2 / 0.6)
    assert ask(PoolLoad(4, 0.15), SPEC) == (1, ScaleReason.IDLE)
    assert ask(PoolLoad(2, 0.63), SPEC) == (2, ScaleReason.STEADY), "within 10% of the target: no change"
    assert ask(PoolLoad(2, 0.3, falling_behind=True), SPEC) == (3, ScaleReason.FALLING_BEHIND)
    assert ask(PoolLoad(5, 3.0), SPEC) == (6, ScaleReason.BUSY), "never above maxActors"
    assert ask(PoolLoad(6, 0.9, falling_behind=True), SPEC) == (6, ScaleReason.STEADY), "at the maximum, falling behind adds nothing"


def test_a_busy_pool_grows_once_the_upscale_delay_has_passed_not_before():
    changes = run(PoolScaler(SPEC), 1, [(1.5, False)] * 10)
    assert changes[0] == (15.0, 3, ScaleReason.BUSY), changes  # looks at 0, 5, 10 and 15 s all asked for ceil(1.5 / 0.6) = 3


def test_each_change_waits_its_delay_again_from_the_change():
    changes = run(PoolScaler(SPEC), 1, [(1.0, False)] * 12)  # busy stays high whatever the size: a pool that keeps growing
    assert [t for t, _, _ in changes] == [15.0, 30.0, 45.0], changes
    assert [n for _, n, _ in changes] == [2, 4, 6], "ceil(n x 1.0 / 0.6), capped at maxActors"


def test_an_idle_pool_shrinks_only_once_a_whole_downscale_delay_asked_for_fewer():
    loads = [(0.1, False)] * 20 + [(0.9, False)] + [(0.1, False)] * 30
    changes = run(PoolScaler(SPEC), 4, loads)
    # Looks from 0 to 95 s ask for 1 (not yet 120 s of them); the look at 100 s asks for 6; the first 120 s window
    # without it is the one of the look at 225 s (the window is closed: at 220 s the look at 100 s is still in it).
    assert changes == [(225.0, 1, ScaleReason.IDLE)], changes


def test_falling_behind_adds_one_actor_at_a_time_up_to_the_maximum():
    changes = run(PoolScaler(SPEC), 4, [(0.3, True)] * 20)
    assert changes == [(15.0, 5, ScaleReason.FALLING_BEHIND), (30.0, 6, ScaleReason.FALLING_BEHIND)], changes


def test_a_steady_load_near_the_target_makes_no_decision_for_an_hour():
    loads = [(0.6 + 0.05 * ((i * 7) % 3 - 1), False) for i in range(720)]  # 0.55, 0.6, 0.65 in turn
    assert run(PoolScaler(SPEC), 3, loads) == []


def test_a_load_swinging_between_busy_and_idle_every_look_does_not_flap():
    assert run(PoolScaler(SPEC), 3, [(1.2, False), (0.1, False)] * 100) == []


def test_edited_bounds_bring_the_pool_in_at_once():
    narrower = SPEC.model_copy(update={"max_actors": 2})
    decision = PoolScaler(narrower).decide(0.0, PoolLoad(5, 0.6))
    assert (decision.actors, decision.reason) == (2, ScaleReason.BOUNDS)


@settings(max_examples=200, deadline=None)
@given(
    loads=st.lists(st.tuples(st.floats(0, 3), st.booleans()), min_size=1, max_size=200),
    actors=st.integers(1, 6),
    up=st.sampled_from([0.0, 5.0, 15.0]),
    down=st.sampled_from([0.0, 30.0, 120.0]),
)
def test_any_load_keeps_the_pool_within_bounds_and_changes_no_faster_than_the_delays(loads, actors, up, down):
    spec = SPEC.model_copy(update={"upscale_delay_seconds": up, "downscale_delay_seconds": down})
    changes = run(PoolScaler(spec), actors, loads)
    sizes = [actors] + [n for _, n, _ in changes]
    assert all(spec.min_actors <= n <= spec.max_actors for n in sizes[1:])
    previous = 0.0
    for (t, _, _), (before, after) in zip(changes, itertools.pairwise(sizes), strict=True):
        assert t - previous >= (up if after > before else down), changes
        previous = t


def test_the_busy_share_is_work_over_time_alive_between_looks_and_a_restarted_actor_starts_again():
    watch = BusyWatch()
    assert watch.look([ActorWork("a", 1.0, 10.0), ActorWork("b", 0.0, 10.0)]) is None, "one look says nothing yet"
    assert watch.look([ActorWork("a", 4.0, 15.0), ActorWork("b", 1.0, 15.0)]) == (0.6 + 0.2) / 2
    assert watch.look([ActorWork("a", 0.5, 1.0), ActorWork("c", 0.0, 1.0)]) is None, "a restarted and a new actor have no past"


def test_growth_is_seen_from_the_second_look():
    watch = GrowthWatch()
    assert [watch.look(n) for n in (5, 5, 7, 3, 3)] == [False, False, True, False, False]


def test_an_edit_keeps_the_autoscaled_size_within_the_new_bounds_and_a_fixed_pool_takes_its_actors():
    fixed = ProducerSpec(actors=3)
    auto = ProducerSpec(actors=2, autoscaling={"minActors": 1, "maxActors": 4})
    assert pool_size_after_edit(fixed, 5) == 3
    assert pool_size_after_edit(auto, 3) == 3, "an edit elsewhere must not undo the autoscaler's choice"
    assert pool_size_after_edit(auto, 7) == 4 and pool_size_after_edit(auto, 0) == 2


def test_fleet_pools_read_the_actors_reports_and_keep_their_watch_across_an_unrelated_edit():
    spec = FleetSpec.model_validate(
        {
            "cameras": [{"id": "a", "source": "synthetic:"}],
            "models": [{"name": "h", "type": "camera-health"}],
            "producer": {"actors": 1, "autoscaling": {"minActors": 1, "maxActors": 3, "upscaleDelaySeconds": 0}},
        }
    )
    pools = FleetPools()
    pools.update_spec(spec)
    assert set(pools.watches) == {Pool.PRODUCER}
    watch = pools.watches[Pool.PRODUCER]
    busy = [ProducerStats("x", False, cpu_seconds=cpu, alive_seconds=alive) for cpu, alive in ((1.0, 10.0), (5.5, 15.0))]
    assert pools.look_producers(0.0, busy[:1], 1) is None, "one report says nothing of the busy share"
    pools.update_spec(spec.model_copy(update={"cameras": [*spec.cameras]}))
    assert pools.watches[Pool.PRODUCER] is watch
    decision = pools.look_producers(5.0, busy[1:], 1)
    assert decision is not None and (decision.actors, decision.reason) == (2, ScaleReason.BUSY)  # 0.9 of a core, target 0.6
    assert pools.look_consumers(5.0, [], 0, 1) is None, "the consumer pool is fixed"


def test_actors_waiting_to_be_placed_count_as_idle_and_falling_behind_waits_for_them():
    spec = PoolAutoscalingSpec.model_validate({"minActors": 1, "maxActors": 10, "targetBusy": 0.5, "upscaleDelaySeconds": 0})
    start = [ActorWork("a", 0.0, 10.0), ActorWork("b", 0.0, 10.0)]
    flat_out = [ActorWork("a", 5.0, 15.0), ActorWork("b", 5.0, 15.0)]  # both at a whole core, and the lag grew
    alone = PoolWatch(PoolScaler(spec))
    alone.look(0.0, 2, start, {"lag": 0})
    decision = alone.look(5.0, 2, flat_out, {"lag": 500})
    assert decision is not None and (decision.actors, decision.reason) == (4, ScaleReason.BUSY)
    helped = PoolWatch(PoolScaler(spec))
    helped.look(0.0, 4, start, {"lag": 0}, placing=2)
    decision = helped.look(5.0, 4, flat_out, {"lag": 500}, placing=2)
    assert decision is not None and (decision.actors, decision.reason) == (4, ScaleReason.STEADY), (
        "4 actors (2 on their way) at half busy is the target: no more, and the growing lag waits for the 2"
    )


def test_an_actor_that_does_not_answer_is_still_part_of_the_pool():
    """A restarting actor misses a look: the pool is the size it is, not the number of reports (a pool of 3 read
    as 2 once shrank by one with the reason `steady`)."""
    spec = PoolAutoscalingSpec.model_validate({"minActors": 1, "maxActors": 5, "targetBusy": 0.5, "upscaleDelaySeconds": 0})
    watch = PoolWatch(PoolScaler(spec))
    watch.look(0.0, 3, [ActorWork("a", 0.0, 10.0), ActorWork("b", 0.0, 10.0)], {})
    decision = watch.look(5.0, 3, [ActorWork("a", 2.5, 15.0), ActorWork("b", 2.5, 15.0)], {})
    assert decision is not None and (decision.actors, decision.reason) == (3, ScaleReason.STEADY)


def test_consumers_with_a_backlog_do_not_shrink_however_idle_they_look():
    spec = PoolAutoscalingSpec.model_validate({"minActors": 1, "maxActors": 4, "downscaleDelaySeconds": 0})
    assert ask(PoolLoad(3, 0.05, backlog=True), spec) == (3, ScaleReason.STEADY)
    assert ask(PoolLoad(3, 0.05), spec) == (1, ScaleReason.IDLE)
    assert ask(PoolLoad(3, 0.9, backlog=True), spec) == (4, ScaleReason.BUSY), "a backlog never holds a pool back from growing"


def test_consumers_grow_only_as_far_as_the_models_can_use_them():
    def fleet(consumer: dict, faces: dict) -> FleetSpec:
        face = {"name": "f", "type": "face", "modelUri": "/m.onnx", **faces}
        return FleetSpec.model_validate({"cameras": [{"id": "a", "source": "synthetic:"}], "models": [face], "consumer": consumer})

    # The bench: 2 face replicas at most, 2 requests each; one consumer keeps 4 batches x 2 chunks of 8 in flight.
    bench = fleet({"maxBatchFrames": 16, "maxInFlightBatches": 4}, {"batching": {"maxBatchSize": 8}, "autoscaling": {"maxReplicas": 2}})
    assert consumers_models_can_use(bench) == 1
    # Up to 8 replicas with one request in flight per consumer: 16 consumers keep them all at their target.
    one_each = {"maxBatchFrames": 2, "maxInFlightBatches": 1}
    assert consumers_models_can_use(fleet(one_each, {"batching": {"maxBatchSize": 2}, "autoscaling": {"maxReplicas": 8}})) == 16

    spec = PoolAutoscalingSpec.model_validate({"minActors": 1, "maxActors": 4, "upscaleDelaySeconds": 0})
    assert ask(PoolLoad(1, 1.0, useful_max=1), spec) == (1, ScaleReason.STEADY), "busy waiting on models at their maximum"
    assert ask(PoolLoad(1, 1.0, falling_behind=True, useful_max=1), spec) == (1, ScaleReason.STEADY), "behind for the same reason"
    assert ask(PoolLoad(1, 1.8, useful_max=2), spec) == (2, ScaleReason.BUSY), "as far as the models can use"
    assert ask(PoolLoad(2, 0.2, falling_behind=True, useful_max=2), spec) == (3, ScaleReason.FALLING_BEHIND), (
        "idle consumers falling behind are short of something else than the models: another one may help"
    )


def test_a_shrinking_pool_empties_whole_nodes_fewest_actors_first_newest_first():
    """Grown 2 -> 6 with SPREAD alternating between nodes a and b, then c got one: dropping the last three
    (newest) would leave a and b both busy; the order drops c's actor, then b's newest, b's next..."""
    nodes = ["a", "a", "b", "a", "b", "c"]
    order = keep_order(nodes)
    assert [nodes[i] for i in order] == ["a", "a", "a", "b", "b", "c"]
    assert order == [0, 1, 3, 2, 4, 5]
    assert {nodes[i] for i in order[:3]} == {"a"}, "shrunk to 3, only node a still holds actors: b and c can go"
    assert keep_order(["x", "x"]) == [0, 1] and keep_order([]) == []


@given(st.lists(st.sampled_from("abcd"), max_size=12))
def test_keep_order_is_a_permutation_that_keeps_each_nodes_actors_together(nodes):
    order = keep_order(nodes)
    assert sorted(order) == list(range(len(nodes)))
    kept = [nodes[i] for i in order]
    assert all(kept.index(n) + kept.count(n) - 1 == len(kept) - 1 - kept[::-1].index(n) for n in set(kept))
