"""The preStop hook of a job's Ray Pods on Kubernetes: keep the Pod until the run has drained.

When a RayJob is deleted (the fleet deleted, its spec changed), KubeRay asks Ray to stop the job and
removes its finalizer at once, without waiting; garbage collection then deletes the job's Pods. Without
this hook the kubelet would kill the driver mid-drain and the consumers on worker Pods with it: frames
in flight unaccounted, no summary. With it, each Pod waits (within its terminationGracePeriodSeconds)
until what runs on it has ended:

- the head asks its own dashboard to stop every job still running (in case KubeRay's request was lost),
  then waits until no `camerafleet run` driver is left;
- a worker waits until no producer or consumer actor is left on it (the driver's stop ends them).

Plain standard library: it runs in the Ray image next to Ray, before the container gets SIGTERM.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from camerafleet.ray_auth import dashboard_headers

DASHBOARD = "http://127.0.0.1:8265"
ACTORS = ("ray::ProducerActor", "ray::ConsumerActor")
POLL_S = 1.0


def _commands() -> list[list[str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # ended meanwhile, or not ours to read
            out.append([a.decode(errors="replace") for a in raw.split(b"\0") if a])
    return out


def is_driver(argv: list[str]) -> bool:
    """`camerafleet run ...` (the console script, or `python -m camerafleet.cli run`)."""
    for i, arg in enumerate(argv[:-1]):
        if (arg.endswith("/camerafleet") or arg == "camerafleet" or arg == "camerafleet.cli") and argv[i + 1] == "run":
            return True
    return False


def is_actor(argv: list[str]) -> bool:
    """A Ray worker process running one of the pipeline's actors (Ray titles it `ray::<Class>[.<method>]`)."""
    return bool(argv) and argv[0].startswith(ACTORS)


def stop_running_jobs(dashboard: str = DASHBOARD) -> list[str]:
    """Ask the local Ray dashboard to stop every job not yet ended; the ids asked. Errors are printed and
    ignored: the wait that follows is what keeps the Pod."""
    asked = []
    try:
        headers = dashboard_headers()  # the fleet's Ray clusters run with token authentication
        with urllib.request.urlopen(urllib.request.Request(f"{dashboard}/api/jobs/", headers=headers), timeout=5) as answer:
            jobs = json.load(answer)
        for job in jobs:
            if job.get("status") in ("PENDING", "RUNNING") and job.get("submission_id"):
                request = urllib.request.Request(f"{dashboard}/api/jobs/{job['submission_id']}/stop", method="POST", headers=headers)
                urllib.request.urlopen(request, timeout=5).close()
                asked.append(job["submission_id"])
    except (OSError, ValueError) as err:
        print(f"prestop: cannot ask the dashboard to stop jobs ({err}); waiting anyway", file=sys.stderr)
    return asked


def wait_until_gone(matches: Callable[[list[str]], bool], timeout_s: float) -> bool:
    """Whether every process `matches` selects ended within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while any(matches(argv) for argv in _commands()):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("head", "worker"):
        print("usage: python -m camerafleet.prestop head|worker TIMEOUT_SECONDS", file=sys.stderr)
        return 2
    role, timeout_s = argv[0], float(argv[1])
    started = time.monotonic()
    if role == "head":
        stop_running_jobs()
    ended = wait_until_gone(is_driver if role == "head" else is_actor, timeout_s)
    what = "the camerafleet driver" if role == "head" else "the pipeline's actors"
    print(f"prestop: {what} {'ended' if ended else 'still running'} after {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
