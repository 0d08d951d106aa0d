"""Fees: the next base fee, the suggested gas price, and eth_feeHistory with its rewards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eth.abc import BlockHeaderAPI
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas

from gateway.execution import format as fmt
from gateway.execution.views import BlockData

DEFAULT_PRIORITY_FEE = 1_000_000_000  # 1 gwei, suggested tip
MAX_FEE_HISTORY_BLOCKS = 1024


def next_base_fee(head: BlockHeaderAPI) -> int:
    return int(calculate_expected_base_fee_per_gas(head))


def gas_price(head: BlockHeaderAPI) -> int:
    return next_base_fee(head) + DEFAULT_PRIORITY_FEE


def fee_history(
    count: int,
    newest: BlockHeaderAPI,
    percentiles: Sequence[float],
    *,
    header_by_number: Callable[[int], BlockHeaderAPI | None],
    block_data: Callable[[BlockHeaderAPI], BlockData],
) -> dict[str, Any]:
    count = max(0, min(count, MAX_FEE_HISTORY_BLOCKS, newest.block_number + 1))
    oldest = newest.block_number - count + 1
    base_fees: list[str] = []
    ratios: list[float] = []
    rewards: list[list[str]] = []
    for number in range(oldest, newest.block_number + 1):
        header = header_by_number(number)
        assert header is not None
        base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
        base_fees.append(fmt.qty(base_fee))
        ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
        if percentiles:
            rewards.append(
                [fmt.qty(r) for r in block_rewards(block_data(header), base_fee, percentiles)]
            )
    if count:
        base_fees.append(fmt.qty(next_base_fee(newest)))
    out: dict[str, Any] = {
        "oldestBlock": fmt.qty(oldest if count else newest.block_number),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
    }
    if percentiles:
        out["reward"] = rewards
    return out


def block_rewards(data: BlockData, base_fee: int, percentiles: Sequence[float]) -> list[int]:
    """The priority fee at each gas-weighted percentile of a block's transactions."""
    if not data.txs:
        return [0 for _ in percentiles]
    items = []
    previous = 0
    for tx, receipt in zip(data.txs, data.receipts, strict=True):
        tip = fmt.effective_gas_price(tx, base_fee) - base_fee
        items.append((tip, receipt.gas_used - previous))
        previous = receipt.gas_used
    items.sort()
    total = sum(g for _, g in items) or 1
    out = []
    for p in percentiles:
        threshold = total * p / 100
        acc = 0
        chosen = items[-1][0]
        for tip, gas in items:
            acc += gas
            if acc >= threshold:
                chosen = tip
                break
        out.append(max(chosen, 0))
    return out
