"""What a node refuses from its peers: counted per reason code, logged without flooding.

A peer (or whoever holds its host, or a relay) can send the same frame again and again, or
messages of heights long decided. Each refusal is counted under a stable reason code
(``replayed-message``, ``stale-height``, and the QBFT core's codes such as ``bad-signature``)
and logged, but through a token bucket per reason, as ``gateway.server.logs`` does for bad
client requests: at most ``burst`` lines at once, then one per ``interval`` seconds, each
saying how many it held back. The counts are what ``coco_nodeStatus`` shows as ``refused``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

REPLAYED = "replayed-message"  # a QBFT message or transaction batch this node already had
NOT_TRUSTED = "not-trusted"  # chain traffic from a node governance has not trusted (yet)
STALE = "stale-height"  # a QBFT message of a height its sender told us it has decided


class RefusalLog:
    """Counts refusals per reason and logs them at INFO, rate-limited per reason."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_reasons: int = 64,
    ) -> None:
        self.log = logger
        self.burst = burst
        self.interval = interval
        self.max_reasons = max_reasons
        self._clock = clock
        self.counts: collections.Counter[str] = collections.Counter()
        self._tokens: dict[str, tuple[float, float]] = {}  # reason -> (tokens, last refill)
        self._held: collections.Counter[str] = collections.Counter()

    def refuse(self, reason: str, message: str, *args: Any) -> bool:
        """Count one refusal; log ``message % args`` with the reason unless the reason's
        bucket is empty. Returns whether a line was written."""
        if reason not in self.counts and len(self.counts) >= self.max_reasons:
            reason = "other"  # reason codes are ours, but keep the table bounded regardless
        self.counts[reason] += 1
        now = self._clock()
        tokens, last = self._tokens.get(reason, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) / self.interval)
        if tokens < 1:
            self._tokens[reason] = (tokens, now)
            self._held[reason] += 1
            return False
        self._tokens[reason] = (tokens - 1, now)
        held = self._held.pop(reason, 0)
        more = f" ({held} more {reason} since the last such line)" if held else ""
        if self.log.isEnabledFor(logging.INFO):
            self.log.info(f"refused (%s): {message}%s", reason, *args, more)
        return True

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
