"""Stopping a task whose wait_for swallowed the cancel (Python 3.11) must still end it: a producer's stop
hung on such an admission loop once, and with it the whole run."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from camerafleet.admission import Admission
from camerafleet.api.manifest import load_manifest
from camerafleet.tasks import cancel_until_done

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 30  # generous: the fix needs one re-cancel, about one second


async def _ends_within_bound(stopping: Coroutine[Any, Any, None]) -> bool:
    """Whether the coroutine ends within the bound (not asyncio.wait_for: on 3.11 it has the same flaw)."""
    task = asyncio.ensure_future(stopping)
    done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_S)
    task.cancel()
    return bool(done)


async def _swallows_first_cancel(cancels: list[int]) -> None:
    """As Python 3.11's wait_for does when its call completes in the step the cancel arrives: the loop runs on."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancels.append(1)
            if len(cancels) > 1:
                raise


def test_a_task_that_swallows_one_cancel_is_cancelled_again_until_it_ends() -> None:
    async def scenario() -> list[int]:
        cancels: list[int] = []
        task = asyncio.create_task(_swallows_first_cancel(cancels))
        await asyncio.sleep(0)
        assert await _ends_within_bound(cancel_until_done([task]))
        assert task.cancelled()
        return cancels

    assert len(asyncio.run(scenario())) == 2


def test_admission_stop_returns_though_its_loop_swallowed_the_cancel() -> None:
    spec = load_manifest(ROOT / "examples" / "demo-fleet.yaml").spec

    async def scenario() -> None:
        admission = Admission(spec)
        cancels: list[int] = []
        admission.task = asyncio.create_task(_swallows_first_cancel(cancels))
        await asyncio.sleep(0)
        assert await _ends_within_bound(admission.stop())  # hung forever before: one cancel, then await
        assert admission.task is None and cancels == [1, 1]

    asyncio.run(scenario())
