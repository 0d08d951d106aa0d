"""The recovery record: a recovered node's proof that the members opened the consortium
secret for it, carried in a block's governance section so that every node takes the service
back to ``opening`` and issues a new share generation at the same height (docs/GOVERNANCE.md,
"Recovery"; docs/PROTOCOL.md, "Recovery record, version 1").

A node in recovery mode that combined ``k`` members' shares pools this record: the members'
own signed share submissions (``share_record``, each sealed to that node's recovery key, so
the record tells nothing of a share). Applying it (``apply_recovery``) checks everything from
the record's bytes and the state alone: each submission's signature by a member that holds a
share of the state's share generation, each for this generation and this node, no member
twice, at least the recovery threshold of them, and the node trusted. Then the service is
``opening`` (users cannot transact until the members vote ``open_network`` again) and the
share generation moves on (``RefreshRecoveryShares``): the ``k`` members who submitted saw
their shares travel, so every node that holds the secret records a fresh set, the same bytes
everywhere. The record binds the generation it used, so it applies once.

The record is the canonical JSON (sorted keys, no whitespace, ASCII) of

    {"version": 1, "type": "recovered", "node": "0x<20 bytes>", "generation": <uint64>,
     "shares": [<the share records' JSON objects, ordered by member address>]}

and at most ``MAX_RECOVERY_RECORD`` bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from gateway.governance import share_record
from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.governance.typed import canonical_json

RECOVERY_RECORD_VERSION = 1
RECOVERY_TYPE = "recovered"
MAX_RECOVERY_SHARES = 255  # recovery.MAX_HOLDERS
MAX_RECOVERY_RECORD = 200 * 1024  # 255 shares of 126 bytes fit; so does a forwarded blob (256 KiB)


@dataclass(frozen=True)
class RecoveryRecord:
    node: bytes
    generation: int
    shares: tuple[share_record.ShareRecord, ...]  # ordered by member address


def _bad(what: str) -> GovernanceError:
    return GovernanceError("bad-record", f"malformed recovery record: {what}")


def encode_recovery(node: bytes, generation: int, shares: list[bytes]) -> bytes:
    """The canonical bytes of the record for the share submissions ``shares`` (each a share
    record's canonical bytes) that recovered the secret of share generation ``generation``
    on ``node``."""
    records = sorted((share_record.decode(raw) for raw in shares), key=lambda r: r.message.member)
    return _encode(node, generation, records)


def _encode(node: bytes, generation: int, records: list[share_record.ShareRecord]) -> bytes:
    return canonical_json(
        {
            "version": RECOVERY_RECORD_VERSION,
            "type": RECOVERY_TYPE,
            "node": "0x" + node.hex(),
            "generation": generation,
            "shares": [json.loads(share_record.encode(r)) for r in records],
        }
    ).encode()


def recovery_hash(raw: bytes) -> bytes:
    return keccak(raw)


def is_recovery(raw: bytes) -> bool:
    """Whether ``raw`` claims to be a recovery record (decode checks the rest)."""
    if not raw.startswith(b"{") or len(raw) > MAX_RECOVERY_RECORD:
        return False
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(obj, dict) and obj.get("type") == RECOVERY_TYPE


def decode_recovery(raw: bytes) -> RecoveryRecord:
    """The record from its canonical bytes (its form only; ``apply_recovery`` checks the
    signatures against the state); raises GovernanceError ``bad-record`` or
    ``record-version``."""
    if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_RECOVERY_RECORD:
        raise _bad(f"a recovery record is at most {MAX_RECOVERY_RECORD} bytes")
    try:
        obj: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("not JSON") from None
    if not isinstance(obj, dict) or obj.get("type") != RECOVERY_TYPE:
        raise _bad(f'not an object of type "{RECOVERY_TYPE}"')
    if obj.get("version") != RECOVERY_RECORD_VERSION:
        raise GovernanceError(
            "record-version",
            f"recovery record version {obj.get('version')!r} (this node reads "
            f"{RECOVERY_RECORD_VERSION})",
        )
    if set(obj) != {"version", "type", "node", "generation", "shares"}:
        raise _bad("the fields are version, type, node, generation, shares")
    node = obj["node"]
    if not isinstance(node, str) or not node.startswith("0x") or len(node) != 42:
        raise _bad("node is 0x and 20 bytes of hex")
    try:
        address = bytes.fromhex(node[2:])
    except ValueError:
        raise _bad("node is not hex") from None
    generation = obj["generation"]
    if isinstance(generation, bool) or not isinstance(generation, int) or not generation >= 0:
        raise _bad("generation is a non-negative integer")
    shares = obj["shares"]
    if not isinstance(shares, list) or not 1 <= len(shares) <= MAX_RECOVERY_SHARES:
        raise _bad(f"shares is a list of 1 to {MAX_RECOVERY_SHARES} share records")
    try:
        records = [share_record.decode(canonical_json(s).encode()) for s in shares]
    except (TypeError, ValueError):
        raise _bad("a share record is not plain JSON") from None
    members = [r.message.member for r in records]
    if members != sorted(members):
        raise _bad("the shares are ordered by member address")
    if _encode(address, generation, records) != bytes(raw):
        raise _bad("not in canonical form (shares ordered by member)")
    return RecoveryRecord(address, generation, tuple(records))


def check_recovery(state: gs.GovernanceState, record: RecoveryRecord) -> list[bytes]:
    """The members whose shares recovered the secret, after every check against the state:
    ``wrong-generation`` (not the state's share generation: applied already, or old),
    ``node-not-trusted``, a submission's own refusal (``wrong-chain``, ``wrong-consortium``,
    ``bad-signature``, ``share-signer``), ``wrong-node``, ``unknown-holder``, ``duplicate``,
    ``too-few-shares``."""
    if record.generation != state.shares_generation:
        raise GovernanceError(
            "wrong-generation",
            f"the recovery used share generation {record.generation}; the state's is "
            f"{state.shares_generation}",
            generation=state.shares_generation,
        )
    node = state.nodes.get(record.node)
    if node is None or node.state != "trusted":
        raise GovernanceError(
            "node-not-trusted", f"node 0x{record.node.hex()} is not a trusted node"
        )
    holders = {a for a, _ in state.share_holders()}
    members: list[bytes] = []
    for share in record.shares:
        member = share_record.verify(share, state.domain)
        if share.message.generation != record.generation:
            raise GovernanceError(
                "wrong-generation",
                f"the share of 0x{member.hex()} is of generation {share.message.generation}",
            )
        if share.message.node != record.node:
            raise GovernanceError(
                "wrong-node", f"the share of 0x{member.hex()} was sealed to another node"
            )
        if member not in holders:
            raise GovernanceError(
                "unknown-holder", f"0x{member.hex()} holds no share of this generation"
            )
        if member in members:
            raise GovernanceError("duplicate", f"the share of 0x{member.hex()} is there twice")
        members.append(member)
    if len(members) < state.recovery_threshold:
        raise GovernanceError(
            "too-few-shares",
            f"{len(members)} shares, fewer than the recovery threshold {state.recovery_threshold}",
            submitted=len(members),
            threshold=state.recovery_threshold,
        )
    return members


def apply_recovery(
    state: gs.GovernanceState, raw: bytes | RecoveryRecord, height: int
) -> tuple[gs.GovernanceState, list[gs.Event]]:
    """The service back to ``opening`` and a new share generation, at block ``height``."""
    record = raw if isinstance(raw, RecoveryRecord) else decode_recovery(bytes(raw))
    members = check_recovery(state, record)
    return gs.recovered(state, record.node, tuple(members), height)
