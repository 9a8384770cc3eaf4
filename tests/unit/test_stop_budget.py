"""The runner's stop fits inside the time Kubernetes and Ray give a job to stop (issue 24: waits on actors had
no bound, so a hung member could hold the stop past RAY_JOB_STOP_WAIT_TIME_S and the summary was lost)."""

import time

from camerafleet import runner
from camerafleet_operator import render


def test_the_whole_stop_fits_in_the_ray_job_stop_wait_and_the_pods_grace_period():
    assert runner.STOP_BUDGET_S + 5 <= render.JOB_STOP_WAIT_S < render.JOB_PRESTOP_S < render.JOB_GRACE_PERIOD_S
    assert runner.RunOptions(manifest=None).drain_timeout_s + runner.STOP_RESERVE_S <= runner.STOP_BUDGET_S  # type: ignore[arg-type]


def test_each_step_gets_its_share_and_leaves_the_rest_for_the_steps_after_it(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    budget = runner.StopBudget(80)
    assert budget.left(15) == 15
    now[0] += 10
    assert budget.left(60, keep=20) == 50  # 70 s left, 20 of them kept for the consumers and the results
    now[0] += 75
    assert budget.left(15) == 1.0, "an exhausted budget still gives a call a second to answer"
