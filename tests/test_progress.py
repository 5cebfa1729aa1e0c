"""Progress bars: on a terminal only, never in logs or when UNIREWARD_PROGRESS=0.

.venv/bin/pytest tests/test_progress.py -q
"""

from __future__ import annotations

import io
import sys

from unireward.progress import enabled, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_and_the_items_pass_through(monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("UNIREWARD_PROGRESS", raising=False)
    assert enabled()
    assert list(progress(range(5), "generate", 5)) == [0, 1, 2, 3, 4]
    assert "generate:" in terminal.getvalue() and "/5 [" in terminal.getvalue()  # the bar


def test_no_bar_in_a_log_or_when_switched_off(monkeypatch) -> None:
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    assert list(progress(iter("abc"), "ingest")) == ["a", "b", "c"] and log.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("UNIREWARD_PROGRESS", "0")
    assert not enabled() and list(progress([1], "x")) == [1] and terminal.getvalue() == ""


def test_gather_progress_keeps_the_order_and_ticks_once_per_request(monkeypatch) -> None:
    """The judge client's concurrent requests: results in the order given (not the order they
    finish), one tick each on a terminal, and plain asyncio.gather in a log."""
    import asyncio

    from unireward.progress import gather_progress

    async def reply(i: int) -> int:
        await asyncio.sleep(0.15 * (3 - i))  # the last one finishes first; tqdm redraws at most
        return i  # every 0.1 s

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("UNIREWARD_PROGRESS", raising=False)
    assert asyncio.run(gather_progress([reply(i) for i in range(3)], "judge pairs")) == [0, 1, 2]
    assert "judge pairs:" in terminal.getvalue() and "3/3" in terminal.getvalue()
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert asyncio.run(gather_progress([reply(i) for i in range(3)], "x")) == [0, 1, 2]
    assert log.getvalue() == ""
