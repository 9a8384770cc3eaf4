"""Turns the measurements into `report.json` (everything), `report.md` (headline, goals, tables) and
PNG plots, and returns the headline table that `make bench` prints."""

from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from camerafleet_dev.bench import elastic, live

# Processes that cost CPU whatever the load: the broker, Ray's own daemons, Serve's controller and proxy, the
# benchmark's sampling. They are part of the pipeline's cost, but not per-frame work.
PLATFORM = ("kafka broker", "ray system", "ray idle workers", "serve system", "bench driver", "other")
STAGES = (
    "capture",
    "encode",
    "bucket put",
    "produce",
    "consume",
    "bucket get",
    "decode",
    "preprocess",
    "inference",
    "postprocess",
    "results",
)
GB = 1024**3


def stage_table(stages: dict[str, dict[str, float]], frames: int) -> dict[str, float | None]:
    """CPU ms per processed frame by stage; per-model stages (`inference:faces`) summed into their stage."""
    grouped: dict[str, float] = defaultdict(float)
    for name, s in stages.items():
        grouped[name.split(":")[0]] += s["cpu_s"]
    return {k: round(grouped.get(k, 0.0) * 1000 / frames, 2) if frames else None for k in STAGES}


def limit_stage_table(limit: dict[str, Any]) -> dict[str, float]:
    t = dict.fromkeys(STAGES, 0.0)
    for name, ms in limit["cpu_ms_per_frame"].items():
        key = name.split(":")[0]
        t[key] = round(t[key] + ms, 2)
    return t


def machine() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem / GB, 1), "onnxruntime_providers": ort.get_available_providers()}


def goal(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def build(results: dict[str, Any]) -> dict[str, Any]:
    ph = {k: v.brief() for k, v in results["phases"].items()}
    phases = results["phases"]
    limit = results["limit"]
    readings = results["limit_readings_fps"]
    limit_fps = round(sum(readings) / len(readings), 2)  # the readings before and after saturation bracket it
    sat = ph["saturation"]["processed_fps"]
    old = ph["old_design"]["processed_fps"]
    # A phase that processed no frame after its warm-up (a machine too busy to serve it, or one so slow that the
    # warm-up of a few slots filled the phase) has no per-frame numbers: they are reported as None, and the goals
    # that need it as not judged, never as a division by zero.
    empty = sorted(name for name, p in phases.items() if not p.measured())
    skipped = list(results["profile"].skip_phases)  # not run in this profile: goals needing them not judged either
    sat_frames = phases["saturation"].summary["processed"]
    pipeline_stages = stage_table(phases["saturation"].stages, sat_frames)
    component_ms = {k: _per_frame(v, sat_frames) for k, v in phases["saturation"].cpu_s.items()}
    total_ms = _per_frame(sum(phases["saturation"].cpu_s.values()), sat_frames)
    old_total_ms = _per_frame(sum(phases["old_design"].cpu_s.values()), phases["old_design"].summary["processed"])
    platform_ms = _per_frame(sum(v for k, v in phases["saturation"].cpu_s.items() if k in PLATFORM), sat_frames)
    limit_ms = round(sum(limit_stage_table(limit).values()), 2)
    scaling = ph["autoscaling"].get("autoscaling", {})
    fair = ph["many_cameras"].get("fairness", {})
    p99_50 = ph["load_50"]["latency_ms"]["p99"]
    batch_ms = limit["batch_ms"]["p50"]
    over = ph["overload"]
    variants = results["variants"]
    best = variants["best"]
    for name, phase in phases.items():
        if "max_frame_age_ms" in ph[name]:
            ph[name]["latency_bound"] = phase.latency_bound(ph[name]["max_frame_age_ms"])
    sweep = [
        {
            "multiple": m,
            "phase": name,
            "offered_fps": ph[name]["offered_fps"],
            "processed_fps": ph[name]["processed_fps"],
            "limit_fps": round(min(ph[name]["offered_fps"], limit_fps), 2),
            "latency_ms": ph[name]["latency_ms"],
            "stale": ph[name]["dropped_by_reason"].get("stale", 0),
            "shed": ph[name]["missed_by_reason"].get("shed", 0),
        }
        for m, name in results["sweep"].items()
    ]
    bounded = [n for n in ph if "latency_bound" in ph[n]]
    frames_over = {n: ph[n]["latency_bound"]["frames_over_bound"] for n in bounded}
    no_adm = ph.get("overload_no_admission")
    live_ratio = live.ratios(results["live"]).get("h264", {}).get("1.0")
    whole_peak: dict[str, int] = {}
    for row in results["series"]:
        whole_peak["total"] = max(whole_peak.get("total", 0), sum(row["rss"].values()))
        for k, v in row["rss"].items():
            whole_peak[k] = max(whole_peak.get(k, 0), v)
    headline = {
        "load_reference": results["load_reference"],
        "limit_fps": limit_fps,
        "limit_readings_fps": readings,
        "saturation_fps": sat,
        "efficiency": round(sat / limit_fps, 3) if limit_fps else None,
        "efficiency_by_reading": [round(sat / x, 3) if x else None for x in readings],
        "old_design_fps": old,
        "speedup_over_old_design": round(sat / old, 2) if old else None,
        "p99_ms_at_saturation_load": {
            "default": ph["saturation"]["latency_ms"]["p99"],
            "old_design": ph["old_design"]["latency_ms"]["p99"],
        },
        "p99_ms_at_50pct_load": {"default": p99_50, "old_design": _p99(ph, "old_design_load_50")},
        "latency_ms_at_50pct": ph["load_50"]["latency_ms"],
        "latency_ms_at_80pct": ph["load_80"]["latency_ms"] if "load_80" in ph else None,
        "model_batch_ms": batch_ms,
        "many_cameras": {"cameras": ph["many_cameras"]["cameras"], **{k: v for k, v in fair.items() if k != "per_camera_processed"}},
        "overload": {
            "offered_fps": over["offered_fps"],
            "processed_fps": over["processed_fps"],
            "of_saturation": round(over["processed_fps"] / sat, 3) if sat else None,
            "max_latency_ms": over["latency_ms"]["max"],
            "max_frame_age_ms": over.get("max_frame_age_ms"),
            "dropped_by_reason": over["dropped_by_reason"],
            "missed_by_reason": over["missed_by_reason"],
            "ledger_balanced": over["ledger"]["ledger_balanced"],
        },
        "overload_no_admission": {
            "processed_fps": no_adm["processed_fps"],
            "of_saturation": round(no_adm["processed_fps"] / sat, 3) if sat else None,
            "max_latency_ms": no_adm["latency_ms"]["max"],
            "dropped_by_reason": no_adm["dropped_by_reason"],
        }
        if no_adm
        else None,
        "sweep": sweep,
        "frames_over_latency_bound": frames_over,
        "scale_up_s": scaling.get("scale_up_s"),
        "scale_up_serving_s": scaling.get("scale_up_serving_s"),
        "scale_down_s": scaling.get("scale_down_s"),
        "peak_rss_gb": {
            "whole_run": round(whole_peak.get("total", 0) / GB, 2),
            "many_cameras": round(ph["many_cameras"]["peak_rss_bytes"]["total"] / GB, 2),
        },
    }
    goals = [
        (
            "limit loop: frames per core, fastest variant with accuracy kept / today's default path",
            f"{best['name']}: {best['speedup']}x" if best else "no variant kept the accuracy",
            f">= {variants['goal']['speedup']}x",
            bool(variants["goal"]["met"]),
            (),
        ),
        (
            "efficiency = pipeline / limit (against the limit read before / after saturation)",
            f"{headline['efficiency']} ({' / '.join(map(str, headline['efficiency_by_reading']))})",
            ">= 0.85",
            headline["efficiency"] is not None and headline["efficiency"] >= 0.85,
            ("saturation",),
        ),
        (
            "throughput vs old design",
            f"{headline['speedup_over_old_design']}x",
            ">= 2x",
            headline["speedup_over_old_design"] is not None and headline["speedup_over_old_design"] >= 2,
            ("saturation", "old_design"),
        ),
        (
            "p99 vs old design, same load (saturation / 50%)",
            f"{ph['saturation']['latency_ms']['p99']} vs {ph['old_design']['latency_ms']['p99']} ms; {p99_50} vs {_p99(ph, 'old_design_load_50')} ms",
            "lower",
            _lower(ph["saturation"]["latency_ms"]["p99"], ph["old_design"]["latency_ms"]["p99"])
            and _lower(p99_50, _p99(ph, "old_design_load_50")),
            ("saturation", "old_design", "load_50", "old_design_load_50"),
        ),
        (
            "p99 at 50% load",
            f"{p99_50} ms",
            f"<= batch time {batch_ms} + 100 = {batch_ms + 100:.0f} ms",
            p99_50 is not None and p99_50 <= batch_ms + 100,
            ("load_50",),
        ),
        (
            f"{ph['many_cameras']['cameras']} cameras: fewest / most share of a camera's slots processed after the warm-up",
            f"{fair.get('fewest_share')} / {fair.get('most_share')} = {fair.get('fairness')} "
            f"({fair.get('fewest_frames')} to {fair.get('most_frames')} frames of {fair.get('slots_per_camera')} slots)",
            ">= 0.8",
            (fair.get("fairness") or 0) >= 0.8,
            ("many_cameras",),
        ),
        (
            f"{ph['many_cameras']['cameras']} cameras at half of saturation: served, shed, not processed after the warm-up; "
            "producer / models' CPU",
            f"{fair.get('cameras_served')} served, {fair.get('shed')} shed, {fair.get('not_processed_in_window')}; "
            f"{fair.get('producer_cpu_s')} / {fair.get('models_cpu_s')} s",
            "all; 0; none; producers below the models",
            fair.get("cameras_served") == ph["many_cameras"]["cameras"]
            and fair.get("shed") == 0
            and not fair.get("not_processed_in_window")
            and (fair.get("producer_cpu_s") or 0) < (fair.get("models_cpu_s") or 0),
            ("many_cameras",),
        ),
        (
            "scale-up after the load step (replica added; serving)",
            f"{headline['scale_up_s']} s; {headline['scale_up_serving_s']} s",
            "<= 10 s",
            headline["scale_up_s"] is not None and headline["scale_up_s"] <= 10,
            ("autoscaling",),
        ),
        (
            "many-camera run peak memory",
            f"{headline['peak_rss_gb']['many_cameras']} GB",
            "<= 16 GB",
            headline["peak_rss_gb"]["many_cameras"] <= 16,
            (),
        ),
        (
            "overload (2x): processed frames/s / saturation frames/s (without admission at the source)",
            f"{headline['overload']['of_saturation']} ({headline['overload_no_admission']['of_saturation'] if no_adm else 'not run'})",
            ">= 0.9",
            (headline["overload"]["of_saturation"] or 0) >= 0.9,
            ("saturation", "overload"),
        ),
        (
            "1x-3x load: processed frames later than max frame age + their model batch + 100 ms",
            ", ".join(f"{n}: {k} (longest {ph[n]['latency_bound']['max_latency_ms']} ms)" for n, k in frames_over.items()),
            "0 in every phase",
            all(k == 0 for k in frames_over.values()),
            tuple(bounded),
        ),
        ("overload: ledger balances", f"{over['ledger']}", "balanced", over["ledger"]["ledger_balanced"], ()),
        *elastic.goals(ph["elastic"]["elastic"]),
        (
            "live 1080p30 H.264 camera at 1 fps (1 s keyframes): producer CPU, every frame decoded / live source",
            f"{live_ratio}x",
            ">= 5x",
            live_ratio is not None and live_ratio >= 5,
            (),
        ),
    ]
    return {
        "profile": results["profile"].model_dump(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "wall_s": results.get("wall_s"),
        "machine": machine(),
        "device": "CUDA" if results["gpus"] else "CPU",
        "headline": headline,
        "goals": [
            {"goal": g, "measured": m, "target": t, "met": None if set(needs) & {*empty, *skipped} else met, "needs_phases": list(needs)}
            for g, m, t, met, needs in goals
        ],
        "phases_without_frames": empty,
        "phases_not_run": skipped,
        "limit": limit,
        "stages_cpu_ms_per_frame": {"pipeline": pipeline_stages, "limit": limit_stage_table(limit)},
        "components_cpu_ms_per_frame": {**component_ms, "total": total_ms},
        "why": {
            "pipeline_cpu_ms_per_frame": total_ms,
            "limit_cpu_ms_per_frame": limit_ms,
            "platform_cpu_ms_per_frame": platform_ms,
            "pipeline_processes_beyond_stages_ms_per_frame": (
                round(total_ms - platform_ms - sum(v or 0.0 for v in pipeline_stages.values()), 2)
                if total_ms is not None and platform_ms is not None
                else None
            ),
            "old_design_cpu_ms_per_frame": old_total_ms,
            "inference_cpu_ms_per_frame": pipeline_stages["inference"],
        },
        "peak_rss_bytes": whole_peak,
        "phases": ph,
        "variants": variants,
        "live": results["live"],
    }


def variants_markdown(v: dict[str, Any]) -> list[str]:
    stages = ("capture", "encode", "decode", "preprocess", "inference", "postprocess")
    rows = []
    for row in v["variants"]:
        if "error" in row:
            rows.append(f"| {row['name']} | did not run: {row['error']} |||||||||")
            continue
        per_stage = {s: round(sum(x for k, x in row["cpu_ms_per_frame"].items() if k.split(":")[0] == s), 2) for s in stages}
        acc = row["accuracy"] or {}
        rows.append(
            f"| {row['name']} | {row['description']} | {row['frames_per_core_second']} | {row.get('speedup')}x | {row['fps']} | "
            f"{' / '.join(str(per_stage[s]) for s in stages)} | {acc.get('recall')} / {acc.get('precision')} / {acc.get('mean_iou')} | "
            f"{'yes' if acc.get('kept') else '**no**'} | {row['decoded_size']} |"
        )
    return [
        "## Per-frame cost: decode scale, inference engines, INT8 (limit loop, same frames)",
        "",
        f"{v['processes']} processes x 1 thread, {v['seconds']:.0f} s per variant, one after the other in this run. Frames per core-second "
        "count the CPU time of the measured stages, so other load on the machine does not skew the ratio; fps is wall-clock. "
        f"Accuracy on {v['accuracy_frames']} frames of the demo clips: {v['accuracy_rule']}.",
        "",
        "| Variant | What | Frames per core-s | vs today | fps | CPU ms: capture / encode / decode / preprocess / inference / postprocess | "
        "Recall / precision / mean IoU | Accuracy kept | Decoded size |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "JPEG decode CPU ms (1280x720): " + ", ".join(f"{k} {x}" for k, x in v["decode_ms"].items()) + ".",
        "",
    ]


def sweep_markdown(h: dict[str, Any]) -> list[str]:
    rows = [
        f"| {x['multiple']}x ({x['phase']}) | {x['offered_fps']} | {x['processed_fps']} | {x['limit_fps']} | {_fmt_lat(x['latency_ms'])} / {x['latency_ms']['max']} | {x['shed']} | {x['stale']} |"
        for x in h["sweep"]
    ]
    return [
        "## Throughput and latency against offered load",
        "",
        "Offered load as multiples of the measured saturation; the limit column is what the limit loop would process of that load. "
        "Shed: slots not admitted at the source; stale: frames dropped downstream for age. The 2x overload without admission at the source: "
        + (
            f"{h['overload_no_admission']['processed_fps']} frames/s processed, {h['overload_no_admission']['dropped_by_reason']} dropped."
            if h["overload_no_admission"]
            else "not run in this profile."
        ),
        "",
        "| Offered | Offered f/s | Processed f/s | Limit f/s | Latency p50 / p95 / p99 / max ms | Shed | Stale |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "![throughput and latency against offered load](load_sweep.png)",
        "",
    ]


def _sum(values: Any) -> float | None:
    """The sum of per-frame numbers; None when they are not measured (a phase without frames)."""
    values = list(values)
    return None if any(v is None for v in values) else round(sum(values), 2)


def _per_frame(cpu_s: float, frames: int) -> float | None:
    """CPU ms per processed frame; None when the phase processed none."""
    return round(cpu_s * 1000 / frames, 2) if frames else None


def _p99(ph: dict[str, Any], name: str) -> float | None:
    """A phase's p99 latency; None for a phase this profile does not run."""
    return ph[name]["latency_ms"]["p99"] if name in ph else None


def _lower(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and a < b


def _fmt_lat(lat: dict[str, Any] | None) -> str:
    return "not run" if lat is None else f"{lat['p50']} / {lat['p95']} / {lat['p99']}"


def markdown(r: dict[str, Any]) -> str:
    h, m = r["headline"], r["machine"]
    lines = [
        f"# CameraFleet benchmark — profile `{r['profile']['name']}`",
        "",
        f"{r['generated']}; `make bench BENCH_PROFILE={r['profile']['name']}` took {r['wall_s']} s. Machine: {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gb']} GB; models on **{r['device']}** (onnxruntime providers: {', '.join(m['onnxruntime_providers'])}). "
        "All numbers come from this one run, on the same frames (the demo clips) and models (CenterFace 640x384 + camera health).",
        "",
        "## Goals",
        "",
        "| Goal | Measured | Target | Met |",
        "|---|---|---|---|",
        *[f"| {g['goal']} | {g['measured']} | {g['target']} | {goal(g['met'])} |" for g in r["goals"]],
        "",
        *(
            [
                f"Phases that processed no frame after their warm-up (their per-frame numbers are empty, goals needing them not judged): {', '.join(r['phases_without_frames'])}.",
                "",
            ]
            if r["phases_without_frames"]
            else []
        ),
        *(
            [f"Phases not run in this profile (goals needing them not judged): {', '.join(r['phases_not_run'])}.", ""]
            if r["phases_not_run"]
            else []
        ),
        f"Partial loads and the overload are fractions of {h['load_reference']['fps']} frames/s, from {h['load_reference']['from']}.",
        "",
        "## Headline",
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| Limit (per-frame work on all cores, nothing distributed): mean of the readings before / after saturation | "
        f"{h['limit_fps']} frames/s ({' / '.join(map(str, h['limit_readings_fps']))}) |",
        f"| Pipeline at saturation | {h['saturation_fps']} frames/s |",
        f"| Efficiency (pipeline / limit): against each reading | {h['efficiency']} ({' / '.join(map(str, h['efficiency_by_reading']))}) |",
        f"| Old design at saturation | {h['old_design_fps']} frames/s ({h['speedup_over_old_design']}x slower) |",
        f"| Latency p50 / p95 / p99 at 50% load | {_fmt_lat(h['latency_ms_at_50pct'])} ms |",
        f"| Latency p50 / p95 / p99 at 80% load | {_fmt_lat(h['latency_ms_at_80pct'])} ms |",
        f"| One batch of every model ({r['limit']['batch_size']} frames, all cores busy) | {h['model_batch_ms']} ms (p50) |",
        f"| {h['many_cameras']['cameras']} cameras: served, fewest / most frames | {h['many_cameras'].get('cameras_served')} served, "
        f"{h['many_cameras'].get('fewest_frames')} / {h['many_cameras'].get('most_frames')}; lag max {h['many_cameras'].get('lag_max')} |",
        f"| Overload (2x): processed, longest latency, drops, shed | {h['overload']['processed_fps']} frames/s, {h['overload']['max_latency_ms']} ms "
        f"(max frame age {h['overload']['max_frame_age_ms']} ms), {h['overload']['dropped_by_reason']}, {h['overload']['missed_by_reason']} |",
        f"| Autoscaling: replica added / serving / removed after the load | {h['scale_up_s']} s / {h['scale_up_serving_s']} s / {h['scale_down_s']} s |",
        f"| Peak memory: whole run / many-camera phase | {h['peak_rss_gb']['whole_run']} GB / {h['peak_rss_gb']['many_cameras']} GB |",
        "",
        *sweep_markdown(h),
        *variants_markdown(r["variants"]),
        "## Phases",
        "",
        "| Phase | Cameras | Design | Offered f/s | Processed f/s | Latency p50 / p95 / p99 ms | Produced | Processed | Dropped | Failed | In flight | Duplicates | Balanced |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in r["phases"].items():
        led = p["ledger"]
        lines.append(
            f"| {name} | {p['cameras']} | {p['design']} | {p['offered_fps']} | {p['processed_fps']} | {_fmt_lat(p['latency_ms'])} | {led['produced']} | "
            f"{led['processed']} | {led['dropped']} | {led['failed']} | {led['in_flight']} | {led['duplicates']} | {'yes' if led['ledger_balanced'] else '**no**'} |"
        )
    st = r["stages_cpu_ms_per_frame"]
    lines += [
        "",
        "## Why the goals are met or not",
        "",
        f"- At saturation the whole machine spent **{r['why']['pipeline_cpu_ms_per_frame']} CPU ms per processed frame**; the limit loop "
        f"spends {r['why']['limit_cpu_ms_per_frame']} ms. Of the difference, {r['why']['platform_cpu_ms_per_frame']} ms/frame went to "
        "processes that run whatever the load (Kafka broker, Ray's daemons, Serve's controller and proxy, the bench's sampling) and "
        f"{r['why']['pipeline_processes_beyond_stages_ms_per_frame']} ms/frame to the pipeline's processes outside the measured stages "
        "(event loops, Ray and Kafka client threads, serialization). On a CPU-bound machine efficiency is about limit CPU / pipeline CPU.",
        f"- The old design spent {r['why']['old_design_cpu_ms_per_frame']} CPU ms per frame against {r['why']['pipeline_cpu_ms_per_frame']}: "
        "on a CPU-bound machine the throughput ratio cannot exceed that ratio, and inference alone costs "
        f"{r['why']['inference_cpu_ms_per_frame']} ms/frame in both designs, so the speedup any data path can give is bounded by "
        "(old CPU per frame) / (inference CPU per frame).",
        "",
        "## Where the time goes (CPU ms per processed frame, saturation phase)",
        "",
        "Stages are the instrumented blocks (thread CPU time; inference counts onnxruntime's threads). "
        "Components are whole processes (psutil), so they also hold what no stage covers: event loops, Ray and Kafka client threads, serialization.",
        "",
        "| Stage | Pipeline | Limit |",
        "|---|---|---|",
        *[f"| {k} | {st['pipeline'][k]} | {st['limit'][k]} |" for k in STAGES],
        f"| **sum of stages** | {_sum(st['pipeline'].values())} | {_sum(st['limit'].values())} |",
        "",
        "| Component (process) | CPU ms per frame |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in r["components_cpu_ms_per_frame"].items()],
        "",
        "## Memory (peak resident set, whole run)",
        "",
        "| Component | Peak RSS MB |",
        "|---|---|",
        *[f"| {k} | {v / 2**20:.0f} |" for k, v in sorted(r["peak_rss_bytes"].items(), key=lambda kv: -kv[1])],
        "",
        "RSS counts shared pages (Ray's object store, libraries) in every process that maps them, so the total overstates.",
        "",
        "## Autoscaling settings of the load step",
        "",
        f"`{r['phases']['autoscaling'].get('autoscaling', {}).get('settings')}`",
        "",
        elastic.markdown(r["phases"]["elastic"]["elastic"]),
        live.markdown(r["live"]),
        "## Plots",
        "",
        *[f"![{p}]({p})" for p in PLOTS],
        "",
    ]
    return "\n".join(lines)


PLOTS = ("load_sweep.png", "throughput.png", "latency.png", "batch_sizes.png", "replicas_lag.png", "stages.png", "live_cpu.png")


def plots(r: dict[str, Any], results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ph = r["phases"]
    sweep = r["headline"]["sweep"]
    fig, (ax, lat_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    xs_load = [x["multiple"] for x in sweep]
    ax.plot(xs_load, [x["offered_fps"] for x in sweep], ":", color="grey", label="offered")
    ax.plot(xs_load, [x["limit_fps"] for x in sweep], "--", color="k", label="limit (no distribution)")
    ax.plot(xs_load, [x["processed_fps"] for x in sweep], "o-", label="pipeline, processed")
    ax.set_xlabel("offered load (x saturation)")
    ax.set_ylabel("frames/s")
    ax.set_title("Throughput against offered load")
    ax.legend(fontsize=8)
    for key, style in (("p50", "o-"), ("p99", "s-"), ("max", "^-")):
        lat_ax.plot(xs_load, [x["latency_ms"][key] for x in sweep], style, label=f"pipeline {key}")
    bounds = [ph[x["phase"]].get("max_frame_age_ms") for x in sweep]
    if any(bounds):
        lat_ax.axhline(max(b for b in bounds if b), color="r", linestyle="--", label="max frame age (1x-3x)")
    lat_ax.set_xlabel("offered load (x saturation)")
    lat_ax.set_ylabel("capture-to-result latency, ms")
    lat_ax.set_title("Latency against offered load")
    lat_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "load_sweep.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(ph)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [ph[n]["offered_fps"] for n in names], width=0.4, label="offered")
    ax.bar([x + 0.2 for x in xs], [ph[n]["processed_fps"] for n in names], width=0.4, label="processed")
    ax.axhline(r["headline"]["limit_fps"], color="k", linestyle="--", label="limit")
    ax.set_xticks(list(xs), [f"{n}\n{ph[n]['cameras']} cams" for n in names], rotation=30, fontsize=7)
    ax.set_ylabel("frames/s")
    ax.set_title("Throughput by phase and number of cameras")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ("load_50", "load_80", "old_design_load_50", "saturation", "overload"):
        if name not in results["phases"]:
            continue
        lat = sorted(rec["latencyMs"] for rec in results["phases"][name].records if rec["outcome"] == "processed")
        if lat:
            ax.plot(lat, [i / len(lat) for i in range(len(lat))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("capture-to-result latency, ms")
    ax.set_ylabel("fraction of frames")
    ax.set_title("Latency distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    sizes: dict[str, list[int]] = defaultdict(list)
    for rec in results["phases"]["saturation"].records:
        for model, res in rec.get("models", {}).items():
            sizes[model].append(res.get("batchSize", 0))
    for model, values in sizes.items():
        ax.hist(values, bins=range(1, max(values) + 2), alpha=0.6, label=model, align="left")
    ax.set_xlabel("batch size (frames per model call)")
    ax.set_ylabel("frames")
    ax.set_title("Batch sizes at saturation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "batch_sizes.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(8, 6))
    for ax, name in zip(axes, ("autoscaling", "many_cameras"), strict=True):
        rows = results["phases"][name].series
        t = [row["t"] for row in rows]
        ax.plot(t, [row["lag"] for row in rows], label="consumer lag (messages)")
        ax.set_ylabel("lag")
        ax2 = ax.twinx()
        for dep in sorted({d for row in rows for d in row["replicas"]}):
            ax2.step(t, [row["replicas"].get(dep, 0) for row in rows], where="post", linestyle="--", label=f"{dep} replicas")
        ax2.set_ylabel("replicas")
        ax.set_title(f"{name}: lag and replicas over time")
        ax.set_xlabel("s")
        ax.legend(loc="upper left", fontsize=7)
        ax2.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "replicas_lag.png", dpi=110)
    plt.close(fig)

    st = r["stages_cpu_ms_per_frame"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ys = range(len(STAGES))
    ax.barh([y - 0.2 for y in ys], [st["pipeline"][k] or 0 for k in STAGES], height=0.4, label="pipeline")
    ax.barh([y + 0.2 for y in ys], [st["limit"][k] for k in STAGES], height=0.4, label="limit")
    ax.set_yticks(list(ys), STAGES)
    ax.invert_yaxis()
    ax.set_xlabel("CPU ms per frame")
    ax.set_title("Where the time goes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "stages.png", dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> str:
    r = build(results)
    (out / "report.json").write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    (out / "report.md").write_text(markdown(r))
    plots(r, results, out)
    live.plot(results["live"], out)
    elastic.plot(results["phases"]["elastic"], results["phases"]["elastic_fixed"], out)
    table = markdown(r).split("## Phases")[0]
    return table + f"\nreport: {out / 'report.md'} (plots and report.json beside it)"
