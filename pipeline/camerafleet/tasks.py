"""Stopping asyncio tasks for sure.

On Python 3.11, ``asyncio.wait_for`` returns its inner call's result instead of raising when the task is
cancelled in the same loop step as that call completes (fixed in 3.12): one ``task.cancel()`` can be lost,
and a loop that wraps its calls in ``wait_for`` then runs on while its owner awaits it forever. A producer's
stop hung that way once under overload (the bench's tiny profile, in CI).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

#: How long to wait after each cancel before cancelling again (a lost cancel costs this much).
RECANCEL_INTERVAL_S = 1.0


async def cancel_until_done(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel the tasks, again each second for any that swallowed it, until all have ended."""
    left = {t for t in tasks if not t.done()}
    while left:
        for task in left:
            task.cancel()
        _, left = await asyncio.wait(left, timeout=RECANCEL_INTERVAL_S)
