"""The join record: a joining node's attested request, carried in a block's governance
section so that every node records the node as ``pending`` at the same height.

A member enclave that is asked to admit a node the governance state does not know, and whose
attestation checks out against the state's measurements, platforms and ``allowVirtual``, does
not admit it: it pools a join record (docs/GOVERNANCE.md, "Joins"; docs/PROTOCOL.md, "Join
record, version 1"), which a block then carries beside the members' signed records. Applying
it (``apply_join``) re-checks everything from the record's bytes alone (the attestation's
signature by the node key it names, the chain id, the state's terms), so every node decides
alike, and calls ``add_pending_node``. The members then vote ``trust_node``.

The record is the canonical JSON (sorted keys, no whitespace, ASCII) of

    {"version": 1, "type": "join", "report": <the join attestation, version 2>,
     "signature": "0x<65 bytes>"}

and at most ``MAX_JOIN_RECORD`` bytes. It needs no member's signature: it only makes a node
``pending`` (counted nowhere) and is self-certifying; trusting the node takes a vote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.governance.typed import canonical_json
from gateway.protocol import attestation

JOIN_RECORD_VERSION = 1
JOIN_TYPE = "join"
MAX_JOIN_RECORD = 16 * 1024


@dataclass(frozen=True)
class JoinRecord:
    report: attestation.Report
    signature: bytes

    @property
    def address(self) -> bytes:
        return self.report.node_address

    @property
    def virtual(self) -> bool:
        return self.report.platform == attestation.VIRTUAL


def _bad(what: str) -> GovernanceError:
    return GovernanceError("bad-record", f"malformed join record: {what}")


def encode_join(report: attestation.Report, signature: bytes) -> bytes:
    """The canonical bytes of the join record for an attested join request."""
    return canonical_json(
        {
            "version": JOIN_RECORD_VERSION,
            "type": JOIN_TYPE,
            "report": report.to_json(),
            "signature": "0x" + signature.hex(),
        }
    ).encode()


def join_hash(raw: bytes) -> bytes:
    return keccak(raw)


def is_join(raw: bytes) -> bool:
    """Whether ``raw`` claims to be a join record (its type field; decode checks the rest)."""
    if not raw.startswith(b"{") or len(raw) > MAX_JOIN_RECORD:
        return False
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(obj, dict) and obj.get("type") == JOIN_TYPE


def decode_join(raw: bytes) -> JoinRecord:
    """The record from its canonical bytes, its attestation signature checked (by the node
    key it names); raises GovernanceError ``bad-record``, ``record-version`` or
    ``bad-attestation``."""
    if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_JOIN_RECORD:
        raise _bad(f"a join record is at most {MAX_JOIN_RECORD} bytes")
    try:
        obj: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("not JSON") from None
    if not isinstance(obj, dict) or obj.get("type") != JOIN_TYPE:
        raise _bad('not an object of type "join"')
    if obj.get("version") != JOIN_RECORD_VERSION:
        raise GovernanceError(
            "record-version",
            f"join record version {obj.get('version')!r} (this node reads {JOIN_RECORD_VERSION})",
        )
    if set(obj) != {"version", "type", "report", "signature"}:
        raise _bad("the fields are version, type, report, signature")
    sig = obj["signature"]
    if not isinstance(sig, str) or not sig.startswith("0x") or len(sig) != 132:
        raise _bad("signature is 0x and 65 bytes of hex")
    try:
        signature = bytes.fromhex(sig[2:])
    except ValueError:
        raise _bad("signature is not hex") from None
    try:
        report = attestation.Report.from_json(obj["report"])
        attestation.verify(report, signature, allow_virtual=True)  # the terms: apply_join
    except attestation.AttestationError as exc:
        raise GovernanceError("bad-attestation", f"join record: {exc}") from None
    if report.join_key is None:
        raise GovernanceError("bad-attestation", "a join record's report carries a join key")
    if encode_join(report, signature) != bytes(raw):
        raise _bad("not in canonical form")
    return JoinRecord(report, signature)


def check_join(state: gs.GovernanceState, record: JoinRecord) -> None:
    """What the state says of this node's attestation: its chain, and whether the state
    allows its measurement, platform and virtualness. Raises GovernanceError."""
    report = record.report
    if report.chain_id != state.chain_id:
        raise GovernanceError(
            "wrong-chain",
            f"node 0x{report.node_address.hex()} attests chain {report.chain_id}, this "
            f"consortium is chain {state.chain_id}",
        )
    node = state.nodes.get(report.node_address)
    if node is not None and node.state == "retired":
        raise GovernanceError("node-retired", f"node 0x{report.node_address.hex()} was retired")
    gs.check_node_terms(state, report.measurement, report.platform, record.virtual)


def apply_join(
    state: gs.GovernanceState, raw: bytes | JoinRecord, height: int
) -> tuple[gs.GovernanceState, list[gs.Event]]:
    """Record the joining node as ``pending`` at block ``height``: ``node-exists`` when the
    state knows it already (pending or trusted), ``node-retired``, or the terms' refusal."""
    record = raw if isinstance(raw, JoinRecord) else decode_join(bytes(raw))
    check_join(state, record)
    report = record.report
    return gs.add_pending_node(
        state,
        report.node_address,
        measurement=report.measurement,
        platform=report.platform,
        virtual=record.virtual,
        height=height,
    )
