"""A Ray head started as KubeRay starts a fleet's heads with `authOptions` (`ray start --head` with
`RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN`): its job API refuses a caller without the token, and what the
pipeline itself asks of a dashboard (the preStop hook's stop) carries the token and is obeyed.

The head is a process of its own, stopped by ending it: `ray stop` would end every Ray process this
machine can see, a cluster's Pods included.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from camerafleet import prestop
from camerafleet.ray_auth import HEADER, TOKEN_ENV, dashboard_headers
from camerafleet_dev.devservers._process import free_port

pytestmark = pytest.mark.integration
START_S = 180  # a Ray head with its dashboard starts in ~15 s here; a loaded 2-core machine gets minutes


def _call(url: str, *, method: str = "GET", body: dict | None = None, headers: dict[str, str] | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(
            request, timeout=120
        ) as answer:  # a job submission starts its supervisor actor: seconds, minutes loaded
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return _call(url, headers=headers)[0] == 200
    except OSError:  # not listening yet
        return False


@pytest.fixture(scope="module")
def token_head(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(dashboard URL, token) of a one-node Ray cluster with token authentication on."""
    token = secrets.token_urlsafe(32)
    dashboard_port = free_port()
    temp = tmp_path_factory.mktemp("ray-auth")
    # HOME: Ray keeps the token it runs with in ~/.ray/auth_token, and every later `ray start` on the machine that
    # finds that file turns token authentication on (its clients, without the token, are then refused).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {
        "RAY_AUTH_MODE": "token",
        TOKEN_ENV: token,
        "HOME": str(temp),
    }
    log = (temp / "head.log").open("wb")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={free_port()}", "--num-cpus=1",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
         f"--ray-client-server-port={free_port()}", f"--temp-dir={temp}", "--disable-usage-stats",
         # The job API needs the head's agent; its HTTP port defaults to 52365, which the tests' own Ray
         # (the session's `ray_cluster`) already holds: the agent then fails to bind and every submission
         # is answered 500 "No available agent". Every port of this head is a free one.
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + START_S
        while not _answers(f"{url}/api/jobs/", {HEADER: f"Bearer {token}"}):
            assert head.poll() is None, f"the Ray head ended: {(temp / 'head.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no Ray dashboard within {START_S} s: {(temp / 'head.log').read_text()[-2000:]}"
            time.sleep(1)
        yield url, token
    finally:
        # Nothing of this cluster is kept: its whole process group goes at once (a graceful stop takes ~30 s).
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        log.close()


def test_without_the_token_the_job_api_refuses_and_the_prestop_hook_with_it_stops_the_job(token_head, monkeypatch):
    url, token = token_head
    status, _ = _call(f"{url}/api/jobs/", method="POST", body={"entrypoint": "sleep 600"})
    assert status == 401, "a job submitted without the token must be refused"
    status, _ = _call(f"{url}/api/jobs/", method="POST", body={"entrypoint": "sleep 600"}, headers={HEADER: "Bearer not-the-token"})
    assert status == 403, "a wrong token must be refused"

    monkeypatch.setenv(TOKEN_ENV, token)  # as KubeRay sets it in the fleet's Ray containers
    status, job = _call(f"{url}/api/jobs/", method="POST", body={"entrypoint": "sleep 600"}, headers=dashboard_headers())
    assert status == 200, f"the token opens the job API: {job}"
    job_id = job["submission_id"]  # type: ignore[index]
    assert job_id in prestop.stop_running_jobs(url)

    deadline = time.monotonic() + START_S  # stopping a job takes a second or two; a loaded machine gets minutes
    while (state := _call(f"{url}/api/jobs/{job_id}", headers=dashboard_headers())[1]["status"]) != "STOPPED":  # type: ignore[index]
        assert time.monotonic() < deadline, f"the job asked to stop is still {state}"
        time.sleep(1)
