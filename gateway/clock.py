"""The wall clock of a node: the host shell's QBFT timers and block timestamps, and the
enclave's. One place, so a test can move one node's clock: ``COCO_CLOCK_OFFSET_SECONDS``
(a testing knob, docs/operating.md) is added to ``time.time()``; it is read once, when this
module is first imported, in each process (the enclave process inherits the host's
environment)."""

from __future__ import annotations

import math
import os
import time

OFFSET_ENV = "COCO_CLOCK_OFFSET_SECONDS"
MAX_OFFSET = 10 * 365 * 86_400  # ten years either way: anything more is a typo


def _offset(text: str | None) -> float:
    if text is None or not text.strip():
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_OFFSET:
        raise ValueError(
            f"{OFFSET_ENV} must be a number of seconds (at most ten years), not {text!r}"
        )
    return value


OFFSET = _offset(os.environ.get(OFFSET_ENV))


def now() -> float:
    """Seconds since the epoch, as this node's clock shows them."""
    return time.time() + OFFSET
