"""Refusals of peers' frames are counted per reason and logged rate-limited
(gateway/p2p/refusals.py), on a fake clock."""

from __future__ import annotations

import logging

import pytest

from gateway.p2p.refusals import REPLAYED, STALE, RefusalLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_every_refusal_and_logs_a_burst_then_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    refusals = RefusalLog(logging.getLogger("test.refusals"), burst=3, interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.refusals"):
        written = [refusals.refuse(REPLAYED, "frame %d", i) for i in range(100)]
        assert written == [True] * 3 + [False] * 97
        clock.now += 10  # one token back
        assert refusals.refuse(REPLAYED, "frame %d", 100)
        assert not refusals.refuse(REPLAYED, "frame %d", 101)
        assert refusals.refuse(STALE, "height %d", 7)  # another reason has its own bucket
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [f"refused (replayed-message): frame {i}" for i in range(3)]
    assert lines[3] == (
        "refused (replayed-message): frame 100 (97 more replayed-message since the last such line)"
    )
    assert lines[4] == "refused (stale-height): height 7"
    assert len(lines) == 5
    assert refusals.snapshot() == {REPLAYED: 102, STALE: 1}


def test_the_reason_table_is_bounded() -> None:
    refusals = RefusalLog(logging.getLogger("test.refusals"), max_reasons=4, clock=FakeClock())
    for i in range(50):
        refusals.refuse(f"reason-{i}", "x")
    counts = refusals.snapshot()
    assert len(counts) == 5 and counts["other"] == 46
