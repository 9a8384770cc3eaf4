"""The run's totals over a pool whose consumers come and go."""

from collections import Counter
from pathlib import Path

from camerafleet.actor_pools import ActorPools
from camerafleet.api.manifest import FleetSpec
from camerafleet.api.outcomes import Reason
from camerafleet.pool_scaling import Pool
from camerafleet.stats import CameraOutcomes, ConsumerStats, ProducerCameraStats, ProducerStats

FACE = {"name": "faces", "type": "face", "modelUri": "/models/centerface.onnx"}


def _stats(incarnation: str, processed: int, stale: int = 0, node: str = "n1") -> ConsumerStats:
    outcomes = CameraOutcomes(processed=processed, dropped=Counter({Reason.STALE: stale}) if stale else Counter())
    return ConsumerStats(cameras={"a": outcomes}, incarnation=incarnation, node=node)


def test_a_consumer_that_stops_keeps_its_outcomes_in_the_totals():
    spec = FleetSpec.model_validate({"cameras": [{"id": "a", "source": "synthetic:"}], "models": [FACE]})
    pools = ActorPools("demo", spec, 0, Path("/nonexistent/results.jsonl"), say=print)
    pools.note_consumer_stats([_stats("c1", 10, stale=2), _stats("c2", 5, node="n2")])
    pools.note_consumer_stats([_stats("c1", 12, stale=2), _stats("c2", 7, node="n2")])  # the latest of each counts
    assert pools.consumer_outcomes()["a"].processed == 19
    pools.note_consumer_stats([_stats("c2", 8, node="n2")], stopped=True)  # the pool shrinks: c2 leaves
    pools.note_consumer_stats([_stats("c1", 13, stale=3)])
    outcomes = pools.consumer_outcomes()["a"]
    assert (outcomes.processed, outcomes.dropped[Reason.STALE]) == (21, 3)
    pools.note_consumer_stats([_stats("c3", 1, node="n3")], stopped=True)  # a second consumer stops: folded in too
    assert pools.consumer_outcomes()["a"].processed == 22
    assert len(pools.consumer_stats) == 1  # stopped incarnations are folded into one total, not kept one by one
    assert pools.nodes[Pool.CONSUMER] == {"n1", "n2", "n3"}


def test_a_producer_that_stops_keeps_its_counts_in_the_totals():
    spec = FleetSpec.model_validate({"cameras": [{"id": "a", "source": "synthetic:"}], "models": [FACE]})
    pools = ActorPools("demo", spec, 0, Path("/nonexistent/results.jsonl"), say=print)

    def stats(incarnation: str, produced: int, restarted: bool = False) -> ProducerStats:
        return ProducerStats(incarnation, restarted, cameras={"a": ProducerCameraStats(produced=produced, shed_slots=1, source_up=True)})

    pools.note_producer_stats([stats("p1", 10), stats("p2", 4, restarted=True)])
    pools.note_producer_stats([stats("p2", 6, restarted=True)], stopped=True)  # the camera moves from p2 to p1
    pools.note_producer_stats([stats("p1", 11), stats("p3", 2)])
    a = pools.producer_totals()["a"]
    assert (a.produced, a.shed_slots, a.restarts) == (19, 3, 1)
    pools.note_producer_stats([stats("p1", 12), stats("p3", 3)], stopped=True)  # the run stops
    a = pools.producer_totals()["a"]
    assert (a.produced, a.restarts, a.source_up) == (21, 1, False), "a stopped producer's camera is not up"
    assert pools.producer_stats == {}
