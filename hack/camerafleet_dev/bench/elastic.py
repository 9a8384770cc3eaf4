"""Bench phase `elastic`: a load step through autoscaled producer and consumer pools, and the same step
through fixed pools sized for the step (2 producers, 1 consumer) for comparison.

The cameras offer a fifth of saturation, then four fifths for `elastic_load_seconds` (each camera's
inferenceFps quadrupled, as a fleet switching from 1 to 4 fps), then a fifth again. Reported: offered and
processed frames/s, pool sizes and lag against time; seconds from the step until the pipeline keeps up again
(processed within 10% of offered over 10 s, lag no longer growing) and from the step down until both pools are
back at their minimum; decisions under the steady load; frames, CPU-seconds, shed and stale, latency, next to
the fixed pools'.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from camerafleet.runner import FleetRunner
from camerafleet_dev.bench.phases import Bench, PhaseResult
from camerafleet_dev.bench.profiles import BenchProfile

LOW, HIGH = 0.2, 0.8  # offered load before and after the step, as shares of saturation
CPUS_PER_ACTOR = 0.1  # both variants: the largest elastic pools still fit a 2-CPU machine beside the models
# The pools' autoscaling in the elastic variant (named in the report): the manifest's upscale delay (15 s: a model's
# stall of a few seconds, and the catch-up after it, must not grow a pool), a downscale delay short enough for a
# bench phase (the default is 120 s). The producers' target is 0.15 of a core, not the default 0.6. Measured in this
# phase on a 2-core machine (files decode only what is sampled): one producer carries the light load at 0.06-0.08 of a
# core and the step at 0.21-0.26 (asks 2); two carry the step at 0.12-0.13 each (0.8-0.87 of the target: they hold)
# and the light load at 0.04-0.05 each (ask 1, at once: back at one actor 31 s after the step down). At 0.1, two
# asked 2 or 1 at the light load (0.05 is half the target), the step grew one to three, and three came down in two
# steps, each a downscale delay long: still two actors 80 s after the step down.
# The consumers grow only as far as the models can use them (`consumers_models_can_use`): with the bench's 2 fixed
# face replicas, not at all.
ELASTIC_POOLS = {
    "producer": {"minActors": 1, "maxActors": 4, "targetBusy": 0.15, "upscaleDelaySeconds": 15, "downscaleDelaySeconds": 30},
    "consumer": {"minActors": 1, "maxActors": 2, "targetBusy": 0.6, "upscaleDelaySeconds": 15, "downscaleDelaySeconds": 30},
}
FIXED_POOLS = {"producer": 2, "consumer": 1}  # sized for the step: two producers carry it at 0.12-0.13 of a core each
KEEP_UP_WINDOW_S = 10.0
KEEP_UP_SHARE = 0.9
BACK_DOWN_GOAL_S = 30.0  # after the downscale delay
KEEP_UP_GOAL_S = 60.0


def phase_name(autoscaled: bool) -> str:
    return "elastic" if autoscaled else "elastic_fixed"


async def elastic_step(bench: Bench, p: BenchProfile, sat: float, autoscaled: bool) -> PhaseResult:
    """One variant of the step: the same cameras, rates and timing, autoscaled or fixed pools."""
    name = phase_name(autoscaled)
    cams = p.load_cameras

    def manifest(share: float) -> dict[str, Any]:
        doc = bench.manifest(name, cams, share * sat / cams)
        for pool in ("producer", "consumer"):
            spec = doc["spec"][pool]
            spec["cpusPerActor"] = CPUS_PER_ACTOR
            if autoscaled:
                spec.update(actors=ELASTIC_POOLS[pool]["minActors"], autoscaling=ELASTIC_POOLS[pool])
            else:
                spec["actors"] = FIXED_POOLS[pool]
        return doc

    async def during(runner: FleetRunner, path: Path) -> dict[str, Any]:
        await asyncio.sleep(p.elastic_idle_seconds)
        await asyncio.to_thread(path.write_text, yaml.safe_dump(manifest(HIGH), sort_keys=False))
        step = time.time()
        await asyncio.sleep(p.elastic_load_seconds)
        await asyncio.to_thread(path.write_text, yaml.safe_dump(manifest(LOW), sort_keys=False))
        return {"step_written_at": step, "unload_written_at": time.time()}

    seconds = p.elastic_idle_seconds + p.elastic_load_seconds + p.elastic_after_seconds
    result = await bench.run(name, manifest(LOW), seconds, p.warmup_seconds, during, sample_interval_s=p.step_sample_interval_seconds)
    result.notes["offered_fps_low_high"] = [round(LOW * sat, 2), round(HIGH * sat, 2)]
    return result


def processed_at(phase: PhaseResult) -> list[float]:
    """When each processed frame's result was written (wall clock)."""
    return sorted((r["captureTsMs"] + r["latencyMs"]) / 1000 for r in phase.records if r["outcome"] == "processed")


def rate_series(phase: PhaseResult, bin_s: float = 5.0) -> list[tuple[float, float]]:
    """(seconds into the phase, processed frames/s) per bin."""
    done = processed_at(phase)
    bins = int((phase.t_end - phase.t_start) // bin_s) + 1
    counts = [0] * bins
    for t in done:
        i = int((t - phase.t_start) // bin_s)
        if 0 <= i < bins:
            counts[i] += 1
    return [(i * bin_s, c / bin_s) for i, c in enumerate(counts)]


def keep_up_s(phase: PhaseResult, step: float, until: float, offered: float) -> float | None:
    """Seconds from the step until processed frames keep within 10% of the offered rate over a 10 s window and
    the lag sampled at its end is no higher than at its start (None: not within the load)."""
    done = processed_at(phase)
    lags = [(r["wall"], r["lag"]) for r in phase.series]

    def lag_at(t: float) -> int | None:
        before = [lag for wall, lag in lags if wall <= t]
        return before[-1] if before else None

    t = step
    while t + KEEP_UP_WINDOW_S <= until:
        n = sum(1 for x in done if t <= x < t + KEEP_UP_WINDOW_S)
        start, end = lag_at(t), lag_at(t + KEEP_UP_WINDOW_S)
        if n >= KEEP_UP_SHARE * offered * KEEP_UP_WINDOW_S and start is not None and end is not None and end <= start:
            return round(t - step, 1)
        t += 1.0
    return None


def back_to_min_s(phase: PhaseResult, down: float) -> float | None:
    """Seconds from the step down until both pools are at their minimum (None: not within the phase)."""
    floor = {pool: s["minActors"] for pool, s in ELASTIC_POOLS.items()}
    for row in phase.series:
        if row["wall"] >= down and all(row.get("pools", {}).get(pool) == n for pool, n in floor.items()):
            return round(row["wall"] - down, 1)
    return None


def elastic_figures(elastic: PhaseResult, fixed: PhaseResult) -> dict[str, Any]:
    """The step's figures, each variant's costs side by side, and the goals met or not (None: not judged)."""
    notes = elastic.notes
    step, down = notes["step_written_at"], notes["unload_written_at"]
    high = notes["offered_fps_low_high"][1]
    up = {v.name: keep_up_s(v, v.notes["step_written_at"], v.notes["unload_written_at"], high) for v in (elastic, fixed)}
    elastic_up = up[elastic.name]
    back = back_to_min_s(elastic, down)
    changes = elastic.summary.get("pools", {}).get("changes", [])
    # The steady load: once the pools have answered the step (two upscale delays: a growth, and one more if the
    # first was not enough) and the pipeline kept up (where it never did, the second half of the hold), to the step
    # down. Judged only where that leaves time (not in the tiny profile's 10 s hold).
    answered = step + 2 * max(s["upscaleDelaySeconds"] for s in ELASTIC_POOLS.values())
    steady_from = max(answered, step + elastic_up if elastic_up is not None else (step + down) / 2) - elastic.t_start
    steady_s = round(down - elastic.t_start - steady_from, 1)
    steady = [c for c in changes if steady_from < c["atS"] < down - elastic.t_start] if steady_s > 0 else None
    downscale_delay = max(s["downscaleDelaySeconds"] for s in ELASTIC_POOLS.values())

    def costs(v: PhaseResult) -> dict[str, Any]:
        s = v.summary
        cpu = round(sum(v.cpu_s.values()), 1)
        return {
            "processed": s["processed"],
            "cpu_s": cpu,
            "cpu_ms_per_frame": round(1000 * cpu / s["processed"], 1) if s["processed"] else None,
            "shed": s["missed_by_reason"].get("shed", 0),
            "stale": s["dropped_by_reason"].get("stale", 0),
            "latency_ms": v.latency(),
            "ledger_balanced": s["ledger_balanced"],
            "duplicates": s.get("duplicates", 0),
            "keep_up_s": up[v.name],
        }

    return {
        "settings": ELASTIC_POOLS,
        "fixed": FIXED_POOLS,
        "offered_fps_low_high": notes["offered_fps_low_high"],
        "step_at_s": round(step - elastic.t_start, 1),
        "down_at_s": round(down - elastic.t_start, 1),
        "back_to_min_s": back,
        "changes": changes,
        "steady_decisions": None if steady is None else len(steady),
        "steady_seconds": steady_s,
        "variants": {"elastic": costs(elastic), "fixed": costs(fixed)},
        "goals": {
            "keeps_up_within_60_s": elastic_up is not None and elastic_up <= KEEP_UP_GOAL_S,
            "nothing_lost": elastic.summary["ledger_balanced"] and fixed.summary["ledger_balanced"],
            "back_to_min_in_time": back is not None and back <= downscale_delay + BACK_DOWN_GOAL_S,
            "no_decision_under_steady_load": None if steady is None else not steady,
        },
    }


def goals(el: dict[str, Any]) -> list[tuple[str, str, str, bool | None, tuple[str, ...]]]:
    """The report's goal rows of the elastic phases: (goal, measured, target, met, phases it needs)."""
    v, g = el["variants"], el["goals"]
    delay = max(s["downscaleDelaySeconds"] for s in el["settings"].values())
    needs = ("elastic", "elastic_fixed")
    return [
        (
            "elastic pools: seconds from the load step (x4) until the pipeline keeps up again (fixed pools)",
            f"{v['elastic']['keep_up_s']} s ({v['fixed']['keep_up_s']} s)",
            f"<= {KEEP_UP_GOAL_S:.0f} s",
            g["keeps_up_within_60_s"],
            needs,
        ),
        (
            "elastic pools: seconds from the step down until both pools are at their minimum",
            f"{el['back_to_min_s']} s",
            f"<= {delay:.0f} s (downscale delay) + {BACK_DOWN_GOAL_S:.0f} s",
            g["back_to_min_in_time"],
            needs,
        ),
        (
            "elastic pools: scaling decisions under the steady load, once the pools answered the step and kept up",
            "hold too short to judge" if el["steady_decisions"] is None else f"{el['steady_decisions']} in {el['steady_seconds']} s",
            "0",
            g["no_decision_under_steady_load"],
            needs,
        ),
        (
            "elastic and fixed pools: ledger balances",
            f"{v['elastic']['ledger_balanced']}, {v['fixed']['ledger_balanced']}",
            "balanced",
            g["nothing_lost"],
            (),
        ),
    ]


def markdown(el: dict[str, Any]) -> str:
    v = el["variants"]
    rows = [
        ("frames processed", "processed"),
        ("CPU seconds, every process", "cpu_s"),
        ("CPU ms per processed frame", "cpu_ms_per_frame"),
        ("slots shed", "shed"),
        ("frames stale", "stale"),
        ("seconds until it kept up after the step", "keep_up_s"),
        ("duplicates", "duplicates"),
    ]
    lat = {k: f"{x['latency_ms']['p50']} / {x['latency_ms']['p99']}" for k, x in v.items()}
    low, high = el["offered_fps_low_high"]
    changes = ", ".join(f"{c['pool']} {c['from']}->{c['to']} at {c['atS']} s ({c['reason']})" for c in el["changes"]) or "none"
    return "\n".join(
        [
            "## Elastic pools: a load step through autoscaled and fixed pools",
            "",
            f"Offered {low} frames/s, {high} from {el['step_at_s']} s, {low} again from {el['down_at_s']} s. Autoscaling: "
            f"`{el['settings']}`; fixed: `{el['fixed']}` actors. Pools back at their minimum {el['back_to_min_s']} s after the step "
            f"down. Changes: {changes}.",
            "",
            "| | elastic | fixed |",
            "|---|---|---|",
            *[f"| {label} | {v['elastic'][key]} | {v['fixed'][key]} |" for label, key in rows],
            f"| latency p50 / p99, ms | {lat['elastic']} | {lat['fixed']} |",
            "",
            "![offered and processed frames/s, pool sizes and lag over time](elastic.png)",
            "",
        ]
    )


def plot(elastic: PhaseResult, fixed: PhaseResult, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, pool_ax) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    low, high = elastic.notes["offered_fps_low_high"]
    step, down = (elastic.notes[k] - elastic.t_start for k in ("step_written_at", "unload_written_at"))
    end = elastic.t_end - elastic.t_start
    rate_ax.step([0, step, down, end], [low, high, low, low], where="post", color="grey", linestyle=":", label="offered")
    for phase, style in ((elastic, "-"), (fixed, "--")):
        xs, ys = zip(*rate_series(phase), strict=True) if phase.records else ((), ())
        rate_ax.plot(xs, ys, style, label=f"processed, {phase.name}")
    rate_ax.set_ylabel("frames/s")
    rate_ax.set_title("A load step: offered and processed frames/s")
    rate_ax.legend(fontsize=8)
    t = [row["t"] for row in elastic.series]
    for pool in ("producer", "consumer"):
        pool_ax.step(t, [row.get("pools", {}).get(pool, 0) for row in elastic.series], where="post", label=f"{pool} actors (elastic)")
    pool_ax.set_ylabel("actors")
    pool_ax.set_xlabel("s into the phase")
    lag_ax = pool_ax.twinx()
    for phase, style in ((elastic, "-"), (fixed, "--")):
        lag_ax.plot(
            [row["t"] for row in phase.series],
            [row["lag"] for row in phase.series],
            style,
            color="tab:red",
            alpha=0.5,
            label=f"lag, {phase.name}",
        )
    lag_ax.set_ylabel("consumer lag (messages)")
    pool_ax.legend(loc="upper left", fontsize=8)
    lag_ax.legend(loc="upper right", fontsize=8)
    pool_ax.set_title("Pool sizes and lag")
    fig.tight_layout()
    fig.savefig(out / "elastic.png", dpi=110)
    plt.close(fig)
