"""Progress bars for the loops that run longer than a few seconds (tqdm, on stderr).

Shown only when stderr is a terminal and `UNIREWARD_PROGRESS` is not "0": logs, Kubeflow
tasks and the tests stay free of bar lines.

    for batch in progress(batches, "generate", total=len(batches)):
        ...
    replies = await gather_progress(requests, "judge pairs")   # asyncio.gather with a bar
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("UNIREWARD_PROGRESS", "1") != "0" and sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """`iterable` with a bar labelled `desc` while `enabled()`, else the iterable unchanged."""
    if not enabled():
        yield from iterable
        return
    from tqdm import tqdm

    yield from tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, unit="it")


async def gather_progress(awaitables: Sequence[Awaitable[T]], desc: str) -> list[T]:
    """`asyncio.gather(*awaitables)` (results in order) with a bar that ticks as each one
    finishes, while `enabled()`."""
    if not enabled():
        return list(await asyncio.gather(*awaitables))
    from tqdm import tqdm

    bar = tqdm(total=len(awaitables), desc=desc, file=sys.stderr, leave=False, unit="req")

    async def tick(awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        finally:
            bar.update()

    try:
        return list(await asyncio.gather(*(tick(a) for a in awaitables)))
    finally:
        bar.close()
