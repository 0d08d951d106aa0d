"""Logs: eth_getLogs over a block range or one block, and how a filter matches a log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth.abc import BlockHeaderAPI
from eth_bloom import BloomFilter

from gateway.errors import LimitExceeded, ServerError
from gateway.execution import format as fmt
from gateway.execution.views import BlockViews

MAX_LOG_BLOCK_RANGE = 10_000
MAX_LOG_RESULTS = 10_000

LogVisibility = Callable[[Any, Sequence[Any]], bool]


def topic_bytes(topic: Any) -> bytes:
    return topic.to_bytes(32, "big") if isinstance(topic, int) else bytes(topic)


@dataclass(frozen=True)
class LogFilter:
    from_block: int
    to_block: int
    addresses: tuple[bytes, ...] = ()
    # topics[i] is None (any) or a tuple of alternatives
    topics: tuple[tuple[bytes, ...] | None, ...] = ()
    block_hash: bytes | None = None


def query_logs(
    flt: LogFilter,
    views: BlockViews,
    *,
    head_number: int,
    header_by_number: Callable[[int], BlockHeaderAPI | None],
    header_by_hash: Callable[[bytes], BlockHeaderAPI | None],
    visible: LogVisibility | None = None,
) -> list[dict[str, Any]]:
    """Matching logs; ``visible(tx, topics)`` hides the ones the caller may not see."""
    if flt.block_hash is not None:
        header = header_by_hash(flt.block_hash)
        if header is None:
            raise ServerError(f"unknown block 0x{flt.block_hash.hex()}")
        headers: Sequence[BlockHeaderAPI] = [header]
    else:
        start, end = flt.from_block, min(flt.to_block, head_number)
        if end - start + 1 > MAX_LOG_BLOCK_RANGE:
            raise LimitExceeded(
                f"block range too large: {end - start + 1} blocks, at most "
                f"{MAX_LOG_BLOCK_RANGE} per eth_getLogs call"
            )
        headers = [h for n in range(start, end + 1) if (h := header_by_number(n))]
    out: list[dict[str, Any]] = []
    for header in headers:
        if not header.bloom or not bloom_may_match(header.bloom, flt):
            continue
        data = views.data(header)
        for i, (tx, receipt) in enumerate(zip(data.txs, data.receipts, strict=True)):
            shown = None
            for j, entry in enumerate(receipt.logs):
                if not log_matches(entry, flt):
                    continue
                if visible is not None and not visible(tx, entry.topics):
                    continue
                if shown is None:
                    shown = views.shown_logs(tx, receipt.logs)
                out.append(
                    fmt.log_to_rpc(
                        shown[j],
                        block_hash=header.hash,
                        block_number=header.block_number,
                        tx_hash=tx.hash,
                        tx_index=i,
                        log_index=data.first_log_index[i] + j,
                    )
                )
                if len(out) > MAX_LOG_RESULTS:
                    raise LimitExceeded(
                        f"query returned more than {MAX_LOG_RESULTS} results; "
                        "narrow the block range or the filter"
                    )
    return out


def bloom_may_match(bloom_value: int, flt: LogFilter) -> bool:
    bloom = BloomFilter(bloom_value)
    if flt.addresses and not any(a in bloom for a in flt.addresses):
        return False
    for alternatives in flt.topics:
        if alternatives and not any(t in bloom for t in alternatives):
            return False
    return True


def log_matches(entry: Any, flt: LogFilter) -> bool:
    if flt.addresses and bytes(entry.address) not in flt.addresses:
        return False
    topics = [t.to_bytes(32, "big") if isinstance(t, int) else bytes(t) for t in entry.topics]
    for i, alternatives in enumerate(flt.topics):
        if alternatives is None or not alternatives:
            continue
        if i >= len(topics) or topics[i] not in alternatives:
            return False
    return True
