"""Governance messages, version 1: EIP-712 typed data a member signs with the wallet it has.

Three messages, each signed with ``eth_signTypedData_v4`` (MetaMask, a hardware wallet,
eth-account) over::

    domain    {name: "Coco Gateway Governance", version: "1", chainId, salt: genesis hash}
    Proposal  {proposer: address, created: uint64, actions: Action[]}
    Action    {kind: string, args: string}        args: the canonical JSON of an object
    Ballot    {proposal: bytes32, approve: bool, revision: uint64}
    Withdraw  {proposal: bytes32}

The domain's ``salt`` is the consortium's genesis block hash, so a signature binds both the
chain id and the consortium (two chains sharing a chain id have different genesis blocks).
A proposal's id is its EIP-712 struct hash (``hashStruct(Proposal)``), which does not depend
on the domain; a ballot names the id, so a ballot for one proposal is no ballot for another.
``args`` is a string so that a wallet shows the arguments as the member will read them.

A signed record is what travels and what the ledger keeps: canonical JSON (sorted keys, no
whitespace, ASCII) of::

    {"version": 1, "type": "proposal" | "ballot" | "withdraw",
     "chainId": <int>, "genesis": "0x<32 bytes>", "signer": "0x<20 bytes>",
     "message": <the typed data's message, as the wallet signed it>,
     "signature": "0x<65 bytes r ‖ s ‖ v>"}

``chainId`` and ``genesis`` repeat the domain the signer used, so a record made for another
chain is refused by name (``wrong-chain``/``wrong-consortium``) rather than as a signature
that recovers a stranger; ``signer`` is the claimed signer, checked against the recovery.
``decode_record`` refuses anything that is not exactly that canonical form, so a record has
one byte form and one hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from gateway.governance.errors import GovernanceError

DOMAIN_NAME = "Coco Gateway Governance"
DOMAIN_VERSION = "1"
RECORD_VERSION = 1
RECORD_TYPES = ("proposal", "ballot", "withdraw")
MAX_RECORD_BYTES = 64 * 1024
MAX_ACTIONS = 16
MAX_ARGS_BYTES = 8 * 1024
MAX_KIND_CHARS = 64
UINT64_MAX = 2**64 - 1

DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "salt", "type": "bytes32"},
]
ACTION_TYPE = [{"name": "kind", "type": "string"}, {"name": "args", "type": "string"}]
PROPOSAL_TYPE = [
    {"name": "proposer", "type": "address"},
    {"name": "created", "type": "uint64"},
    {"name": "actions", "type": "Action[]"},
]
BALLOT_TYPE = [
    {"name": "proposal", "type": "bytes32"},
    {"name": "approve", "type": "bool"},
    {"name": "revision", "type": "uint64"},
]
WITHDRAW_TYPE = [{"name": "proposal", "type": "bytes32"}]


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only (non-ASCII as \\u escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _check_plain(value: Any, where: str) -> None:
    """JSON without floats (their text is not canonical across languages) and string keys."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > UINT64_MAX:
            raise GovernanceError("bad-action", f"{where}: integer out of range")
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise GovernanceError("bad-action", f"{where}: object keys must be strings")
            _check_plain(item, where)
        return
    raise GovernanceError("bad-action", f"{where}: {type(value).__name__} is not allowed")


@dataclass(frozen=True)
class Domain:
    """What a signature is bound to: the chain id and the consortium's genesis block hash."""

    chain_id: int
    genesis_hash: bytes

    def __post_init__(self) -> None:
        if len(self.genesis_hash) != 32:
            raise ValueError("genesis_hash must be 32 bytes")
        if not 0 < self.chain_id < 2**256:
            raise ValueError("chain_id out of range")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "salt": "0x" + self.genesis_hash.hex(),
        }


@dataclass(frozen=True)
class Action:
    """One action of a proposal: its kind and its arguments as canonical JSON (an object)."""

    kind: str
    args: str

    @classmethod
    def make(cls, kind: str, args: dict[str, Any] | None = None) -> Action:
        """An action from a kind and an argument object (made canonical here)."""
        _check_plain(args or {}, f"the args of {kind}")
        action = cls(kind, canonical_json(args or {}))
        action.check()
        return action

    def check(self) -> None:
        """Well formed: a short lowercase kind, and args the canonical JSON of an object."""
        if (
            not isinstance(self.kind, str)
            or not 0 < len(self.kind) <= MAX_KIND_CHARS
            or not all(c.islower() or c == "_" for c in self.kind)
            or not self.kind.isascii()
        ):
            raise GovernanceError("bad-action", f"action kind {self.kind!r} is malformed")
        if not isinstance(self.args, str) or len(self.args) > MAX_ARGS_BYTES:
            raise GovernanceError("bad-action", f"the args of {self.kind} are too long")
        try:
            parsed = json.loads(self.args)
        except ValueError:
            raise GovernanceError("bad-action", f"the args of {self.kind} are not JSON") from None
        if not isinstance(parsed, dict):
            raise GovernanceError("bad-action", f"the args of {self.kind} must be an object")
        _check_plain(parsed, f"the args of {self.kind}")
        if canonical_json(parsed) != self.args:
            raise GovernanceError(
                "bad-action",
                f"the args of {self.kind} are not canonical JSON (sorted keys, no spaces, ASCII)",
            )

    def params(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.args)
        return parsed


@dataclass(frozen=True)
class Proposal:
    proposer: bytes
    created: int  # unix seconds
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Ballot:
    proposal: bytes  # the proposal id
    approve: bool
    revision: int  # a higher revision replaces the member's earlier ballot


@dataclass(frozen=True)
class Withdraw:
    proposal: bytes


Message = Proposal | Ballot | Withdraw


def record_type(message: Message) -> str:
    if isinstance(message, Proposal):
        return "proposal"
    if isinstance(message, Ballot):
        return "ballot"
    return "withdraw"


def message_json(message: Message) -> dict[str, Any]:
    """The typed data's ``message`` as a wallet receives it (JSON values only)."""
    if isinstance(message, Proposal):
        return {
            "proposer": "0x" + message.proposer.hex(),
            "created": message.created,
            "actions": [{"kind": a.kind, "args": a.args} for a in message.actions],
        }
    if isinstance(message, Ballot):
        return {
            "proposal": "0x" + message.proposal.hex(),
            "approve": message.approve,
            "revision": message.revision,
        }
    return {"proposal": "0x" + message.proposal.hex()}


def typed_data(domain: Domain, message: Message) -> dict[str, Any]:
    """The exact JSON a wallet's ``eth_signTypedData_v4`` gets for this message."""
    types: dict[str, Any] = {"EIP712Domain": DOMAIN_TYPE}
    if isinstance(message, Proposal):
        types["Proposal"] = PROPOSAL_TYPE
        types["Action"] = ACTION_TYPE
        primary = "Proposal"
    elif isinstance(message, Ballot):
        types["Ballot"] = BALLOT_TYPE
        primary = "Ballot"
    else:
        types["Withdraw"] = WITHDRAW_TYPE
        primary = "Withdraw"
    return {
        "types": types,
        "primaryType": primary,
        "domain": domain.to_json(),
        "message": message_json(message),
    }


def struct_hash(message: Message) -> bytes:
    """hashStruct(message) as EIP-712 defines it (independent of the domain)."""
    # any valid domain will do: the struct hash is the signable message's body
    anywhere = Domain(1, bytes(32))
    return bytes(encode_typed_data(full_message=typed_data(anywhere, message)).body)


def proposal_id(proposal: Proposal) -> bytes:
    """A proposal's id: its EIP-712 struct hash."""
    return struct_hash(proposal)


def domain_separator(domain: Domain) -> bytes:
    return bytes(encode_typed_data(full_message=typed_data(domain, Withdraw(bytes(32)))).header)


def digest(domain: Domain, message: Message) -> bytes:
    """What is signed: keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(message))."""
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@dataclass(frozen=True)
class SignedRecord:
    """A message with its domain, its claimed signer and the signature."""

    domain: Domain
    signer: bytes
    message: Message
    signature: bytes

    @property
    def type(self) -> str:
        return record_type(self.message)


def sign(private_key: bytes, domain: Domain, message: Message) -> SignedRecord:
    """Sign as a wallet does (eth_signTypedData_v4) and wrap the result as a record."""
    signable = encode_typed_data(full_message=typed_data(domain, message))
    signed = Account.sign_message(signable, private_key)
    signer = bytes.fromhex(Account.from_key(private_key).address[2:])
    return SignedRecord(domain, signer, message, bytes(signed.signature))


def recover_signer(domain: Domain, message: Message, signature: bytes) -> bytes:
    """The address whose key made ``signature`` over the message in ``domain``."""
    if len(signature) != 65:
        raise GovernanceError("bad-signature", "a signature is 65 bytes (r ‖ s ‖ v)")
    signable = encode_typed_data(full_message=typed_data(domain, message))
    try:
        address = Account.recover_message(signable, signature=signature)
    except Exception:
        raise GovernanceError("bad-signature", "the signature does not recover") from None
    return bytes.fromhex(address[2:])


def check_message(message: Message) -> None:
    """``bad-record`` (or the action's reason) unless the message is well formed: what
    ``decode_record`` guarantees, for a message built in code."""
    try:
        again = parse_message(record_type(message), message_json(message))
    except GovernanceError:
        raise
    except (AttributeError, TypeError, ValueError):
        raise _bad("a field has the wrong type") from None
    if again != message:
        raise _bad("a field has the wrong type or range")


def verify(record: SignedRecord, domain: Domain) -> bytes:
    """Check a record against this consortium's domain; return its signer.

    Refuses, in this order: ``wrong-chain``, ``wrong-consortium``, ``bad-signature`` (does
    not recover the claimed signer), ``not-proposer`` (a proposal signed by someone else)."""
    if record.domain.chain_id != domain.chain_id:
        raise GovernanceError(
            "wrong-chain",
            f"the record was signed for chain {record.domain.chain_id}, this is chain "
            f"{domain.chain_id}",
        )
    if record.domain.genesis_hash != domain.genesis_hash:
        raise GovernanceError(
            "wrong-consortium",
            "the record was signed for another consortium (genesis "
            f"0x{record.domain.genesis_hash.hex()})",
        )
    check_message(record.message)
    if not isinstance(record.signer, bytes) or len(record.signer) != 20:
        raise _bad("the signer is a 20-byte address")
    signer = recover_signer(domain, record.message, record.signature)
    if signer != record.signer:
        raise GovernanceError(
            "bad-signature",
            f"the signature recovers 0x{signer.hex()}, not the record's signer "
            f"0x{record.signer.hex()}",
        )
    if isinstance(record.message, Proposal) and record.message.proposer != signer:
        raise GovernanceError("not-proposer", "a proposal must be signed by its proposer")
    return signer


def from_typed_data(full_message: Any, signature: bytes, signer: bytes) -> SignedRecord:
    """A record from what a wallet signed (the typed data JSON given to
    ``eth_signTypedData_v4``) and its signature; refuses typed data that is not exactly one
    of this version's messages (other types, domain name or version, extra fields)."""
    if not isinstance(full_message, dict):
        raise _bad("typed data must be an object")
    f = _fields(full_message, ("types", "primaryType", "domain", "message"), "typed data")
    kinds = {"Proposal": "proposal", "Ballot": "ballot", "Withdraw": "withdraw"}
    kind = kinds.get(f["primaryType"]) if isinstance(f["primaryType"], str) else None
    if kind is None:
        raise _bad(f"primaryType {f['primaryType']!r} is not a governance message")
    dom = _fields(f["domain"], ("name", "version", "chainId", "salt"), "the domain")
    if dom["name"] != DOMAIN_NAME or dom["version"] != DOMAIN_VERSION:
        raise _bad(f"domain {dom['name']!r} version {dom['version']!r} is not {DOMAIN_NAME!r} 1")
    chain_id = _uint(dom["chainId"], "chainId", 2**256 - 1)
    if chain_id == 0:
        raise _bad("chainId must be positive")
    record = SignedRecord(
        Domain(chain_id, _hex(dom["salt"], 32, "salt")),
        signer,
        parse_message(kind, f["message"]),
        signature,
    )
    if typed_data(record.domain, record.message) != full_message:
        raise _bad("the typed data's types or values differ from this version's")
    return record


# ----------------------------------------------------------------------------- encoding


def record_bytes(
    kind: str, domain: Domain, signer: bytes, message: dict[str, Any], signature: bytes
) -> bytes:
    """The canonical bytes of a signed record of type ``kind`` (governance records and
    recovery-share records share this form)."""
    return canonical_json(
        {
            "version": RECORD_VERSION,
            "type": kind,
            "chainId": domain.chain_id,
            "genesis": "0x" + domain.genesis_hash.hex(),
            "signer": "0x" + signer.hex(),
            "message": message,
            "signature": "0x" + signature.hex(),
        }
    ).encode()


def encode_record(record: SignedRecord) -> bytes:
    """The record's canonical bytes (what the ledger keeps and what hashes it)."""
    return record_bytes(
        record.type, record.domain, record.signer, message_json(record.message), record.signature
    )


def record_hash(record: SignedRecord) -> bytes:
    return keccak(encode_record(record))


def _bad(what: str) -> GovernanceError:
    return GovernanceError("bad-record", f"malformed governance record: {what}")


def _fields(obj: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(f"{what} must be an object")
    if set(obj) != set(names):
        missing = sorted(set(names) - set(obj))
        extra = sorted(set(obj) - set(names))
        raise _bad(f"{what} has missing fields {missing} or unknown fields {extra}")
    return obj


def _hex(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * size:
        raise _bad(f"{what} must be 0x and {size} bytes of lowercase hex")
    body = value[2:]
    if body != body.lower():
        raise _bad(f"{what} must be lowercase hex")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise _bad(f"{what} is not hex") from None


def _uint(value: Any, what: str, limit: int = UINT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _bad(f"{what} must be an integer in [0, {limit}]")
    return value


def parse_message(kind: str, obj: Any) -> Message:
    """A typed data ``message`` (as in ``message_json``) back to its dataclass, strictly."""
    if kind == "proposal":
        f = _fields(obj, ("proposer", "created", "actions"), "a proposal")
        actions_raw = f["actions"]
        if not isinstance(actions_raw, list):
            raise _bad("a proposal's actions must be a list")
        if not 0 < len(actions_raw) <= MAX_ACTIONS:
            raise GovernanceError("too-many-actions", f"a proposal has 1 to {MAX_ACTIONS} actions")
        actions = []
        for item in actions_raw:
            a = _fields(item, ("kind", "args"), "an action")
            if not isinstance(a["kind"], str) or not isinstance(a["args"], str):
                raise _bad("an action's kind and args are strings")
            action = Action(a["kind"], a["args"])
            action.check()
            actions.append(action)
        return Proposal(
            _hex(f["proposer"], 20, "proposer"),
            _uint(f["created"], "created"),
            tuple(actions),
        )
    if kind == "ballot":
        f = _fields(obj, ("proposal", "approve", "revision"), "a ballot")
        if not isinstance(f["approve"], bool):
            raise _bad("a ballot's approve is true or false")
        return Ballot(
            _hex(f["proposal"], 32, "proposal"), f["approve"], _uint(f["revision"], "revision")
        )
    if kind == "withdraw":
        f = _fields(obj, ("proposal",), "a withdrawal")
        return Withdraw(_hex(f["proposal"], 32, "proposal"))
    raise _bad(f"type {kind!r} is not one of {', '.join(RECORD_TYPES)}")


def decode_record(data: bytes) -> SignedRecord:
    """Bytes from the ledger or a caller back to a record; refuses anything not canonical."""
    if len(data) > MAX_RECORD_BYTES:
        raise _bad(f"longer than {MAX_RECORD_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _bad("not JSON") from None
    if not isinstance(obj, dict):
        raise _bad("not an object")
    if obj.get("version") != RECORD_VERSION:
        raise GovernanceError(
            "record-version",
            f"governance record version {obj.get('version')!r}; this node reads {RECORD_VERSION}",
        )
    f = _fields(
        obj,
        ("version", "type", "chainId", "genesis", "signer", "message", "signature"),
        "a record",
    )
    chain_id = _uint(f["chainId"], "chainId", 2**256 - 1)
    if chain_id == 0:
        raise _bad("chainId must be positive")
    record = SignedRecord(
        Domain(chain_id, _hex(f["genesis"], 32, "genesis")),
        _hex(f["signer"], 20, "signer"),
        parse_message(f["type"], f["message"]),
        _hex(f["signature"], 65, "signature"),
    )
    if encode_record(record) != data:
        raise _bad("not in canonical form (sorted keys, no whitespace, lowercase hex)")
    return record
