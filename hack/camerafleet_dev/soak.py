"""`make soak`: a day of running, compressed. The production layout on the cluster of `make cluster-up`
(the charts and examples/cluster-fleet.yaml with the CPU-only overlay, installed as the README says) runs
for SOAK_MINUTES under its cameras' steady load, with a camera edit and one Pod deleted every few
minutes, while every Pod's memory, ephemeral storage, open file descriptors and threads, the consumers'
Kafka lag and the ledger are sampled. The report (out/soak/report.md, samples.json and plots) gives each
series' slope after the warm-up: nothing may grow without bound.

Memory and storage come from the kubelet's summary API (through the API server); descriptors and threads
from /proc on this machine, where the Pods' processes run (matched to their Pod by the `pod<uid>` of their
cgroup); lag and the ledger from Kafka alone, as the e2e tests count them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camerafleet.topics import KafkaUnavailable, end_offsets

ROOT = Path(__file__).resolve().parents[2]
NS, OPERATOR_NS, FLEET = "default", "camerafleet-system", "example"
# The example leaves its Kafka names unset: on Kubernetes they are the fleet's own (the operator's tenancy.per_fleet).
OWN = f"{NS}.{FLEET}"
GROUP, RESULTS, DEADLETTER, CAMERA_PREFIX = OWN, f"{OWN}.results", f"{OWN}.deadletter", f"{OWN}.camera_"
APPLY = (
    '"$KUBECTL" patch --local -f examples/cluster-fleet.yaml --type merge --patch-file examples/overlays/cpu-only.yaml -o yaml '
    '| sed -e "s#camerafleet-kafka:9092#$KAFKA_BOOTSTRAP#" -e "s#http://camerafleet-minio:9000#$CAMERAFLEET_S3_ENDPOINT#"'
)
EDIT_CAMERA = {"id": "soak", "source": "synthetic:1280x720@30"}
# Pods deleted in turn, one per disturbance: the serving worker, then each job's worker and head.
VICTIMS = ("serving worker", "consumer worker", "producer worker", "consumer head", "producer head")


def say(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


@dataclass
class Cluster:
    env: dict[str, str]

    def run(self, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, env={**os.environ, **self.env}, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])} ... failed: {proc.stderr[-1000:]}")
        return proc.stdout

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return self.run(self.env["KUBECTL"], *args, stdin=stdin, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))


def install(c: Cluster) -> None:
    """The README's install, with the host's Kafka and MinIO (as `make test-e2e` does)."""
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "charts" / "camerafleet-operator" / "crds"))
    helm = c.env["HELM"]
    c.run(
        helm,
        "upgrade",
        "--install",
        "camerafleet-operator",
        str(ROOT / "charts" / "camerafleet-operator"),
        "-n",
        OPERATOR_NS,
        "--create-namespace",
    )
    c.run(
        helm, "upgrade", "--install", "camerafleet-stack", str(ROOT / "charts" / "camerafleet-stack"),
        "--set", f"kafka.external.bootstrapServers={c.env['KAFKA_BOOTSTRAP']}",
        "--set", f"s3.external.endpoint={c.env['CAMERAFLEET_S3_ENDPOINT']}",
        "--set", f"s3.external.accessKeyId={c.env['AWS_ACCESS_KEY_ID']}",
        "--set", f"s3.external.secretAccessKey={c.env['AWS_SECRET_ACCESS_KEY']}",
    )  # fmt: skip
    manifest = c.run("bash", "-c", APPLY)
    if not c.kubectl("get", "camerafleet", FLEET, "-n", NS, "--ignore-not-found", "-o", "name"):
        asyncio.run(fresh_topics(c.env["KAFKA_BOOTSTRAP"]))  # a fleet already running keeps its topics (and ledger)
    c.kubectl("apply", "-f", "-", stdin=manifest)


async def fresh_topics(bootstrap: str) -> None:
    """An earlier run's topics go (the operator creates them again): the soak's ledger counts from offset 0."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        stale = [t for t in await admin.list_topics() if t.startswith(CAMERA_PREFIX) or t in (RESULTS, DEADLETTER)]
        if stale:
            await admin.delete_topics(stale)
    finally:
        await admin.close()


def ready(c: Cluster) -> bool:
    conditions = ((c.json("get", "camerafleet", FLEET, "-n", NS).get("status") or {}).get("conditions")) or []
    return any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)


def _container_of_pid(pid: str) -> str | None:
    """The container a process runs in: its cgroup is `/k8s.io/<container id>` (the kubelets run with
    cgroupsPerQOS off) or, with Pod cgroups, `.../pod<uid>/<container id>`."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if "/k8s.io/" in path or "/pod" in path:
            return path.rstrip("/").rsplit("/", 1)[-1]
    return None


@dataclass
class ProcessCounts:
    """What a container's (or a Pod's) processes hold: open file descriptors, threads, and the Serve replicas
    among them by deployment (their process title is `ray::ServeReplica:<app>:<deployment>`)."""

    fds: int = 0
    threads: int = 0
    replicas: Counter[str] = field(default_factory=Counter)

    def add(self, other: ProcessCounts) -> None:
        self.fds, self.threads = self.fds + other.fds, self.threads + other.threads
        self.replicas.update(other.replicas)


def _replica_of(pid: str) -> str | None:
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None
    # While a replica runs a method its title ends in `.<method>`.
    return title.rsplit(":", 1)[-1].split()[0].split(".")[0] if title.startswith("ray::ServeReplica:") else None


def process_counts() -> dict[str, ProcessCounts]:
    """Per container id: what its processes hold."""
    out: dict[str, ProcessCounts] = {}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        container = _container_of_pid(pid)
        if container is None:
            continue
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            threads = int(
                next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Threads:")).split()[1]
            )
        except (OSError, StopIteration, ValueError):
            continue
        replica = _replica_of(pid)
        out.setdefault(container, ProcessCounts()).add(ProcessCounts(fds, threads, Counter([replica] if replica else [])))
    return out


def pod_process_counts(c: Cluster) -> dict[str, ProcessCounts]:
    """Per Pod uid in the fleet's namespace: what its containers' processes hold. Pods being deleted are left out:
    their processes drain and exit (the jobs' preStop hooks take up to two minutes), which reads as a fall."""
    counts = process_counts()
    out = {}
    for pod in c.json("get", "pods", "-n", NS)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ids = [s.get("containerID", "").split("//")[-1] for s in (pod.get("status") or {}).get("containerStatuses") or []]
        total = ProcessCounts()
        for i in ids:
            if i in counts:
                total.add(counts[i])
        out[pod["metadata"]["uid"]] = total
    return out


async def kafka_state(bootstrap: str, topics: list[str]) -> tuple[int, int]:
    """(announced, lag): messages on the camera topics, and how many the consumer group has not committed."""
    from aiokafka.admin import AIOKafkaAdminClient

    ends = await end_offsets(bootstrap, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    announced = sum(sum(parts.values()) for parts in ends.values())
    done = sum(meta.offset for tp, meta in committed.items() if tp.topic in ends and meta.offset >= 0)
    return announced, announced - done


@dataclass
class Series:
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, t: float, key: str, value: float, pod: str | None = None) -> None:
        """`pod`: the Pod a value is of, so that a replaced Pod's series starts again (its warm-up is not a leak)."""
        self.samples.append({"t": round(t, 1), "key": key, "value": value, **({"pod": pod} if pod else {})})


def sample(c: Cluster, started: float, series: Series, topics: list[str]) -> None:
    t = time.time() - started
    node = c.json("get", "nodes")["items"]
    counts = pod_process_counts(c)
    for n in node:
        stats = json.loads(c.kubectl("get", "--raw", f"/api/v1/nodes/{n['metadata']['name']}/proxy/stats/summary"))
        for pod in stats["pods"]:
            if pod["podRef"]["namespace"] != NS or pod["podRef"]["uid"] not in counts:  # another's, or being deleted
                continue
            name, uid = _role_of(pod["podRef"]["name"]), pod["podRef"]["uid"]
            series.add(t, f"memory MiB {name}", round(pod.get("memory", {}).get("workingSetBytes", 0) / 2**20, 1), uid)
            series.add(t, f"storage MiB {name}", round(pod.get("ephemeral-storage", {}).get("usedBytes", 0) / 2**20, 2), uid)
            held = counts[uid]
            series.add(t, f"fds {name}", held.fds, uid)
            series.add(t, f"threads {name}", held.threads, uid)
            for deployment, replicas in held.replicas.items():
                series.add(t, f"replicas {deployment} on {name}", replicas)
    announced, lag = asyncio.run(kafka_state(c.env["KAFKA_BOOTSTRAP"], topics))
    series.add(t, "kafka lag", lag)
    pools = (c.json("get", "camerafleet", FLEET, "-n", NS).get("status") or {}).get("pools") or {}
    for role, pool in pools.items():
        series.add(t, f"replicas {role} actors", (pool or {}).get("actors", 0))
    series.add(t, "frames announced", announced)


def _role_of(pod_name: str) -> str:
    """A Pod's role in the fleet, stable across its replacements (names carry random suffixes)."""
    for role in ("serving", "producer", "consumer"):
        if pod_name.startswith(f"{FLEET}-{role}"):
            kind = "head" if "-head" in pod_name else "worker"
            return f"{role} {kind}"
    return pod_name.rsplit("-", 2)[0]


def disturb(c: Cluster, turn: int) -> str:
    """One camera edit (the soak camera added or removed) and one Pod deleted, in turn."""
    fleet = c.json("get", "camerafleet", FLEET, "-n", NS)
    cameras = [cam for cam in fleet["spec"]["cameras"] if cam["id"] != EDIT_CAMERA["id"]]
    if turn % 2 == 0:
        cameras.append(EDIT_CAMERA)
    c.kubectl("patch", "camerafleet", FLEET, "-n", NS, "--type=merge", "-p", json.dumps({"spec": {"cameras": cameras}}))
    victim = VICTIMS[turn % len(VICTIMS)]
    role, kind = victim.split()
    pods = c.json("get", "pods", "-n", NS, "-l", f"camerafleet.io/component={role},ray.io/node-type={kind}")["items"]
    if pods:
        c.kubectl("delete", "pod", "-n", NS, pods[0]["metadata"]["name"], "--wait=false")
    return f"camera {EDIT_CAMERA['id']} {'added' if turn % 2 == 0 else 'removed'}; {victim} Pod {'deleted' if pods else 'not found'}"


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mt, mv = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    var = sum((p[0] - mt) ** 2 for p in points)
    return 0.0 if var == 0 else sum((p[0] - mt) * (p[1] - mv) for p in points) / var * 3600


def longest_lived_slope(samples: list[dict[str, Any]], warmup_s: float) -> tuple[float, float] | None:
    """(slope per hour, minutes judged) of the Pod seen longest among `samples` (one series, several Pods when
    one was replaced), over its samples after its own warm-up. A replaced Pod's series starts again: summed
    over its role, a new Pod warming up reads as growth (the serving worker's three faces replicas take
    2.8 -> 4.2 GiB in their first minutes)."""
    by_pod: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        if "pod" in s:
            by_pod.setdefault(s["pod"], []).append((s["t"], s["value"]))
    steady = [[p for p in points if p[0] >= points[0][0] + warmup_s] for points in by_pod.values()]
    longest = max(steady, key=lambda points: points[-1][0] - points[0][0] if len(points) > 1 else -1.0, default=[])
    return (slope_per_hour(longest), (longest[-1][0] - longest[0][0]) / 60) if len(longest) > 1 else None


def write_report(out: Path, series: Series, events: list[str], minutes: float, warmup_s: float) -> None:
    summed: dict[tuple[str, float], float] = {}  # the Pods of one role (two serving workers, say) add up
    of_key: dict[str, list[dict[str, Any]]] = {}
    for s in series.samples:
        summed[s["key"], s["t"]] = summed.get((s["key"], s["t"]), 0) + s["value"]
        of_key.setdefault(s["key"], []).append(s)
    by_key: dict[str, list[tuple[float, float]]] = {}
    for (key, t), value in sorted(summed.items(), key=lambda kv: kv[0][1]):
        by_key.setdefault(key, []).append((t, value))
    rows = []
    for key, points in sorted(by_key.items()):
        steady = [p for p in points if p[0] >= warmup_s] or points
        own = longest_lived_slope(of_key[key], warmup_s)
        per_pod = f"{own[0]:+.2f} over {own[1]:.0f} min" if own else ""
        rows.append((key, steady[0][1], steady[-1][1], max(p[1] for p in steady), slope_per_hour(steady), per_pod))
    lines = [
        f"# Soak: {minutes:.0f} minutes of the production layout (make soak)",
        "",
        f"Samples every minute after a {warmup_s / 60:.0f}-minute warm-up; slope by least squares over the steady part. "
        "Frames announced grow by design (the load), replicas and actors follow the load and the disturbances; everything else should be flat. "
        "A role's series sums its Pods and goes on across a Pod's replacement; the last column judges one Pod alone, the one "
        f"seen longest, after its own {warmup_s / 60:.0f}-minute warm-up.",
        "",
        "| series | first | last | max | slope per hour | slope per hour, longest-lived Pod |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {k} | {a:g} | {b:g} | {m:g} | {s:+.2f} | {p} |" for k, a, b, m, s, p in rows),
        "",
        "## Disturbances",
        *(f"- {e}" for e in events),
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "samples.json").write_text(json.dumps(series.samples))
    (out / "events.json").write_text(json.dumps(events))
    _plot(out, by_key)


def _plot(out: Path, by_key: dict[str, list[tuple[float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ("memory MiB", "replicas", "storage MiB", "fds", "threads", "kafka lag")
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3 * len(groups)), sharex=True)
    for ax, group in zip(axes, groups, strict=True):
        for key, points in sorted(by_key.items()):
            if key.startswith(group):
                ax.plot([p[0] / 60 for p in points], [p[1] for p in points], label=key.removeprefix(group).strip() or key)
        ax.set_ylabel(group)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camerafleet_dev.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the fleet runs once Ready (default 60)")
    parser.add_argument("--disturb-every", type=float, default=5.0, help="minutes between disturbances (default 5)")
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes left out of the slopes (default 5)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "out" / "cluster")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "soak")
    parser.add_argument("--report-only", action="store_true", help="write the report again from <out>/samples.json and stop")
    args = parser.parse_args(argv)
    if args.report_only:
        samples = json.loads((args.out / "samples.json").read_text())
        events = (args.out / "events.json").read_text() if (args.out / "events.json").is_file() else "[]"
        minutes = max((x["t"] for x in samples), default=0) / 60
        write_report(args.out, Series(samples), json.loads(events), minutes, args.warmup * 60)
        return 0
    env_file = args.data_dir / "env"
    if not env_file.is_file():
        say(f"no cluster: {env_file} is missing; start one with `make cluster-up`")
        return 2
    c = Cluster(dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line))
    install(c)
    say("waiting for the fleet to be Ready ...")
    deadline = time.monotonic() + 900
    while not ready(c):
        if time.monotonic() > deadline:
            say("the fleet did not become Ready within 15 minutes: kubectl describe camerafleet example")
            return 1
        time.sleep(5)
    topics = [f"{CAMERA_PREFIX}{cam['id']}" for cam in c.json("get", "camerafleet", FLEET, "-n", NS)["spec"]["cameras"]]
    soak_topic = f"{CAMERA_PREFIX}{EDIT_CAMERA['id']}"
    # A fleet that was already installed keeps its topics: the ledger counts what is announced from now on only.
    start = asyncio.run(start_offsets(c.env["KAFKA_BOOTSTRAP"], [*topics, soak_topic]))
    series, events, started = Series(), [], time.time()
    next_disturb, turn = started + args.disturb_every * 60, 0
    while (elapsed := time.time() - started) < args.minutes * 60:
        try:
            sample(c, started, series, topics)
        except (RuntimeError, OSError, ValueError) as err:  # a Pod replaced mid-sample: the next one counts
            say(f"sample skipped: {err}")
        if time.time() >= next_disturb:
            events.append(f"{elapsed / 60:.1f} min: {disturb(c, turn)}")
            say(events[-1])
            if soak_topic not in topics:
                topics.append(soak_topic)  # created by the operator with the camera, and counted from then on
            turn, next_disturb = turn + 1, next_disturb + args.disturb_every * 60
        if int(elapsed) // 300 != int(elapsed + 60) // 300:
            write_report(args.out, series, events, elapsed / 60, args.warmup * 60)
            say(f"{elapsed / 60:.0f} of {args.minutes:.0f} min; report so far in {args.out / 'report.md'}")
        time.sleep(60)
    ledger, unanswered = final_ledger(c, topics, start)
    events.append(f"end: {ledger}")
    write_report(args.out, series, events, args.minutes, args.warmup * 60)
    say(f"done: {events[-1]}; {args.out / 'report.md'}, {args.out / 'soak.png'}")
    if unanswered:
        say(f"FAILED: frames with neither a result nor a dead letter (topic, partition, offset): {sorted(unanswered)[:50]}")
        return 1
    return 0


async def start_offsets(bootstrap: str, topics: list[str]) -> dict[str, dict[int, int]]:
    """Each topic's end offsets now; none (from 0) for a topic not created yet."""
    found: dict[str, dict[int, int]] = {}
    for topic in topics:
        try:
            found.update(await end_offsets(bootstrap, [topic], timeout_s=5))
        except KafkaUnavailable:
            found[topic] = {}
    return found


def final_ledger(c: Cluster, topics: list[str], start: dict[str, dict[int, int]]) -> tuple[str, set[tuple[str, int, int]]]:
    """Every frame announced during the soak (from `start`, the offsets when the fleet was Ready) has a record: its
    result, or its dead letter (failed with a reason). The camera topics' ends are taken first and the group waited for until it has committed up to
    them, so frames announced while the ledger is read (the fleet keeps running) are not counted unanswered.
    A frame answered twice (redelivered after a consumer Pod was deleted) is counted as such. Returns the line for
    the report and the Kafka positions of the frames unanswered."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def read() -> tuple[int, set[tuple[str, int, int]], int]:
        bootstrap = c.env["KAFKA_BOOTSTRAP"]
        announced = await end_offsets(bootstrap, topics)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            for _ in range(60):  # the consumers catch up with the last announcements first (5 minutes at most)
                committed = await admin.list_consumer_group_offsets(GROUP)
                behind = [tp for tp, meta in committed.items() if tp.topic in announced and meta.offset < announced[tp.topic][tp.partition]]
                if not behind and len(committed) >= sum(len(parts) for parts in announced.values()):
                    break
                await asyncio.sleep(5)
        finally:
            await admin.close()
        outputs = await end_offsets(bootstrap, [RESULTS, DEADLETTER])
        answers: dict[tuple[str, int, int], int] = {}
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t, parts in outputs.items() for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while [tp for tp in tps if await consumer.position(tp) < outputs[tp.topic][tp.partition]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        v = json.loads(r.value)
                        if "offset" in v:
                            key = (v["topic"], v["partition"], v["offset"])
                            answers[key] = answers.get(key, 0) + 1
        finally:
            await consumer.stop()
        wanted = {(t, p, o) for t in topics for p, end in announced[t].items() for o in range(start.get(t, {}).get(p, 0), end)}
        return len(wanted), wanted - answers.keys(), sum(1 for k in wanted if answers.get(k, 0) > 1)

    announced, missing, twice = asyncio.run(read())
    where = ", ".join(f"{t}/{p}@{o}" for t, p, o in sorted(missing)[:20])
    line = f"ledger: {announced} frames announced, {len(missing)} without a result or a dead letter{f' ({where})' if where else ''}, {twice} answered twice (redelivered)"
    return line, missing


if __name__ == "__main__":
    sys.exit(main())
