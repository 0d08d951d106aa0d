"""Sealed snapshots between real enclaves in this process (issue 8, item 9).

Node A builds blocks; node B (same consortium secret, as the join gives it) starts from A's
snapshot instead of replaying them, then imports A's later blocks. The chunks are checked
one by one (sealed for this consortium, in order, rows shaped as a sealed ledger's) and the
snapshot as a whole (complete, one chain from B's genesis, a quorum of seals on its head,
its state root resolving); anything else is refused with a reason and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import TerminalProgress
from test_block_replication import ACCOUNTS, _open, _seed_secret, seals_for, wire

from gateway.enclave import messages as m
from gateway.enclave import snapshot as snap
from gateway.enclave.core import Enclave
from gateway.errors import RpcError, SnapshotRefused

SMALL = snap.MIN_CHUNK_BYTES  # many chunks even for a small chain


@dataclass
class Pair:
    a: Enclave  # the source
    b: Enclave  # starts from a snapshot
    tmp: Path


def _as_consortium(enclaves: list[Enclave]) -> None:
    validators = tuple(e.validator for e in enclaves)
    for e in enclaves:
        e.consensus_validators = validators
        e.dev_chain = False


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    a = _open(tmp_path / "a")
    _seed_secret(tmp_path / "a", tmp_path / "b")
    b = _open(tmp_path / "b")
    _as_consortium([a, b])
    yield Pair(a, b, tmp_path)
    a.close()
    b.close()


def build(p: Pair, txs: int = 0) -> None:
    """A builds the next block (with ``txs`` dev transfers) and commits it with both seals."""
    for i in range(txs):
        sender = bytes.fromhex(ACCOUNTS[i % len(ACCOUNTS)].address[2:])
        p.a.handle(m.SubmitTx(sender=sender, to=b"\x11" * 20, value=1000 + i))
    candidate = p.a.prepare_candidate(int(time.time()))
    assert candidate is not None
    seals = seals_for([p.a, p.b], candidate, 0, p.a.validator)
    p.a.commit_candidate(candidate, 0, p.a.validator, seals)


def export_all(source: Enclave, limit: int = SMALL) -> list[bytes]:
    """Every chunk of a snapshot of ``source``, through the enclave codec."""
    chunks: list[bytes] = []
    head: bytes | None = None
    cursor: bytes | None = b""
    while cursor is not None:
        answer = wire(source, m.ExportSnapshot(head, cursor, limit))
        head, cursor = answer["hash"], answer["next"]
        chunks.append(answer["chunk"])
    return chunks


def refused(reason: str, run: Any) -> SnapshotRefused:
    with pytest.raises(RpcError) as info:
        run()
    assert info.value.reason_code == reason, info.value.message
    return info.value  # type: ignore[return-value]


def test_a_node_starts_from_a_snapshot_then_imports_later_blocks(pair: Pair) -> None:
    p = pair
    pay = bytes.fromhex(ACCOUNTS[0].address[2:])
    tx = p.a.handle(m.SubmitTx(sender=pay, to=b"\x22" * 20, value=12345))
    build(p)
    for _ in range(4):
        build(p, txs=2)
    chunks = export_all(p.a)
    assert len(chunks) > 3  # really chunked
    for blob in chunks:  # the host and the wire see only sealed bytes
        assert b"\x22" * 20 not in blob
    answer: dict[str, Any] = {}
    for blob in chunks:
        answer = wire(p.b, m.ImportSnapshot(blob))
    assert answer["next"] is None and answer["height"] == 5
    assert wire(p.b, m.GetStatus())["snapshot"]["height"] == 5
    opened = wire(p.b, m.FinishSnapshot())
    assert opened["hash"] == p.a.engine.head.hash and opened["height"] == 5
    assert opened["stateRoot"] == p.a.engine.head.state_root
    assert wire(p.b, m.GetStatus())["snapshot"] is None
    # a receipt and a balance from before the snapshot, read through it
    receipt = wire(p.b, m.GetReceipt(tx))
    assert receipt is not None and receipt["blockNumber"] == "0x1"
    assert int(wire(p.b, m.GetAccount("balance", b"\x22" * 20, "latest"))) == 12345
    assert wire(p.b, m.GetFinality("latest"))["hash"] == p.a.engine.head.hash
    # later blocks come block by block, as catch-up
    build(p, txs=1)
    later = wire(p.a, m.ExportBlocks(6, 1))
    assert wire(p.b, m.ImportBlocks(later))["head"] == 6
    assert p.b.engine.head.hash == p.a.engine.head.hash
    # and B serves blocks from before its snapshot to others
    assert wire(p.b, m.ExportBlocks(1, 2)) == wire(p.a, m.ExportBlocks(1, 2))


def test_the_source_keeps_committing_during_an_export(pair: Pair) -> None:
    p = pair
    for _ in range(3):
        build(p, txs=1)
    first = wire(p.a, m.ExportSnapshot(None, b"", SMALL))
    pinned = first["hash"]
    for _ in range(3):  # the source goes on while the session is open
        build(p, txs=2)
    chunks = [first["chunk"]]
    cursor = first["next"]
    while cursor is not None:
        answer = wire(p.a, m.ExportSnapshot(pinned, cursor, SMALL))
        assert answer["hash"] == pinned
        chunks.append(answer["chunk"])
        cursor = answer["next"]
    for blob in chunks:
        wire(p.b, m.ImportSnapshot(blob))
    opened = wire(p.b, m.FinishSnapshot())
    assert opened["height"] == 3 and opened["hash"] == pinned
    assert p.b.ledger.head().hash == pinned  # type: ignore[union-attr]
    # nothing of blocks 4..6 leaked in: they are imported as usual, and then all agree
    assert wire(p.b, m.GetBlock(4)) is None
    assert wire(p.b, m.ImportBlocks(wire(p.a, m.ExportBlocks(4, 3))))["head"] == 6
    assert p.b.engine.head.state_root == p.a.engine.head.state_root


def test_a_restart_mid_snapshot_resumes(pair: Pair) -> None:
    p = pair
    for _ in range(3):
        build(p, txs=2)
    chunks = export_all(p.a)
    half = len(chunks) // 2
    for blob in chunks[:half]:
        wire(p.b, m.ImportSnapshot(blob))
    p.b.close()
    p.b = _open(p.tmp / "b")
    _as_consortium([p.a, p.b])
    staged = wire(p.b, m.GetStatus())["snapshot"]
    assert staged["height"] == 3 and staged["next"] not in (None, b"")
    refused("snapshot-incomplete", lambda: wire(p.b, m.FinishSnapshot()))  # and dropped
    assert wire(p.b, m.GetStatus())["snapshot"] is None
    for blob in chunks[:half]:
        wire(p.b, m.ImportSnapshot(blob))
    p.b.close()
    p.b = _open(p.tmp / "b")
    _as_consortium([p.a, p.b])
    for blob in chunks[half:]:
        wire(p.b, m.ImportSnapshot(blob))
    assert wire(p.b, m.FinishSnapshot())["hash"] == p.a.engine.head.hash


def test_chunks_that_are_not_this_consortiums_are_refused(pair: Pair, tmp_path: Path) -> None:
    p = pair
    for _ in range(2):
        build(p, txs=1)
    chunks = export_all(p.a)
    before = p.b.ledger.staged_counts()
    # altered on the way: one bit of the sealed chunk
    bad = bytearray(chunks[0])
    bad[len(bad) // 2] ^= 1
    refused("bad-snapshot-chunk", lambda: wire(p.b, m.ImportSnapshot(bytes(bad))))
    refused("bad-snapshot-chunk", lambda: wire(p.b, m.ImportSnapshot(chunks[0][:20])))
    # sealed by an enclave of another consortium (its own secret)
    other = _open(tmp_path / "other")
    _as_consortium([other])
    try:
        foreign = export_all(other)[0]
    finally:
        other.close()
    refused("bad-snapshot-chunk", lambda: wire(p.b, m.ImportSnapshot(foreign)))
    assert p.b.ledger.staged_counts() == before == (0, 0)
    # out of order: a later chunk first, or one skipped
    refused("snapshot-out-of-order", lambda: wire(p.b, m.ImportSnapshot(chunks[1])))
    wire(p.b, m.ImportSnapshot(chunks[0]))
    refused("snapshot-out-of-order", lambda: wire(p.b, m.ImportSnapshot(chunks[2])))
    refused("snapshot-incomplete", lambda: wire(p.b, m.FinishSnapshot()))
    refused("no-snapshot", lambda: wire(p.b, m.FinishSnapshot()))
    # nothing moved: B is still at genesis and can take the whole snapshot afterwards
    assert p.b.engine.head.block_number == 0
    for blob in chunks:
        wire(p.b, m.ImportSnapshot(blob))
    assert wire(p.b, m.FinishSnapshot())["height"] == 2


def test_a_snapshot_without_a_quorum_of_seals_is_refused(pair: Pair) -> None:
    p = pair
    for _ in range(2):
        build(p)
    chunks = export_all(p.a)
    # B's validator set (from its terms) does not include who sealed these blocks
    p.b.consensus_validators = (b"\x01" * 20, b"\x02" * 20, b"\x03" * 20)
    for blob in chunks:
        wire(p.b, m.ImportSnapshot(blob))
    refused("bad-seals", lambda: wire(p.b, m.FinishSnapshot()))
    assert p.b.engine.head.block_number == 0 and p.b.ledger.staged_counts() == (0, 0)


def test_a_snapshot_not_ahead_is_refused(pair: Pair) -> None:
    p = pair
    build(p)
    chunks = export_all(p.a)
    wire(p.b, m.ImportBlocks(wire(p.a, m.ExportBlocks(1, 1))))
    refused("snapshot-not-ahead", lambda: wire(p.b, m.ImportSnapshot(chunks[0])))


def test_export_sessions_and_cursors(pair: Pair) -> None:
    p = pair
    build(p)
    refused("snapshot-expired", lambda: wire(p.a, m.ExportSnapshot(b"\x07" * 32, b"", 0)))
    refused("bad-cursor", lambda: wire(p.a, m.ExportSnapshot(None, b"x", 0)))
    refused("bad-cursor", lambda: wire(p.a, m.ExportSnapshot(None, b"k" + b"\x00" * 32, 0)))
    first = wire(p.a, m.ExportSnapshot(None, b"", 0))
    again = wire(p.a, m.ExportSnapshot(None, b"", 0))  # shared, same pinned head
    assert first["hash"] == again["hash"] and first["total"] > 0
    p.a._exporter.expire(time.monotonic() + snap.SESSION_IDLE_SECONDS + 1)
    refused("snapshot-expired", lambda: wire(p.a, m.ExportSnapshot(first["hash"], b"", 0)))


# --------------------------------------------------------------------------- chunk checks


KEY = b"\x05" * 32
GENESIS = b"\x09" * 32


def _chunk(**over: Any) -> dict[str, Any]:
    row = [b"\x10" * 32, b"\x01" + b"\x00" * 40]
    base = {"height": 9, "hash": b"\x08" * 32, "sealed": True, "from": b"", "next": b"k" + row[0],
            "kv": [row], "blocks": [], "totals": None}  # fmt: skip
    base.update(over)
    return base


def _open_chunk(chunk: dict[str, Any]) -> snap.Chunk:
    return snap.open_chunk(KEY, 7, GENESIS, snap.seal_chunk(KEY, 7, GENESIS, chunk))


def test_chunk_checks() -> None:
    assert _open_chunk(_chunk()).kv == [(b"\x10" * 32, b"\x01" + b"\x00" * 40)]
    blob = snap.seal_chunk(KEY, 7, GENESIS, _chunk())
    with pytest.raises(SnapshotRefused) as info:
        snap.open_chunk(KEY, 8, GENESIS, blob)  # another chain
    assert info.value.reason_code == "bad-snapshot-chunk"
    with pytest.raises(SnapshotRefused):
        snap.open_chunk(KEY, 7, b"\x0a" * 32, blob)  # another genesis
    cases = {
        "bad-snapshot-row": [
            _chunk(kv=[[b"\x10" * 31, b"\x01" + b"\x00" * 40]], next=b"k" + b"\x10" * 31),
            _chunk(kv=[[b"\x10" * 32, b"\x02" + b"\x00" * 40]]),  # not the sealer's format
            _chunk(kv=[[b"\x10" * 32, b"\x01" + b"\x00" * 10]]),  # shorter than a sealed value
            _chunk(
                kv=[[b"\x11" * 32, b"\x01" + b"\x00" * 40], [b"\x10" * 32, b"\x01" + b"\x00" * 40]]
            ),  # not in key order
            _chunk(kv=[[b"\x10" * 32, "text"]]),
        ],
        "bad-snapshot-chunk": [
            _chunk(next=b"k" + b"\x11" * 32),  # next is not the last row
            _chunk(**{"from": b"k" + b"\x10" * 32}),  # rows do not follow the cursor
            _chunk(next=None),  # the last chunk without totals
            _chunk(totals=[1, 2]),  # totals before the end
            _chunk(kv=[], blocks=[[1, b"\x00" * 32, b"h", None, 0, b"", []]], next=b"b" + bytes(8)),
            _chunk(height=0),
            _chunk(hash=b"\x08" * 31),
            {**_chunk(), "extra": 1},
        ],
        "bad-cursor": [_chunk(next=b"z")],
    }
    for reason, chunks in cases.items():
        for chunk in chunks:
            with pytest.raises(SnapshotRefused) as info:
                _open_chunk(chunk)
            assert info.value.reason_code == reason, (chunk, info.value.message)
    # block rows: numbers in order after the cursor, 65-byte seals
    block = [3, b"\x00" * 32, b"h", None, 0, b"\x01" * 20, [b"\x02" * 65]]
    ok = _open_chunk(_chunk(**{"from": b"b" + (2).to_bytes(8, "big")}, kv=[], blocks=[block],
                            next=b"b" + (3).to_bytes(8, "big")))  # fmt: skip
    assert ok.blocks[0].number == 3 and ok.size > 0
    with pytest.raises(SnapshotRefused):
        _open_chunk(_chunk(**{"from": b"b" + (3).to_bytes(8, "big")}, kv=[], blocks=[block],
                           next=b"b" + (3).to_bytes(8, "big")))  # fmt: skip
    with pytest.raises(SnapshotRefused):
        _open_chunk(_chunk(kv=[], blocks=[[*block[:6], [b"\x02" * 64]]], next=b"b" + bytes(8)))
    # another key (another consortium's secret) does not open it
    raw = snap.seal_chunk(KEY, 7, GENESIS, _chunk())
    with pytest.raises(SnapshotRefused):
        snap.open_chunk(b"\x06" * 32, 7, GENESIS, raw)


# --------------------------------------------------------------------------- host side


def test_snapshot_frames_are_checked_strictly() -> None:
    from gateway.p2p import wire

    ask = wire.frame("getSnapshot", head=None, cursor=b"", limit=2 * 1024 * 1024)
    assert wire.decode(wire.encode(ask)) == ask
    answer = wire.frame("snapshot", height=9, hash=b"\x01" * 32, next=None, total=10, chunk=b"x")
    assert wire.decode(wire.encode(answer)) == answer
    bad = [
        ({**ask, "head": b"\x01" * 31}, "bad-field"),
        ({**ask, "limit": wire.MAX_SNAPSHOT_LIMIT + 1}, "bad-field"),
        ({**ask, "cursor": b"k" * (wire.MAX_CURSOR + 1)}, "bad-field"),
        ({**answer, "extra": 1}, "extra-field"),
        ({k: v for k, v in answer.items() if k != "chunk"}, "missing-field"),
        ({**answer, "next": "text"}, "bad-field"),
    ]
    import msgpack as mp

    for frame, reason in bad:
        with pytest.raises(wire.WireError) as info:
            wire.decode(mp.packb(frame, use_bin_type=True))
        assert info.value.reason == reason
    # observers neither ask for nor get snapshots
    assert "getSnapshot" not in wire.PUBLIC_FRAMES and "snapshot" not in wire.PUBLIC_FRAMES


def test_snapshot_progress_lines_and_bar(terminal_progress: TerminalProgress) -> None:
    progress, terminal = terminal_progress.start(), terminal_progress.terminal
    for done in (12_300_000, 40_000_000, 80_000_000, 80_000_000):
        progress.snapshot(done, 80_000_000, 4096)
    assert "snapshot of block 4096 [" in terminal.getvalue()
    assert terminal.getvalue().endswith("80.0/80.0 MB\n")
    lines = terminal_progress.lines()
    assert lines[0] == "snapshot: 12.3/80.0 MB, 15% (block 4096)"
    assert lines[-1] == "snapshot: 80.0/80.0 MB, 100% (block 4096)"
    assert len(lines) == 2  # a line every 2 s, the last one once
