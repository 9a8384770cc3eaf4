"""Elastic pools on a Ray cluster of three nodes on this machine (a head and two workers, each started with
`ray start` as a user starts the nodes of a cluster): under load both pools grow onto the other nodes; a
worker node dies (its raylet and every process on it killed) and the run carries on; after the load steps
down both pools shrink to their minimum. The ledger balances throughout and a frame processed twice is
counted as a duplicate, never hidden.

Differences from a Kubernetes cluster: the nodes share one address and one disk (frames are in a local
folder every node reads), and no autoscaler adds nodes (the e2e tests do that with KubeRay). Waits are
for events the run prints, with bounds generous for a busy 2-core machine running three Ray nodes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from camerafleet_dev.devservers._process import free_port
from tests.fixtures.pipeline import health_model, slow_face_model, write_fleet

pytestmark = pytest.mark.integration

NODE_START_S = 240  # a Ray node joins in ~10 s idle; three on a loaded 2-core machine take minutes
EVENT_S = 300  # a pool decision needs its delay plus a few 5 s looks; actors start in seconds, minutes loaded
RAY = str(Path(sys.executable).parent / "ray")
# Said, not left to the machine: a `ray start` that finds a ~/.ray/auth_token (any token-auth cluster run on this
# machine before leaves one) turns token authentication on, and refuses this test's clients.
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}


def _node_ports() -> list[str]:
    """Every port a Ray node opens, free ones: nodes on one machine must not share any (the agent's default
    52365 above all)."""
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]


@dataclass
class RayNodes:
    address: str
    temp: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.temp / f"{name}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | NO_AUTH
        self.procs[name] = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *argv, *_node_ports()],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        """The node dies at once: its raylet, its object store and every worker on it."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):  # it ended by itself
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + NODE_START_S
        while self.alive() < count:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"Ray node {name} ended: {(self.temp / f'{name}.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{count} Ray nodes did not join within {NODE_START_S} s"
            time.sleep(2)

    def alive(self) -> int:
        probe = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
        env = os.environ | NO_AUTH
        out = subprocess.run([sys.executable, "-c", probe, self.address], env=env, capture_output=True, text=True, timeout=120, check=False)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


@pytest.fixture
def ray_nodes() -> Iterator[RayNodes]:
    temp = Path(tempfile.mkdtemp(prefix="cfel-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    nodes = RayNodes(f"127.0.0.1:{port}", temp)
    try:
        nodes.start("head", ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                             f"--ray-client-server-port={free_port()}", f"--temp-dir={temp}"])  # fmt: skip
        nodes.wait_for(1)  # a worker started before the head's GCS answers gives up
        for joined, name in enumerate(("worker-1", "worker-2"), start=2):  # one at a time: two joining at once on a
            nodes.start(name, [f"--address={nodes.address}", "--num-cpus=2"])  # busy 2-core machine time out
            nodes.wait_for(joined)
        yield nodes
    finally:
        for name in list(nodes.procs):
            nodes.kill(name)


@dataclass
class LiveRun:
    """`camerafleet run` in a session of its own, its output followed as it is written."""

    proc: subprocess.Popen
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, what: str, pattern: str, timeout_s: float = EVENT_S, since: int = 0) -> re.Match[str]:
        """The first line matching `pattern` printed after the first `since` characters of output."""
        deadline = time.monotonic() + timeout_s
        while not (match := re.search(pattern, self.text()[since:], re.MULTILINE)):
            assert self.proc.poll() is None, f"the run ended before {what}:\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s:\n{self.text()[-4000:]}"
            time.sleep(1)
        return match

    def processed(self) -> int:
        counts = re.findall(r"processed (\d+)", self.text())
        return int(counts[-1]) if counts else 0


def _fleet(tmp_path: Path, bootstrap: str, enabled: int, fps: float = 3) -> Path:
    # Four 720p cameras at 3 fps: 12 frames a second to encode. A producer target of 5% of a core asks for more
    # actors than the maximum; the slow face model keeps every consumer's batches in flight and the lag growing.
    # Admission is off: shedding at the source (what the slow model would otherwise cause) would leave the
    # producers idle, and this test is about the pools, not admission (the overload tests cover that).
    # Everything at its maximum (3 producers and 2 consumers, the ingress, faces and health replicas) asks for 2.25 of
    # the cluster's 5 CPUs, in quarters. Once a 2-CPU node is gone, what it held is placed again on the 3 CPUs left: at
    # least 0.75 of them is free on one node, room for the largest (the face replica, 0.5). With half-CPU producers
    # it asked for 3.0 of 3, and the 0.5 left was a quarter on each node: the face replica was never placed again
    # and nothing was processed after the node died.
    # A consumer keeps one request in flight to each model, whose replica takes two (targetOngoingRequests): a second
    # consumer is one the models can use (`consumers_models_can_use`). Frames age out after 20 s: the backlog the
    # slow model leaves (which keeps the consumers from shrinking, and which the final drain works through) is then
    # 20 s of frames, not a minute's.
    cameras = [{"id": f"cam{i}", "source": "synthetic:1280x720@30", "inferenceFps": fps, "enabled": i < enabled} for i in range(4)]
    pool = {"upscaleDelaySeconds": 5, "downscaleDelaySeconds": 20}
    return write_fleet(
        tmp_path / "fleet.yaml", "elastic", bootstrap, cameras=cameras, models=[slow_face_model(), health_model()],
        producer={"actors": 1, "cpusPerActor": 0.25, "admission": {"mode": "off"},
                  "autoscaling": {"minActors": 1, "maxActors": 3, "targetBusy": 0.05, **pool}},
        consumer={"actors": 1, "cpusPerActor": 0.25, "maxFrameAgeMs": 20000, "maxBatchFrames": 2, "maxInFlightBatches": 1,
                  "autoscaling": {"minActors": 1, "maxActors": 2, "targetBusy": 0.5, **pool}},
    )  # fmt: skip


def test_pools_grow_onto_other_nodes_survive_a_dead_node_and_shrink_after_with_nothing_lost(tmp_path, kafka_server, ray_nodes):
    manifest = _fleet(tmp_path, kafka_server.bootstrap, enabled=4)
    summary_path = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KAFKA_BOOTSTRAP")}
    env.update(RAY_ADDRESS=ray_nodes.address, CAMERAFLEET_SERVE_PORT=str(free_port()), **NO_AUTH)
    output = tmp_path / "run.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "camerafleet.cli", "run", str(manifest), "--progress-interval", "3", "--drain-timeout", "240",
             "--summary", str(summary_path)],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    run = LiveRun(proc, output)
    try:
        run.wait_for("a producer pool that grew under load", r"^producer pool: 1 -> \d actors \((busy|falling_behind)\)")
        run.wait_for("a consumer pool that grew under load", r"^consumer pool: 1 -> 2 actors \((busy|falling_behind)\)")
        run.wait_for("three producer actors", r"^producer pool: \d -> 3 actors")
        # Both pools at their maximum, every actor placed, before a node goes.
        run.wait_for("both pools grown and placed", r"actors 3 producing, 2 consuming$")

        ray_nodes.kill("worker-2")
        before = run.processed()
        deadline = time.monotonic() + EVENT_S
        while run.processed() < before + 20:  # frames of the cameras keep being processed without the node
            assert proc.poll() is None and time.monotonic() < deadline, f"nothing processed after the node died:\n{run.text()[-4000:]}"
            time.sleep(2)

        # The load steps down: one camera of four, at a rate the slow model keeps up with (so consumers idle too).
        stepped = len(run.text())
        _fleet(tmp_path, kafka_server.bootstrap, enabled=1, fps=0.5)
        run.wait_for("the producer pool back at its minimum", r"^producer pool: \d -> 1 actors \(idle\)", since=stepped)
        run.wait_for("the consumer pool back at its minimum", r"^consumer pool: 2 -> 1 actors \(idle\)", since=stepped)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the run drains and writes its summary
        try:
            proc.wait(timeout=420)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, run.text()[-4000:]

    s = orjson.loads(summary_path.read_bytes())
    assert s["ledger_balanced"], {k: s[k] for k in ("produced", "processed", "dropped", "failed", "in_flight")}
    assert s["processed"] > 0 and s["produced_from"] == "kafka_offsets"
    # A consumer that died with the node had batches in flight: their frames are read again by another, and the
    # ledger keeps each frame's first outcome and counts the repeat.
    assert set(s["failed_by_reason"]) <= {"inference_unavailable", "inference_timeout"}, s["failed_by_reason"]
    # Pool actors are placed with Ray's SPREAD, which takes the next node that has room in turn, for every SPREAD
    # placement of the cluster (Serve's replicas too): the two pools together are on several nodes, one pool alone
    # may land on one (seen: both consumers on one node, its producers on three).
    pools = s["pools"]
    assert len(set(pools["producer"]["nodes"]) | set(pools["consumer"]["nodes"])) >= 2, f"the pools ran on one node only: {pools}"
    assert [c["to"] for c in pools["changes"] if c["pool"] == "producer"][-1] == 1
    summary_changes = {(c["pool"], c["reason"]) for c in pools["changes"]}
    assert ("producer", "idle") in summary_changes and ("consumer", "idle") in summary_changes, pools["changes"]
