"""Attestation report, version 1: binds a node's public keys to the code it runs.

The report is canonical JSON (sorted keys, no spaces) of the fields below, signed by the
node identity key (secp256k1, recoverable, over keccak256(DOMAIN || report bytes)). On the
"virtual" platform nothing but the node key vouches for the report: it proves which key
published which transaction keys and which measurement the node claims, not that the code
really runs inside a trusted execution environment. Hardware platforms add their quote in
``evidence``; a verifier must refuse ``virtual`` reports unless its policy allows them.

Version 2 is the same report with one more field, ``joinKey``: the X25519 public key a
joining enclave made for the join handshake (docs/PROTOCOL.md, "Join handshake"), so that the
consortium secret can be encrypted to that enclave alone. A report without a join key is
always version 1, so verifiers of ordinary reports see no change.

Pure: no clock, no files, no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_keys import keys
from eth_utils import keccak

VERSION = 1
JOIN_VERSION = 2  # a report that carries a join key
DOMAIN = b"coco-gateway/attestation/v1"
VIRTUAL = "virtual"
VIRTUAL_WARNING = (
    "software (virtual) enclave: the report is signed by the node's own key with no "
    "hardware root of trust; it does not prove that this code runs in a protected enclave, "
    "and the machine's operator can read everything the node holds"
)


class AttestationError(Exception):
    """The report is malformed, badly signed, or not what the verifier expects."""


@dataclass(frozen=True)
class TxKey:
    epoch: int
    public_key: bytes  # X25519, 32 bytes


@dataclass(frozen=True)
class Report:
    chain_id: int
    platform: str
    measurement: bytes  # sha256
    node_address: bytes  # 20 bytes: the node identity key's Ethereum address
    tx_keys: tuple[TxKey, ...]
    epoch_period: int
    grace: int
    issued_at: int
    code: str  # human description of what the measurement covers
    evidence: str = ""  # hardware quote (base64) on hardware platforms; empty when virtual
    join_key: bytes | None = None  # X25519, 32 bytes: only in a join report (version 2)

    def to_json(self) -> dict[str, Any]:
        out = {
            "version": VERSION if self.join_key is None else JOIN_VERSION,
            "chainId": self.chain_id,
            "platform": self.platform,
            "measurement": "0x" + self.measurement.hex(),
            "nodeAddress": "0x" + self.node_address.hex(),
            "txKeys": [
                {"epoch": k.epoch, "publicKey": "0x" + k.public_key.hex()} for k in self.tx_keys
            ],
            "epochPeriod": self.epoch_period,
            "grace": self.grace,
            "issuedAt": self.issued_at,
            "code": self.code,
            "evidence": self.evidence,
            "warning": VIRTUAL_WARNING if self.platform == VIRTUAL else "",
        }
        if self.join_key is not None:
            out["joinKey"] = "0x" + self.join_key.hex()
        return out

    def canonical(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Any) -> Report:
        try:
            version = data["version"]
            if version not in (VERSION, JOIN_VERSION):
                raise AttestationError(f"unsupported attestation version {version}")
            if (version == JOIN_VERSION) != ("joinKey" in data):
                raise AttestationError(
                    f"an attestation of version {version} must "
                    + ("" if version == JOIN_VERSION else "not ")
                    + "carry a joinKey"
                )
            return cls(
                chain_id=int(data["chainId"]),
                platform=str(data["platform"]),
                measurement=_hex(data["measurement"], 32),
                node_address=_hex(data["nodeAddress"], 20),
                tx_keys=tuple(
                    TxKey(int(k["epoch"]), _hex(k["publicKey"], 32)) for k in data["txKeys"]
                ),
                epoch_period=int(data["epochPeriod"]),
                grace=int(data["grace"]),
                issued_at=int(data["issuedAt"]),
                code=str(data["code"]),
                evidence=str(data.get("evidence", "")),
                join_key=_hex(data["joinKey"], 32) if "joinKey" in data else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AttestationError(f"malformed attestation report: {exc}") from None


def _hex(value: Any, size: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected 0x-hex, got {value!r}")
    raw = bytes.fromhex(value[2:])
    if len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


def digest(report: Report) -> bytes:
    return keccak(DOMAIN + report.canonical())


def sign(report: Report, node_private_key: bytes) -> bytes:
    signature = keys.PrivateKey(node_private_key).sign_msg_hash(digest(report))
    return signature.to_bytes()


def verify(
    report: Report,
    signature: bytes,
    *,
    expected_measurement: bytes | None = None,
    expected_chain_id: int | None = None,
    allow_virtual: bool = False,
) -> None:
    """Raise AttestationError unless ``signature`` is the report's node key's and the
    report matches what the verifier expects."""
    try:
        public = keys.Signature(signature).recover_public_key_from_msg_hash(digest(report))
    except Exception:
        raise AttestationError("the attestation signature does not recover a key") from None
    if public.to_canonical_address() != report.node_address:
        raise AttestationError("the attestation is not signed by the node key it names")
    if expected_chain_id is not None and report.chain_id != expected_chain_id:
        raise AttestationError(
            f"the report is for chain {report.chain_id}, not {expected_chain_id}"
        )
    if expected_measurement is not None and report.measurement != expected_measurement:
        raise AttestationError(
            f"measurement 0x{report.measurement.hex()} is not the expected "
            f"0x{expected_measurement.hex()}: the node runs other code"
        )
    if report.platform == VIRTUAL and not allow_virtual:
        raise AttestationError(
            "the node runs a virtual (software) enclave; accept it only for development "
            "(allow_virtual / --allow-virtual)"
        )
