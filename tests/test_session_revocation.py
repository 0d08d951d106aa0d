"""Session revocations between enclaves (docs/PROTOCOL.md, "Session revocation, version 1"):
blinded ids, sealed blobs bound to the consortium's keys and chain, bounded storage in the
ledger, and the ``revoked`` wire frame."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from eth_account import Account

from gateway.enclave import sessions as s
from gateway.enclave.sessions import MemoryRevocations, Session, SessionBook
from gateway.errors import Unauthorized
from gateway.ledger.store import Ledger
from gateway.p2p import wire

KEY = bytes(range(32))
GENESIS = b"\x07" * 32
NOW = 1_800_000_000
ADDRESS = bytes.fromhex(Account.create().address[2:])


def book(
    key: bytes = KEY, chain_id: int = 4343, genesis: bytes = GENESIS, **kw: object
) -> SessionBook:
    return SessionBook(key, chain_id, chain_tag=genesis, **kw)  # type: ignore[arg-type]


def token(b: SessionBook, expires: int = NOW + 3600) -> tuple[str, Session]:
    session = Session(ADDRESS, expires, secrets.token_bytes(16))
    return b._mint(session), session


def test_a_revocation_sealed_at_one_node_closes_the_session_at_another() -> None:
    a, b = book(), book()  # two enclaves of one consortium: the same token key
    t, session = token(a)
    assert b.verify(t, NOW) == session
    blob = a.revoke(t, NOW)
    with pytest.raises(Unauthorized, match="signed out"):
        a.verify(t, NOW)
    assert b.verify(t, NOW) == session  # not yet told
    added, refused, full = b.import_revocations([blob], NOW)
    assert (len(added), refused, full) == (1, 0, False)
    with pytest.raises(Unauthorized, match="signed out"):
        b.verify(t, NOW)
    # told again (a replay, or the full list on a new link): nothing new, nothing to relay
    assert b.import_revocations([blob, *a.export_revocations(NOW)], NOW) == ([], 0, False)


def test_the_blob_names_no_session_and_opens_only_in_its_consortium_and_chain() -> None:
    a = book()
    t, session = token(a)
    blob = a.revoke(t, NOW)
    assert session.session_id not in blob and a.revocation_id(session.session_id) not in blob
    assert blob[0] == s.REVOCATION_BLOB_VERSION and len(blob) == 1 + 12 + 24 + 16
    for other in (
        book(key=b"\x01" * 32),  # another consortium's secret
        book(chain_id=4344),  # another chain id
        book(genesis=b"\x08" * 32),  # another chain with the same id
    ):
        assert other.import_revocations([blob], NOW) == ([], 1, False)
    flipped = bytearray(blob)
    flipped[20] ^= 1
    assert book().import_revocations([bytes(flipped), b"", b"\x02" + blob[1:]], NOW) == (
        [],
        3,
        False,
    )


def test_expired_revocations_are_dropped_and_storage_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = book()
    short, _ = token(a, expires=NOW + 10)
    blob = a.revoke(short, NOW)
    late = book()
    # past the token's expiry a revocation is worth nothing: not kept
    assert late.import_revocations([blob], NOW + 10) == ([], 0, False)
    assert a.export_revocations(NOW + 10) == []
    monkeypatch.setattr(s, "MAX_REVOCATIONS", 2)
    full = book()
    tokens = [token(full)[0] for _ in range(3)]
    full.revoke(tokens[0], NOW)
    full.revoke(tokens[1], NOW)
    with pytest.raises(Unauthorized) as refused:
        full.revoke(tokens[2], NOW)
    assert refused.value.reason_code == "too-many-sign-outs"
    # once the first ones expire there is room again
    assert full.export_revocations(NOW + 3600) == []
    later, _ = token(full, expires=NOW + 7200)
    assert full.revoke(later, NOW + 3600)


def test_many_revocations_export_in_blobs_that_fit_a_frame() -> None:
    a = book()
    rows = [(secrets.token_bytes(16), NOW + 100) for _ in range(s.REVOCATIONS_PER_BLOB + 5)]
    store = MemoryRevocations()
    store.add_revocations(rows, NOW, s.MAX_REVOCATIONS)
    a = book(revocations=store)
    blobs = a.export_revocations(NOW)
    assert len(blobs) == 2 and len(blobs[0]) == s.MAX_REVOCATION_BLOB
    frame = wire.frame("revoked", blobs=blobs)
    assert wire.decode(wire.encode(frame)) == frame
    assert s.MAX_REVOCATION_BLOB <= wire.MAX_REVOCATION_BLOB
    b = book()
    added, refused, _ = b.import_revocations(blobs, NOW)
    assert sorted(added) == sorted(rows) and refused == 0


def test_the_ledger_keeps_revocations_durably_and_prunes_them(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    a = book(revocations=ledger)
    t, session = token(a, expires=NOW + 60)
    a.revoke(t, NOW)
    ledger.close()
    ledger = Ledger(path)  # a restart
    a = book(revocations=ledger)
    with pytest.raises(Unauthorized, match="signed out"):
        a.verify(t, NOW)
    assert session.session_id not in path.read_bytes()
    rows, full = ledger.add_revocations([(b"\x01" * 16, NOW + 120)], NOW + 61, 10)
    assert rows == [(b"\x01" * 16, NOW + 120)] and not full
    assert ledger.live_revocations(NOW + 61) == rows  # the expired one was pruned
    assert ledger.add_revocations([(b"\x02" * 16, NOW + 120)], NOW + 61, 1) == ([], True)
    ledger.close()


def test_the_revoked_frame_is_checked() -> None:
    too_many = wire.frame("revoked", blobs=[b"x"] * (wire.MAX_REVOCATION_BLOBS + 1))
    with pytest.raises(wire.WireError) as bad:
        wire.encode(too_many)
    assert bad.value.reason == "bad-field"
    too_big = wire.frame("revoked", blobs=[b"x" * (wire.MAX_REVOCATION_BLOB + 1)])
    with pytest.raises(wire.WireError):
        wire.encode(too_big)
    assert wire.WIRE_VERSION >= 3 and "revoked" not in wire.PUBLIC_FRAMES
