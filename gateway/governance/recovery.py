"""Recovery shares: a 32-byte wrapping key split k-of-n, each share sealed to one member.

The enclave wraps the newest ledger secret under a fresh random *wrapping key*
(``wrap_secret``), splits the wrapping key among the active members that hold an X25519
encryption key (``issue``), and records in the ledger, in the clear: the wrapped secret and
the ``ShareSet`` (for each holder its share's index, a commitment to the share, and the share
encrypted to the holder's key). After every node lost its sealed secret, each member decrypts
its own share (``decrypt_share``) and submits it; the recovering enclave checks each share
against its commitment (``check_share``: a wrong share is named and refused) and, at the
threshold, combines them (``recover``) and unwraps the ledger secret.

Splitting: Shamir's scheme over GF(2^128) from pycryptodome (``Crypto.Protocol.
SecretSharing.Shamir``), which shares 16-byte secrets; the 32-byte key is split as two
halves, each with its own random polynomial of degree k-1, at the same indices 1..n, so a
member's share is (index, 16 + 16 bytes).

Why fewer than k shares reveal nothing: each half is the constant term of a polynomial
whose other k-1 coefficients are uniformly random. For any k-1 points and *any* candidate
constant term there is exactly one polynomial of degree k-1 through them, and it is as
likely as any other; so k-1 shares are equally consistent with every possible key and say
nothing about it (information-theoretically, whatever the attacker's computing power). The
commitments do not change that: each is SHA-256 over the share and a 32-byte random blind
that travels only inside the share's encryption, so it hides the share.

Encryption to a member (version 1): a fresh X25519 key pair per share; the shared secret
goes through HKDF-SHA256 (info binds both public keys) to an AES-256-GCM key; the associated
data binds the chain id, the genesis hash, the share generation, the member's address and
the share index, so a share cannot be passed off for another consortium, generation or
member. Blob: ``01 ‖ ephemeral public key (32) ‖ nonce (12) ‖ ciphertext+tag (65+16)``;
plaintext: ``index (1) ‖ share (32) ‖ blind (32)``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from Crypto.Protocol.SecretSharing import Shamir, _Element
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.governance.errors import GovernanceError

SHARE_VERSION = 1
KEY_BYTES = 32
MAX_HOLDERS = 255  # one byte of index
DOMAIN = b"coco-gateway/recovery-share/v1"
WRAP_DOMAIN = b"coco-gateway/ledger-secret-wrap/v1"
_BLOB = 1 + 32 + 12 + (1 + 32 + 32) + 16
SUBMIT_DOMAIN = b"coco-gateway/recovery-submit/v1"
SEALED_SUBMISSION = _BLOB  # a share sealed to a recovering enclave: the same layout
ISSUE_DOMAIN = b"coco-gateway/recovery-issue/v1"
ENCLAVE_KEY_DOMAIN = b"coco-gateway/recovery-enclave-key/v1"

Random = Callable[[int], bytes]


class DerivedRandom:
    """Bytes from a 32-byte seed, the same on every node that holds the seed: call ``n``
    gives SHAKE-256(seed ‖ n as 8 bytes) of the length asked for. Issuing shares with it
    from a seed derived from the consortium secret makes every node's share set identical
    (docs/GOVERNANCE.md, "Recovery")."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("the seed is 32 bytes")
        self._seed = seed
        self._calls = 0

    def __call__(self, n: int) -> bytes:
        self._calls += 1
        return hashlib.shake_256(self._seed + self._calls.to_bytes(8, "big")).digest(n)


@dataclass(frozen=True)
class ShareContext:
    """What a set of shares belongs to: the consortium and the share generation."""

    chain_id: int
    genesis_hash: bytes
    generation: int

    def encode(self) -> bytes:
        return (
            self.chain_id.to_bytes(32, "big")
            + self.genesis_hash
            + self.generation.to_bytes(8, "big")
        )


@dataclass(frozen=True)
class Share:
    """One member's share in the clear: what it submits during recovery."""

    index: int  # 1..255
    value: bytes  # 32 bytes: the shares of the two halves
    blind: bytes  # 32 random bytes, hiding the commitment

    def encode(self) -> bytes:
        return bytes([self.index]) + self.value + self.blind

    @classmethod
    def decode(cls, data: bytes) -> Share:
        if len(data) != 65 or data[0] == 0:
            raise GovernanceError("bad-share", "a share is 65 bytes: index, value, blind")
        return cls(data[0], data[1:33], data[33:65])


@dataclass(frozen=True)
class IssuedShare:
    """What the ledger records for one holder."""

    member: bytes
    index: int
    commitment: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class ShareSet:
    context: ShareContext
    threshold: int
    shares: tuple[IssuedShare, ...]

    def for_member(self, member: bytes) -> IssuedShare:
        for issued in self.shares:
            if issued.member == member:
                return issued
        raise GovernanceError(
            "unknown-holder", f"0x{member.hex()} holds no share of this generation"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SHARE_VERSION,
            "chainId": self.context.chain_id,
            "genesis": "0x" + self.context.genesis_hash.hex(),
            "generation": self.context.generation,
            "threshold": self.threshold,
            "shares": [
                {
                    "member": "0x" + s.member.hex(),
                    "index": s.index,
                    "commitment": "0x" + s.commitment.hex(),
                    "ciphertext": "0x" + s.ciphertext.hex(),
                }
                for s in self.shares
            ],
        }

    @classmethod
    def from_json(cls, raw: Any) -> ShareSet:
        try:
            if raw["version"] != SHARE_VERSION:
                raise GovernanceError("bad-share", f"share set version {raw['version']!r}")
            context = ShareContext(
                int(raw["chainId"]), bytes.fromhex(raw["genesis"][2:]), int(raw["generation"])
            )
            shares = tuple(
                IssuedShare(
                    bytes.fromhex(s["member"][2:]),
                    int(s["index"]),
                    bytes.fromhex(s["commitment"][2:]),
                    bytes.fromhex(s["ciphertext"][2:]),
                )
                for s in raw["shares"]
            )
            return cls(context, int(raw["threshold"]), shares)
        except (KeyError, TypeError, ValueError, IndexError):
            raise GovernanceError("bad-share", "malformed share set") from None


# ----------------------------------------------------------------------------- splitting


def _split_half(threshold: int, count: int, half: bytes, rng: Random) -> list[bytes]:
    """Shamir over GF(2^128) as pycryptodome's ``Shamir.split`` (``ssss=False``) does it,
    with the coefficients drawn from ``rng``: the shares ``Shamir.combine`` reads."""
    coeffs = [_Element(rng(16)) for _ in range(threshold - 1)]
    coeffs.append(_Element(half))
    out = []
    for user in range(1, count + 1):
        idx = _Element(user)
        share = _Element(0)
        for coeff in coeffs:
            share = idx * share + coeff  # type: ignore[operator]
        out.append(share.encode())
    return out


def split_key(
    key: bytes, threshold: int, count: int, rng: Random = os.urandom
) -> list[tuple[int, bytes]]:
    """``count`` shares (index, 32 bytes) of a 32-byte key, any ``threshold`` of which
    rebuild it; the polynomials' random coefficients come from ``rng``."""
    if len(key) != KEY_BYTES:
        raise ValueError("the wrapping key is 32 bytes")
    if not 1 <= threshold <= count <= MAX_HOLDERS:
        raise ValueError(f"need 1 <= threshold <= count <= {MAX_HOLDERS}")
    low = _split_half(threshold, count, key[:16], rng)
    high = _split_half(threshold, count, key[16:], rng)
    return [(i + 1, a + b) for i, (a, b) in enumerate(zip(low, high, strict=True))]


def combine_key(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """Interpolate the key from exactly ``threshold`` distinct shares (more or fewer give a
    wrong key: pass as many as the threshold)."""
    if len(shares) > MAX_HOLDERS or any(len(v) != KEY_BYTES for _, v in shares):
        raise ValueError("shares are 32 bytes each")
    low = Shamir.combine([(i, v[:16]) for i, v in shares], ssss=False)
    high = Shamir.combine([(i, v[16:]) for i, v in shares], ssss=False)
    return bytes(low) + bytes(high)


def commitment(context: ShareContext, member: bytes, share: Share) -> bytes:
    return hashlib.sha256(
        DOMAIN + b"/commitment" + context.encode() + member + share.encode()
    ).digest()


# ----------------------------------------------------------------------------- encryption


def associated_data(context: ShareContext, member: bytes, index: int) -> bytes:
    return DOMAIN + context.encode() + member + bytes([index])


def _aead_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=DOMAIN + ephemeral + recipient
    ).derive(shared)


def _raw_public(key: X25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def encrypt_share(
    share: Share,
    member: bytes,
    member_key: bytes,
    context: ShareContext,
    rng: Random = os.urandom,
) -> bytes:
    """Seal one share to the member's X25519 public key (32 raw bytes)."""
    recipient = X25519PublicKey.from_public_bytes(member_key)
    ephemeral = X25519PrivateKey.from_private_bytes(rng(32))
    eph_pub = _raw_public(ephemeral.public_key())
    key = _aead_key(ephemeral.exchange(recipient), eph_pub, member_key)
    nonce = rng(12)
    sealed = AESGCM(key).encrypt(
        nonce, share.encode(), associated_data(context, member, share.index)
    )
    return bytes([SHARE_VERSION]) + eph_pub + nonce + sealed


def decrypt_share(
    issued: IssuedShare, member_key: X25519PrivateKey | bytes, context: ShareContext
) -> Share:
    """The member's side: open its share with its X25519 private key and check it."""
    if isinstance(member_key, bytes):
        member_key = X25519PrivateKey.from_private_bytes(member_key)
    blob = issued.ciphertext
    if len(blob) != _BLOB or blob[0] != SHARE_VERSION:
        raise GovernanceError("bad-share", "an encrypted share of another version or length")
    eph_pub, nonce, sealed = blob[1:33], blob[33:45], blob[45:]
    own_pub = _raw_public(member_key.public_key())
    key = _aead_key(
        member_key.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, own_pub
    )
    try:
        plain = AESGCM(key).decrypt(
            nonce, sealed, associated_data(context, issued.member, issued.index)
        )
    except InvalidTag:
        raise GovernanceError(
            "wrong-share",
            f"the share of 0x{issued.member.hex()} does not open with this key, or was "
            "made for another consortium, generation or member",
            member="0x" + issued.member.hex(),
        ) from None
    share = Share.decode(plain)
    if share.index != issued.index:
        raise GovernanceError("wrong-share", "the share's index differs from the ledger's")
    return share


# ----------------------------------------------------------------------------- issue, recover


def issue(
    key: bytes,
    *,
    threshold: int,
    holders: Sequence[tuple[bytes, bytes]],
    context: ShareContext,
    rng: Random = os.urandom,
) -> ShareSet:
    """Split ``key`` among ``holders`` ((address, X25519 public key), in the order given:
    the state's ``share_holders()``) and seal each share to its holder; every random value
    (coefficients, blinds, ephemeral keys, nonces) comes from ``rng``."""
    if not holders:
        raise ValueError("no share holder")
    if len({a for a, _ in holders}) != len(holders):
        raise ValueError("a holder is listed twice")
    issued = []
    for (index, value), (member, member_key) in zip(
        split_key(key, threshold, len(holders), rng), holders, strict=True
    ):
        share = Share(index, value, rng(32))
        issued.append(
            IssuedShare(
                member,
                index,
                commitment(context, member, share),
                encrypt_share(share, member, member_key, context, rng),
            )
        )
    return ShareSet(context, threshold, tuple(issued))


def check_share(share_set: ShareSet, member: bytes, share: Share) -> None:
    """Refuse, naming the member, a submitted share that is not the one it was issued."""
    issued = share_set.for_member(member)
    if (
        share.index != issued.index
        or commitment(share_set.context, member, share) != issued.commitment
    ):
        raise GovernanceError(
            "wrong-share",
            f"the share submitted by 0x{member.hex()} is not the share it was issued",
            member="0x" + member.hex(),
        )


def recover(share_set: ShareSet, submitted: Mapping[bytes, Share]) -> bytes:
    """The wrapping key from at least ``threshold`` checked shares (member -> share)."""
    for member, share in submitted.items():
        check_share(share_set, member, share)
    if len(submitted) < share_set.threshold:
        raise GovernanceError(
            "too-few-shares",
            f"{len(submitted)} of the {share_set.threshold} shares needed were submitted",
            submitted=len(submitted),
            threshold=share_set.threshold,
        )
    chosen = sorted(submitted.items())[: share_set.threshold]
    return combine_key([(s.index, s.value) for _, s in chosen])


# ----------------------------------------------------------------------------- wrapping


def wrap_secret(
    wrapping_key: bytes, secret: bytes, context: ShareContext, rng: Random = os.urandom
) -> bytes:
    """The ledger secret sealed under the wrapping key (AES-256-GCM): ``nonce ‖ ct+tag``."""
    nonce = rng(12)
    return nonce + AESGCM(wrapping_key).encrypt(nonce, secret, WRAP_DOMAIN + context.encode())


def unwrap_secret(wrapping_key: bytes, wrapped: bytes, context: ShareContext) -> bytes:
    try:
        return AESGCM(wrapping_key).decrypt(
            wrapped[:12], wrapped[12:], WRAP_DOMAIN + context.encode()
        )
    except (InvalidTag, ValueError):
        raise GovernanceError(
            "wrong-share", "the recovered key does not unwrap the ledger secret"
        ) from None


# ----------------------------------------------------------------- issuing from the secret


@dataclass(frozen=True)
class Issued:
    """What the ledger records for one share generation: the share set and the wrapped
    secret (all public)."""

    share_set: ShareSet
    wrapped: bytes
    ledger_generation: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SHARE_VERSION,
            "shareSet": self.share_set.to_json(),
            "wrapped": "0x" + self.wrapped.hex(),
            "ledgerGeneration": self.ledger_generation,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Issued:
        try:
            if raw["version"] != SHARE_VERSION:
                raise GovernanceError("bad-share", f"share record version {raw['version']!r}")
            wrapped = bytes.fromhex(raw["wrapped"][2:])
            generation = int(raw["ledgerGeneration"])
        except (KeyError, TypeError, ValueError, IndexError):
            raise GovernanceError("bad-share", "malformed share record") from None
        return cls(ShareSet.from_json(raw["shareSet"]), wrapped, generation)


def issue_from_secret(
    secret: bytes,
    *,
    context: ShareContext,
    threshold: int,
    holders: Sequence[tuple[bytes, bytes]],
    ledger_generation: int,
) -> Issued:
    """The share set of ``context``'s generation, made deterministically from the secret:
    every node that holds the secret makes the same bytes, so no node has to send its set
    to the others (docs/GOVERNANCE.md, "Recovery"). The wrapping key, the polynomials'
    coefficients, the blinds, the ephemeral keys and the nonces all come from
    ``DerivedRandom(HKDF(secret, ISSUE_DOMAIN ‖ context ‖ threshold ‖ holders))``; the
    wrapping key is one-way from the secret, so learning it (k shares) tells the secret
    only through the wrapped copy, as for a random key."""
    info = ISSUE_DOMAIN + context.encode() + threshold.to_bytes(2, "big")
    for member, key in holders:
        info += member + key
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=hashlib.sha256(info).digest()
    ).derive(secret)
    rng = DerivedRandom(seed)
    wrapping_key = rng(32)
    wrapped = wrap_secret(wrapping_key, secret, context, rng)
    share_set = issue(wrapping_key, threshold=threshold, holders=holders, context=context, rng=rng)
    return Issued(share_set, wrapped, ledger_generation)


# ----------------------------------------------------------------------------- submitting


def submission_ad(context: ShareContext, member: bytes, node: bytes) -> bytes:
    return SUBMIT_DOMAIN + context.encode() + member + node


def seal_for_enclave(
    share: Share, enclave_key: bytes, context: ShareContext, member: bytes, node: bytes
) -> bytes:
    """A member's opened share sealed to the recovering enclave's X25519 key (its attested
    recovery key), so that the host carrying it reads nothing: the layout of an issued
    share (``01 ‖ ephemeral key ‖ nonce ‖ ct+tag``), associated data ``SUBMIT_DOMAIN ‖
    context ‖ member ‖ node``."""
    recipient = X25519PublicKey.from_public_bytes(enclave_key)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = _raw_public(ephemeral.public_key())
    key = _aead_key(ephemeral.exchange(recipient), eph_pub, enclave_key)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, share.encode(), submission_ad(context, member, node))
    return bytes([SHARE_VERSION]) + eph_pub + nonce + sealed


def open_submission(
    sealed: bytes,
    enclave_key: X25519PrivateKey,
    context: ShareContext,
    member: bytes,
    node: bytes,
) -> Share:
    """The recovering enclave's side of ``seal_for_enclave``: ``bad-share`` when it does
    not open (sealed to another enclave, consortium, generation or member, or altered)."""
    if len(sealed) != SEALED_SUBMISSION or sealed[0] != SHARE_VERSION:
        raise GovernanceError("bad-share", "a submitted share is 126 bytes of version 1")
    eph_pub, nonce, body = sealed[1:33], sealed[33:45], sealed[45:]
    own_pub = _raw_public(enclave_key.public_key())
    key = _aead_key(
        enclave_key.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, own_pub
    )
    try:
        plain = AESGCM(key).decrypt(nonce, body, submission_ad(context, member, node))
    except InvalidTag:
        raise GovernanceError(
            "bad-share",
            "the submitted share does not open in this enclave: sealed to another node's "
            "recovery key, for another generation or member, or altered",
            member="0x" + member.hex(),
        ) from None
    return Share.decode(plain)


def enclave_key(node_key: bytes, context: ShareContext) -> X25519PrivateKey:
    """A recovering enclave's X25519 key for one share generation, derived from its sealed
    node identity key: the same after a restart (a share submitted before a kill -9 still
    opens), another for every node and generation."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=ENCLAVE_KEY_DOMAIN + context.encode()
    ).derive(node_key)
    return X25519PrivateKey.from_private_bytes(raw)


def public_bytes(key: X25519PrivateKey) -> bytes:
    return _raw_public(key.public_key())
