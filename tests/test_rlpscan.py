"""The RLP structure pre-scan that guards the enclave's transaction decoder (pure)."""

from __future__ import annotations

import time

import pytest
import rlp
from rlp_support import nested_lists

from gateway.execution.rlpscan import MAX_DEPTH, RlpShapeError, check


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x01",
        b"x" * 55,
        b"x" * 56,
        b"x" * 70_000,
        [],
        [b"", [b"a", [b"b" * 100, []]], b"c" * 60],
        [[b"k" * 32] * 3000],
        [[[]]] * 10,
    ],
)
def test_well_formed_items_pass(value: object) -> None:
    check(rlp.encode(value))


def test_a_real_access_list_transaction_passes() -> None:
    from eth_account import Account

    tx = {
        "type": 1,
        "chainId": 1,
        "nonce": 0,
        "gasPrice": 1,
        "gas": 10**6,
        "to": "0x" + "11" * 20,
        "value": 0,
        "data": "0x",
        "accessList": [{"address": "0x" + "22" * 20, "storageKeys": ["0x" + "33" * 32] * 50}],
    }
    raw = bytes(Account.sign_transaction(tx, "0x" + "44" * 32).raw_transaction)
    check(raw[1:])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty input"),
        (b"\x81", "exceeds available input length"),
        (b"\xb9\x01", "exceeds available input length"),
        (b"\xb9\xff\xff" + b"x" * 10, "exceeds available input length"),
        (b"\xc3\x01\x02", "exceeds available input length"),
        (b"\xc2\x82\x01\x02", "exceeds available input length"),  # child overruns parent
        (b"\xf9", "exceeds available input length"),
        (b"\x01\x02", "more than one value"),
        (b"\xc0\xc0", "more than one value"),
        (nested_lists(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH} levels"),
        (rlp.encode([b""] * 40_000), "more than 32768 values"),
    ],
)
def test_malformed_or_absurd_input_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RlpShapeError, match=reason) as info:
        check(data)
    assert str(info.value).startswith("rlp: ")


def test_the_depth_bound_is_inclusive() -> None:
    check(nested_lists(MAX_DEPTH))


def test_forty_thousand_nested_lists_are_refused_at_once() -> None:
    data = nested_lists(38_000)
    assert len(data) < 128 * 1024
    started = time.perf_counter()
    with pytest.raises(RlpShapeError, match="deeper"):
        check(data)
    assert time.perf_counter() - started < 0.05
