"""What clients may write into the node's log: one short line per bad request, rate-limited.

aiohttp logs every malformed request (bad request line, header, chunking, compression,
a client gone mid-body) on the ``aiohttp.server`` logger at ERROR with a traceback. Those
are the client's faults, not the node's: ``ClientErrorFilter`` rewrites each into one
INFO line without the traceback and lets at most ``burst`` of them through, then one per
``1 / rate`` seconds, saying how many it held back. Anything else on that logger (an
exception escaping one of our handlers: a bug) passes unchanged, traceback included.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aiohttp import http_exceptions
from aiohttp.web_protocol import RequestPayloadError

SERVER_LOGGER = "aiohttp.server"

# the client sent something that is not HTTP, or not the HTTP its headers promise, or left
_CLIENT_FAULTS: tuple[type[BaseException], ...] = (
    http_exceptions.HttpProcessingError,
    RequestPayloadError,
    ConnectionError,
)


def client_fault(exc: BaseException | None) -> bool:
    return isinstance(exc, _CLIENT_FAULTS)


def _one_line(text: str, limit: int = 160) -> str:
    """Client-chosen text, on one line and short, so a request cannot forge log lines."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ClientErrorFilter(logging.Filter):
    """A token bucket over client-fault records; rewrites the ones it lets through."""

    def __init__(
        self,
        *,
        burst: int = 20,
        rate: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not client_fault(exc):
            return True
        assert exc is not None
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                self._suppressed += 1
                return False
            self._tokens -= 1
            suppressed, self._suppressed = self._suppressed, 0
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        # "Error handling request from 1.2.3.4": keep the peer
        text = record.getMessage()
        peer = text.partition(" from ")[2] if text.startswith("Error handling request") else ""
        where = f" from {_one_line(peer, 60)}" if peer else ""
        message = f"bad request{where}: {type(exc).__name__}: {_one_line(str(reason))}"
        if suppressed:
            message += f" ({suppressed} more suppressed)"
        record.msg, record.args = message, None
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info = record.exc_text = None
        record.stack_info = None
        return True


_installed: ClientErrorFilter | None = None


def quiet_client_errors() -> ClientErrorFilter:
    """Install the filter on aiohttp's server logger (once per process)."""
    global _installed
    if _installed is None:
        _installed = ClientErrorFilter()
        logging.getLogger(SERVER_LOGGER).addFilter(_installed)
    return _installed
