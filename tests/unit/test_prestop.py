"""The job Pods' preStop hook (`camerafleet.prestop`): which processes it waits for, and that it waits for
real ones and no longer than it is given."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from camerafleet import prestop


def test_it_knows_the_driver_and_the_pipelines_actors_by_their_command_lines():
    assert prestop.is_driver(
        ["/home/ray/anaconda3/bin/python", "/home/ray/anaconda3/bin/camerafleet", "run", "/etc/camerafleet/fleet.yaml"]
    )
    assert prestop.is_driver(["python", "-m", "camerafleet.cli", "run", "f.yaml"])
    assert not prestop.is_driver(["camerafleet", "validate", "f.yaml"]) and not prestop.is_driver(["ray", "start", "--head"])
    assert prestop.is_actor(["ray::ConsumerActor.start"]) and prestop.is_actor(["ray::ProducerActor"])
    assert not prestop.is_actor(["ray::IDLE"]) and not prestop.is_actor([])


def test_it_waits_until_the_driver_has_ended_and_no_longer_than_its_timeout():
    # Only this test's drivers (a fleet's drivers on a cluster of this machine are processes of the host too).
    marker = f"fleet-of-test-{os.getpid()}.yaml"

    def ours(argv: list[str]) -> bool:
        return prestop.is_driver(argv) and marker in argv

    def started(seconds: str) -> subprocess.Popen[bytes]:
        """A stand-in driver, once its command line shows (between fork and exec it is still pytest's)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))", seconds, "camerafleet", "run", marker]
        )
        deadline = time.monotonic() + 60  # a process starts in milliseconds; a loaded machine gets a minute
        while not any(ours(argv) for argv in prestop._commands()):
            assert time.monotonic() < deadline and proc.poll() is None, "the stand-in driver never showed"
            time.sleep(0.01)
        return proc

    short = started("2")
    try:
        assert prestop.wait_until_gone(ours, timeout_s=120), "a driver that ends is waited for"
    finally:
        short.kill()
    long = started("600")
    try:
        assert not prestop.wait_until_gone(ours, timeout_s=0.5), "a driver that does not end is given up on"
    finally:
        long.kill()
        long.wait()


def test_a_bad_command_line_is_refused_with_its_usage(capsys):
    assert prestop.main(["sideways", "5"]) == 2
    assert "usage: python -m camerafleet.prestop head|worker TIMEOUT_SECONDS" in capsys.readouterr().err
