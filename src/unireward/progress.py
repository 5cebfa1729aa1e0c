"""Progress bars for the loops that run longer than a few seconds (tqdm, on stderr).

Shown only when stderr is a terminal and `UNIREWARD_PROGRESS` is not "0": logs, Kubeflow
tasks and the tests stay free of bar lines.

    for batch in progress(batches, "generate", total=len(batches)):
        ...
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
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
