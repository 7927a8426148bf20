from __future__ import annotations

import logging

import pytest

from acecoder.jsonl import Progress, pace


@pytest.mark.parametrize(("done", "seconds", "said"), [
    (0, 12.0, "none done in 12 s"),
    (30, 10.0, "3.0/s"),
    (2, 10.0, "5.0 s each"),
    (5, 0.0, "just started"),
])
def test_pace_reads_well_for_any_rate(done: int, seconds: float, said: str) -> None:
    assert pace(done, seconds) == said


def test_a_log_line_while_nothing_has_finished_yet(caplog) -> None:  # type: ignore[no-untyped-def]
    """A long first item: a poller updates by 0 after the log interval; the log line must
    still be written (this once divided by zero and killed the demo)."""
    times = iter([100.0, 115.0, 130.0])
    bar = Progress(4, False, what="questions", clock=lambda: next(times))
    with caplog.at_level(logging.INFO, logger="acecoder.jsonl"):
        bar.update(0)
        bar.update(2)
    bar.close()
    assert [r.getMessage() for r in caplog.records] == [
        "0/4 questions (none done in 15 s)", "2/4 questions (15.0 s each)"]
