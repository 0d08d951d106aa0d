"""The pending pool's bounds (gateway/execution/pool.py), as pure bookkeeping: a sender's
consecutive pending transactions are not a gap; at most 64 may wait beyond them."""

from __future__ import annotations

import pytest

from gateway.errors import AccountStateRefusal, ServerError
from gateway.execution import pool as pool_module
from gateway.execution.pool import MAX_NONCE_GAP, PoolTx, TxPool

SENDER = b"\x11" * 20


def _tx(nonce: int, fee: int = 10, sender: bytes = SENDER) -> PoolTx:
    tag = sender + nonce.to_bytes(8, "big") + fee.to_bytes(4, "big")
    return PoolTx(
        hash=tag.ljust(32, b"\0"), sender=sender, nonce=nonce, gas=21_000, fee_cap=fee,
        tip_cap=fee, raw=b"", tx=None,
    )  # fmt: skip


def _admit(pool: TxPool, ptx: PoolTx, state_nonce: int) -> None:
    pool.add(ptx, pool.check(ptx, state_nonce))


def test_consecutive_pending_transactions_are_not_a_gap() -> None:
    """The bench.cluster refusal: 0..64 pooled at a node whose state is still 0, then 65."""
    pool = TxPool()
    for nonce in range(MAX_NONCE_GAP + 1):
        _admit(pool, _tx(nonce), 0)
    _admit(pool, _tx(MAX_NONCE_GAP + 1), 0)
    assert pool.pending_nonce(SENDER, 0) == MAX_NONCE_GAP + 2
    # and 64 more may still wait beyond the pending run, not 65
    top = pool.pending_nonce(SENDER, 0) + MAX_NONCE_GAP
    _admit(pool, _tx(top), 0)
    with pytest.raises(AccountStateRefusal) as refused:
        pool.check(_tx(top + 1), 0)
    message = str(refused.value.message)
    assert message.startswith(f"nonce too high: address 0x{SENDER.hex()}, tx: {top + 1} state: 0")
    assert "state" not in refused.value.private


def test_a_gap_counts_from_the_first_missing_nonce() -> None:
    pool = TxPool()
    _admit(pool, _tx(0), 0)
    _admit(pool, _tx(2), 0)  # nonce 1 missing: 2 waits
    _admit(pool, _tx(1 + MAX_NONCE_GAP), 0)
    with pytest.raises(AccountStateRefusal):
        pool.check(_tx(2 + MAX_NONCE_GAP), 0)
    _admit(pool, _tx(1), 0)  # the gap closes: the run now reaches 3
    _admit(pool, _tx(2 + MAX_NONCE_GAP), 0)


def test_replacing_a_queued_transaction_is_not_refused_as_too_high() -> None:
    pool = TxPool()
    original = _tx(MAX_NONCE_GAP, fee=100)
    _admit(pool, original, 0)
    assert pool.check(_tx(MAX_NONCE_GAP, fee=110), 0) is original
    with pytest.raises(ServerError, match="replacement transaction underpriced"):
        pool.check(_tx(MAX_NONCE_GAP, fee=105), 0)


def test_per_sender_and_pool_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "MAX_PER_SENDER", 5)
    monkeypatch.setattr(pool_module, "MAX_POOL_SIZE", 8)
    pool = TxPool()
    for nonce in range(5):
        _admit(pool, _tx(nonce), 0)
    with pytest.raises(ServerError, match=r"^account limit exceeded"):
        pool.check(_tx(5), 0)
    assert pool.check(_tx(4, fee=20), 0) is not None  # a replacement takes no new slot
    other = b"\x22" * 20
    for nonce in range(3):
        _admit(pool, _tx(nonce, sender=other), 0)
    with pytest.raises(ServerError, match=r"^txpool is full$"):
        pool.check(_tx(3, sender=other), 0)
