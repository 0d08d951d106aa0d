"""The worked examples in docs/PROTOCOL.md match the code byte for byte."""

from __future__ import annotations

import re

from conftest import REPO
from eth_account import Account

from gateway.consensus.seal import recover_sealer, seal_digest, sign_seal
from gateway.enclave import codec
from gateway.enclave import messages as m

DOC = (REPO / "docs" / "PROTOCOL.md").read_text()
KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
BLOCK_HASH = bytes(range(32))


def _hex_after(label: str, lines: int = 1) -> str:
    match = re.search(rf"^{label}\s+([0-9a-f]+)((?:\n\s+[0-9a-f]+){{0,{lines - 1}}})", DOC, re.M)
    assert match, f"{label} not found in PROTOCOL.md"
    return (match.group(1) + match.group(2)).replace("\n", "").replace(" ", "")


def test_seal_worked_example() -> None:
    digest = seal_digest(31337, BLOCK_HASH)
    assert _hex_after("digest") == digest.hex()
    seal = sign_seal(KEY, 31337, BLOCK_HASH)
    assert _hex_after("seal", 3) == seal.hex()
    preimage = b"coco-gateway/seal/v1" + (31337).to_bytes(32, "big") + BLOCK_HASH
    assert _hex_after("preimage", 3) == preimage.hex()
    sealer = recover_sealer(31337, BLOCK_HASH, seal)
    assert sealer == bytes.fromhex(Account.from_key(KEY).address[2:])


def test_enclave_frame_worked_example() -> None:
    address = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
    frame = codec.frame(codec.encode_request(7, m.GetAccount("balance", address, "latest")))
    block = DOC[DOC.index("as request 7:") : DOC.index("and its response")]
    # each line: hex bytes, then (after 3+ spaces or a quote) an annotation
    documented = "".join(
        token
        for line in block.splitlines()
        for token in re.split(r"\s{3,}|\"", line.strip())[0].split()
        if re.fullmatch(r"[0-9a-f]+", token)
    )
    assert documented == frame.hex()
    reply = codec.frame(codec.encode_response(7, True, str(10_000 * 10**18)))
    assert "0000001b 93 07 c3 b7 " + reply[8:].hex() in DOC
    assert reply.hex().startswith("0000001b9307c3b7")
    request_id, decoded = codec.decode_request(frame[4:])
    assert request_id == 7 and decoded == m.GetAccount("balance", address, "latest")


def test_attestation_worked_example() -> None:
    from gateway.protocol import attestation

    report = attestation.Report(
        chain_id=31337,
        platform=attestation.VIRTUAL,
        measurement=bytes(range(32)),
        node_address=bytes.fromhex(Account.from_key(KEY).address[2:]),
        tx_keys=(attestation.TxKey(20778, b"\x11" * 32),),
        epoch_period=86400,
        grace=1,
        issued_at=1795283149,
        code="example",
    )
    canonical = re.search(r"^canonical (.+)$", DOC, re.M)
    assert canonical and canonical.group(1).encode() == report.canonical()
    assert _hex_after("report-digest") == attestation.digest(report).hex()
    signature = attestation.sign(report, KEY)
    assert _hex_after("report-signature") == signature.hex()
    attestation.verify(report, signature, allow_virtual=True, expected_chain_id=31337)


def test_session_token_worked_example() -> None:
    from gateway.enclave.sessions import Session, SessionBook

    book = SessionBook(bytes(range(32)), 31337)
    session = Session(
        bytes.fromhex(Account.from_key(KEY).address[2:]), 1795369549, bytes(range(16))
    )
    token = book._mint(session)
    documented = re.search(r"^session-token\s+(\S+)$", DOC, re.M)
    assert documented and documented.group(1) == token
    assert book.verify(token, now=1795369549 - 1) == session


def test_session_revocation_worked_example() -> None:
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from gateway.enclave.sessions import SessionBook

    key = genesis = bytes(range(32))
    book = SessionBook(key, 31337, chain_tag=genesis)
    id_key = hmac.new(key, b"coco-gateway/session-revocation-id/v1", hashlib.sha256).digest()
    assert _hex_after("revocation-id-key") == id_key.hex()
    revocation_id = book.revocation_id(bytes(range(16)))
    assert revocation_id == hmac.new(id_key, bytes(range(16)), hashlib.sha256).digest()[:16]
    assert _hex_after("revocation-id") == revocation_id.hex()
    seal_key = hmac.new(key, b"coco-gateway/session-revocation-seal/v1", hashlib.sha256).digest()
    assert _hex_after("revocation-seal-key") == seal_key.hex()
    blob = bytes.fromhex(_hex_after("revocation-blob", 2))
    assert book.open_revocation(blob) == [(revocation_id, 1795369549)]
    nonce = bytes(range(0x50, 0x5C))
    ad = b"coco-gateway/session-revocation/v1" + (31337).to_bytes(32, "big") + genesis
    entry = revocation_id + (1795369549).to_bytes(8, "big")
    assert blob == b"\x01" + nonce + AESGCM(seal_key).encrypt(nonce, entry, ad)
    # another chain with the same id (another genesis) does not open it
    assert SessionBook(key, 31337, chain_tag=bytes(32)).open_revocation(blob) is None


NODE = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")  # the node a query is for


def test_signed_query_worked_example() -> None:
    """Version 3: recomputed by hand from the typed data the document gives (EIP-712 as
    written there), and by eth-account through gateway.protocol.query; both byte for byte."""
    from eth_account.messages import encode_typed_data
    from eth_utils import keccak

    from gateway.protocol import query

    sender = bytes.fromhex(Account.from_key(KEY).address[2:])
    fields = {
        "chain_id": 31337,
        "genesis_hash": bytes(range(32)),
        "sender": sender,
        "to": bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"),
        "value": 0,
        "data": bytes.fromhex("70a08231"),
        "leash": {"nonce": 1, "blockNumber": 100, "blockRange": 16, "expiry": 1795283149},
        "node": NODE,
    }
    section = DOC[DOC.index("## Signed query, version 3") :]
    section = section[: section.index("\n## ")]
    assert '{name: "Coco Gateway", version: "3", chainId: <chain id>, salt: <genesis' in section

    def word(value: int | bytes) -> bytes:
        raw = value.to_bytes(32, "big") if isinstance(value, int) else value
        return raw.rjust(32, b"\x00")

    domain_type = re.search(r'query-domain-type\s+keccak256\("([^"]+)"\)', section)
    assert domain_type
    domain = keccak(
        keccak(text=domain_type.group(1))
        + keccak(text="Coco Gateway")
        + keccak(text="3")
        + word(31337)
        + bytes(range(32))
    )
    assert _hex_after("query-domain") == domain.hex()
    leash_type = (
        "Leash(uint64 nonce,uint64 blockNumber,uint64 blockRange,uint64 expiry,address node)"
    )
    query_type = "Query(address from,address to,uint256 value,bytes data,Leash leash)" + leash_type
    assert _hex_after("query-leash-typehash") == keccak(text=leash_type).hex()
    assert _hex_after("query-typehash") == keccak(text=query_type).hex()
    leash_hash = keccak(
        keccak(text=leash_type)
        + b"".join(word(v) for v in fields["leash"].values())  # type: ignore[attr-defined]
        + word(NODE)
    )
    assert _hex_after("query-leash-hash") == leash_hash.hex()
    struct = keccak(
        keccak(text=query_type)
        + word(sender)
        + word(fields["to"])  # type: ignore[arg-type]
        + word(0)
        + keccak(fields["data"])  # type: ignore[arg-type]
        + leash_hash
    )
    assert _hex_after("query-struct") == struct.hex()
    digest = keccak(b"\x19\x01" + domain + struct)
    assert _hex_after("query-digest") == digest.hex()

    message = encode_typed_data(full_message=query.typed_data(**fields))  # type: ignore[arg-type]
    assert keccak(b"\x19" + message.version + message.header + message.body) == digest
    signature = query.sign(KEY, **fields)
    assert _hex_after("query-signature", 2) == signature.hex()
    checked = dict(fields, block_number=100, head_number=110, now=1795283148)
    checked["this_node"] = checked.pop("node")
    checked["node"] = NODE
    assert query.check(signature, **checked) == sender  # type: ignore[arg-type]
    # another node of the same consortium refuses it, naming both
    try:
        query.check(signature, **dict(checked, this_node=bytes(20)))  # type: ignore[arg-type]
    except query.QueryError as refused:
        assert refused.reason == "wrong-node"
    else:
        raise AssertionError("a query for another node verified")
    # another chain with the same id (another genesis) does not verify
    other = dict(checked, genesis_hash=bytes(32))
    try:
        query.check(signature, **other)  # type: ignore[arg-type]
    except query.QueryError as refused:
        assert refused.reason == "wrong-signer"
    else:
        raise AssertionError("a query for another genesis verified")
    documented = set(re.findall(r"\| `([a-z-]+)` \|$", section, re.M))
    assert documented - {"reason"} == set(query.REASONS)  # the header row names the column


def test_join_handshake_worked_example() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from gateway.enclave import consortium

    join = X25519PrivateKey.from_private_bytes(b"\x22" * 32)
    ephemeral = X25519PrivateKey.from_private_bytes(b"\x33" * 32)
    node = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
    ad = consortium.join_associated_data(1337, bytes(range(32)), node)
    assert _hex_after("join-public") == join.public_key().public_bytes_raw().hex()
    assert _hex_after("join-ad", 3) == ad.hex()
    wrapped = consortium.wrap_secret(
        b"\x44" * 32,
        join.public_key().public_bytes_raw(),
        ad,
        ephemeral=ephemeral,
        nonce=b"\x55" * 12,
    )
    assert _hex_after("wrapped", 3) == wrapped.hex()
    assert consortium.unwrap_secret(wrapped, join, ad) == b"\x44" * 32


def test_link_signature_worked_example() -> None:
    from eth_utils import keccak

    from gateway.enclave import consortium

    node = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
    certificate = b"\x03" * 32  # the SHA-256 of the TLS server's certificate
    transcript = bytes(range(32)) + b"\x01" * 32 + b"\x02" * 32 + certificate + node + b"client"
    digest = keccak(b"coco-gateway/p2p/link/v2" + transcript)
    assert _hex_after("link-digest") == digest.hex()
    assert _hex_after("link-signature", 2) == consortium.sign_link(KEY, transcript).hex()
