"""Recovery shares: k-of-n split and combine, commitments that name a wrong share, each share
sealed to one member, and fewer than k shares telling nothing."""

from __future__ import annotations

import itertools
import os

import pytest
from Crypto.Protocol.SecretSharing import Shamir, _Element
from governance_support import ADDRS, CHAIN_ID, GENESIS, OTHER_GENESIS, enc_key, enc_pub, refused

from gateway.governance import recovery as r

CTX = r.ShareContext(CHAIN_ID, GENESIS, 3)
KEY = bytes(range(100, 132))


def _holders(n: int) -> list[tuple[bytes, bytes]]:
    return [(ADDRS[i], enc_pub(i)) for i in range(n)]


@pytest.mark.parametrize(("k", "n"), [(1, 1), (1, 3), (2, 3), (3, 5), (5, 5)])
def test_any_k_of_n_shares_rebuild_the_key(k: int, n: int) -> None:
    shares = r.split_key(KEY, k, n)
    assert [i for i, _ in shares] == list(range(1, n + 1))
    assert all(len(v) == 32 for _, v in shares)
    for subset in itertools.combinations(shares, k):
        assert r.combine_key(list(subset)) == KEY


def test_fewer_than_k_shares_reveal_nothing() -> None:
    k, n = 3, 5
    shares = r.split_key(KEY, k, n)
    short = shares[: k - 1]
    # interpolating k-1 shares gives some other value, not the key
    assert r.combine_key(short) != KEY
    # and every key is equally consistent with them: for any target, a k-th share exists
    # that completes the k-1 shares to exactly that target (shown for the first half)
    for target in (bytes(16), os.urandom(16), KEY[:16]):
        x_k = 4
        base = Shamir.combine([(i, v[:16]) for i, v in short] + [(x_k, bytes(16))])
        unit = Shamir.combine([(i, bytes(16)) for i, _ in short] + [(x_k, (1).to_bytes(16, "big"))])
        y_k = (_Element(target) + _Element(base)) * _Element(unit).inverse()
        completed = [(i, v[:16]) for i, v in short] + [(x_k, y_k.encode())]
        assert Shamir.combine(completed) == target
    # two splits of the same key give unrelated shares
    again = r.split_key(KEY, k, n)
    assert all(a != b for (_, a), (_, b) in zip(shares, again, strict=True))


def test_issue_decrypt_and_recover() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(3), context=CTX)
    assert [s.member for s in share_set.shares] == ADDRS[:3]
    opened = {
        ADDRS[i]: r.decrypt_share(share_set.for_member(ADDRS[i]), enc_key(i), CTX) for i in range(3)
    }
    for member, share in opened.items():
        r.check_share(share_set, member, share)
    for pair in itertools.combinations(opened, 2):
        assert r.recover(share_set, {m: opened[m] for m in pair}) == KEY
    assert r.recover(share_set, opened) == KEY  # more than the threshold: any 2 are used
    # the ledger form round-trips
    again = r.ShareSet.from_json(share_set.to_json())
    assert again == share_set
    assert r.Share.decode(opened[ADDRS[0]].encode()) == opened[ADDRS[0]]


def test_too_few_shares_are_refused() -> None:
    share_set = r.issue(KEY, threshold=3, holders=_holders(4), context=CTX)
    opened = {
        ADDRS[i]: r.decrypt_share(share_set.shares[i], enc_key(i).private_bytes_raw(), CTX)
        for i in range(2)
    }
    err = refused("too-few-shares", r.recover, share_set, opened)
    assert err.fields == {"submitted": 2, "threshold": 3}


def test_a_wrong_share_is_named_and_refused() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(3), context=CTX)
    good = {ADDRS[i]: r.decrypt_share(share_set.shares[i], enc_key(i), CTX) for i in range(3)}
    # a tampered value
    bad = r.Share(good[ADDRS[1]].index, bytes(32), good[ADDRS[1]].blind)
    err = refused("wrong-share", r.recover, share_set, {ADDRS[0]: good[ADDRS[0]], ADDRS[1]: bad})
    assert err.fields == {"member": "0x" + ADDRS[1].hex()}
    # member 2 submits member 1's share as its own
    err = refused("wrong-share", r.check_share, share_set, ADDRS[2], good[ADDRS[1]])
    assert err.fields == {"member": "0x" + ADDRS[2].hex()}
    # a share of an earlier generation
    old = r.issue(
        KEY, threshold=2, holders=_holders(3), context=r.ShareContext(CHAIN_ID, GENESIS, 2)
    )
    stale = r.decrypt_share(old.shares[0], enc_key(0), old.context)
    refused("wrong-share", r.check_share, share_set, ADDRS[0], stale)
    refused("unknown-holder", r.check_share, share_set, ADDRS[4], good[ADDRS[0]])
    refused("bad-share", r.Share.decode, b"\x00" * 65)


def test_a_share_opens_only_for_its_member_consortium_and_generation() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(3), context=CTX)
    mine = share_set.shares[0]
    refused("wrong-share", r.decrypt_share, mine, enc_key(1), CTX)  # another member's key
    refused("wrong-share", r.decrypt_share, mine, enc_key(0), r.ShareContext(CHAIN_ID, GENESIS, 4))
    refused(
        "wrong-share", r.decrypt_share, mine, enc_key(0), r.ShareContext(CHAIN_ID, OTHER_GENESIS, 3)
    )
    refused("wrong-share", r.decrypt_share, mine, enc_key(0), r.ShareContext(1, GENESIS, 3))
    # the ciphertext relabelled as member 1's
    moved = r.IssuedShare(ADDRS[1], mine.index, mine.commitment, mine.ciphertext)
    refused("wrong-share", r.decrypt_share, moved, enc_key(0), CTX)
    flipped = bytearray(mine.ciphertext)
    flipped[-1] ^= 1
    refused(
        "wrong-share",
        r.decrypt_share,
        r.IssuedShare(mine.member, mine.index, mine.commitment, bytes(flipped)),
        enc_key(0),
        CTX,
    )
    refused(
        "bad-share",
        r.decrypt_share,
        r.IssuedShare(mine.member, mine.index, mine.commitment, mine.ciphertext[:-1]),
        enc_key(0),
        CTX,
    )
    # nothing of the key or the share in what the ledger records
    blob = str(share_set.to_json()).encode()
    opened = r.decrypt_share(mine, enc_key(0), CTX)
    assert KEY.hex().encode() not in blob and opened.value.hex().encode() not in blob


def test_wrap_and_unwrap_the_ledger_secret() -> None:
    secret = os.urandom(32)
    wrapped = r.wrap_secret(KEY, secret, CTX)
    assert secret not in wrapped
    assert r.unwrap_secret(KEY, wrapped, CTX) == secret
    refused("wrong-share", r.unwrap_secret, bytes(32), wrapped, CTX)
    refused("wrong-share", r.unwrap_secret, KEY, wrapped, r.ShareContext(CHAIN_ID, GENESIS, 4))
    # end to end: shares -> key -> secret
    share_set = r.issue(KEY, threshold=2, holders=_holders(2), context=CTX)
    opened = {ADDRS[i]: r.decrypt_share(share_set.shares[i], enc_key(i), CTX) for i in range(2)}
    assert r.unwrap_secret(r.recover(share_set, opened), wrapped, CTX) == secret


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        r.split_key(KEY[:16], 1, 1)
    with pytest.raises(ValueError):
        r.split_key(KEY, 3, 2)
    with pytest.raises(ValueError):
        r.split_key(KEY, 0, 2)
    with pytest.raises(ValueError):
        r.issue(KEY, threshold=1, holders=[], context=CTX)
    with pytest.raises(ValueError):
        r.issue(KEY, threshold=1, holders=_holders(1) * 2, context=CTX)
    refused("bad-share", r.ShareSet.from_json, {"version": 1})
