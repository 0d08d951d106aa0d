"""The transaction envelope (gateway/protocol/envelope.py) and its spec, docs/envelope.md."""

from __future__ import annotations

import ast
import hashlib
import random
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.protocol import envelope as env
from gateway.protocol.envelope import Kind, Purpose

REPO = Path(__file__).resolve().parent.parent

# the worked example's inputs (docs/envelope.md, "Worked example")
SECRET = bytes(range(32))
CHAIN_ID = 31337
TIMESTAMP = 1_700_000_000
EPOCH = 19675
EPH_PRIVATE = bytes(range(0x20, 0x40))
NONCE = bytes(range(0x40, 0x4C))
SENDER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
TO = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
MARKER = b"COCO-MARKER-7f3a"
PLAINTEXT = MARKER + b": transfer 42 to bob"
RESPONSE_PLAINTEXT = MARKER + b": ok"
RESPONSE_NONCE = bytes(range(0x50, 0x5C))

OTHER = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")


def tx_key(epoch: int = EPOCH) -> X25519PrivateKey:
    return env.derive_epoch_key(SECRET, epoch)


def all_epochs(epoch: int) -> X25519PrivateKey:
    return env.derive_epoch_key(SECRET, epoch)


def seal(
    plaintext: bytes = PLAINTEXT,
    *,
    kind: Kind = Kind.CALL,
    epoch: int = EPOCH,
    chain_id: int = CHAIN_ID,
    **kwargs: object,
) -> env.SealedRequest:
    to = None if kind == Kind.CREATE else TO
    return env.seal_request(
        plaintext,
        kind=kind,
        chain_id=chain_id,
        epoch=epoch,
        enclave_public=env.epoch_public_key(SECRET, epoch),
        sender=SENDER,
        to=to,
        **kwargs,  # type: ignore[arg-type]
    )


def open_(envelope: bytes, **overrides: object) -> env.OpenedRequest:
    args: dict[str, object] = {
        "chain_id": CHAIN_ID,
        "keys_by_epoch": all_epochs,
        "current_epoch": EPOCH,
        "sender": SENDER,
        "to": TO,
        "grace": 1,
    }
    args.update(overrides)
    return env.open_request(envelope, **args)  # type: ignore[arg-type]


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[position] ^= mask
    return bytes(out)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", [Kind.CALL, Kind.CREATE])
def test_round_trip(kind: Kind) -> None:
    to = None if kind == Kind.CREATE else TO
    sealed = seal(kind=kind)
    assert env.is_envelope(sealed.envelope)
    assert len(sealed.envelope) == 77 + len(PLAINTEXT)
    assert MARKER not in sealed.envelope
    header = env.parse_header(sealed.envelope)
    assert (header.version, header.kind, header.chain_id, header.epoch) == (1, kind, 31337, EPOCH)
    opened = open_(sealed.envelope, to=to, keys_by_epoch={EPOCH: tx_key()})
    assert opened.plaintext == PLAINTEXT
    assert opened.kind == kind and opened.epoch == EPOCH and opened.chain_id == CHAIN_ID
    assert opened.response_key == sealed.response_key
    assert opened.request_digest == sealed.request_digest
    assert sealed.request_digest == hashlib.sha256(sealed.envelope).digest()
    assert opened.ephemeral_public == header.ephemeral_public

    fields = [(Purpose.RESULT, 0), (Purpose.REVERT, 0), (Purpose.LOG, 0), (Purpose.LOG, 7)]
    for purpose, index in fields:
        response = env.seal_response(
            b"answer",
            response_key=opened.response_key,
            request_digest=opened.request_digest,
            purpose=purpose,
            index=index,
        )
        assert env.is_response(response) and not env.is_envelope(response)
        assert env.parse_response_header(response) == env.ResponseHeader(1, purpose, index)
        assert (
            env.open_response(
                response,
                response_key=sealed.response_key,
                request_digest=sealed.request_digest,
                purpose=purpose,
                index=index,
            )
            == b"answer"
        )


def test_reopen_ignores_the_window_but_not_the_rest() -> None:
    """Execution and later receipt/log fetches reopen old envelopes; admission would refuse."""
    sealed = seal()
    later = EPOCH + 400
    with pytest.raises(env.StaleEpochError):
        open_(sealed.envelope, current_epoch=later)
    opened = env.reopen_request(
        sealed.envelope, chain_id=CHAIN_ID, keys_by_epoch=all_epochs, sender=SENDER, to=TO
    )
    assert opened.plaintext == PLAINTEXT and opened.response_key == sealed.response_key
    with pytest.raises(env.EnvelopeAuthenticationError):
        env.reopen_request(
            sealed.envelope, chain_id=CHAIN_ID, keys_by_epoch=all_epochs, sender=OTHER, to=TO
        )
    with pytest.raises(env.ChainMismatchError):
        env.reopen_request(
            sealed.envelope, chain_id=1, keys_by_epoch=all_epochs, sender=SENDER, to=TO
        )
    with pytest.raises(env.UnknownEpochError):
        env.reopen_request(
            sealed.envelope, chain_id=CHAIN_ID, keys_by_epoch={}, sender=SENDER, to=TO
        )


def test_fresh_randomness_by_default() -> None:
    first, second = seal(), seal()
    assert first.envelope != second.envelope
    assert first.envelope[17:49] != second.envelope[17:49]  # ephemeral keys
    assert first.envelope[49:61] != second.envelope[49:61]  # nonces
    assert first.response_key != second.response_key
    digest = first.request_digest
    r1 = env.seal_response(b"x", response_key=first.response_key, request_digest=digest)
    r2 = env.seal_response(b"x", response_key=first.response_key, request_digest=digest)
    assert r1[9:21] != r2[9:21]


def test_property_random_sizes() -> None:
    rng = random.Random(20240611)
    sizes = [0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 4095, 4096, 65_536, 100_000]
    sizes += [rng.randrange(0, 100_001) for _ in range(40)]
    for size in sizes:
        plaintext = rng.randbytes(size)
        kind = rng.choice([Kind.CALL, Kind.CREATE])
        to = None if kind == Kind.CREATE else TO
        epoch = rng.randrange(0, 2**32)
        sealed = seal(plaintext, kind=kind, epoch=epoch)
        assert len(sealed.envelope) == 77 + size
        opened = open_(sealed.envelope, to=to, current_epoch=epoch)
        assert opened.plaintext == plaintext and opened.kind == kind
        if size:
            position = rng.randrange(61, len(sealed.envelope))
            with pytest.raises(env.EnvelopeAuthenticationError):
                tampered = flip(sealed.envelope, position, rng.randrange(1, 256))
                open_(tampered, to=to, current_epoch=epoch)
        answer = rng.randbytes(rng.randrange(0, size + 1))
        index = rng.randrange(0, 2**32)
        response = env.seal_response(
            answer,
            response_key=opened.response_key,
            request_digest=opened.request_digest,
            purpose=Purpose.LOG,
            index=index,
        )
        assert len(response) == 37 + len(answer)
        assert (
            env.open_response(
                response,
                response_key=sealed.response_key,
                request_digest=sealed.request_digest,
                purpose=Purpose.LOG,
                index=index,
            )
            == answer
        )


# ----------------------------------------------------------------------------- request errors


def test_plain_data_is_not_an_envelope() -> None:
    for data in [b"", b"\xc0", b"\xc0\xc0", b"\xa9\x05\x9c\xbb" + bytes(64), b"\x60\x80\x60\x40"]:
        assert not env.is_envelope(data)
        with pytest.raises(env.NotAnEnvelopeError, match="plain"):
            env.parse_header(data)
        with pytest.raises(env.NotAnEnvelopeError):
            open_(data)


def test_truncated_at_every_length() -> None:
    sealed = seal()
    envelope = sealed.envelope
    for length in range(len(envelope)):
        cut = envelope[:length]
        if length < 3:
            expected: type[env.EnvelopeError] = env.NotAnEnvelopeError
        elif length < 77:
            expected = env.TruncatedEnvelopeError
        else:  # the tag eats into the ciphertext: only the AEAD can tell
            expected = env.EnvelopeAuthenticationError
        with pytest.raises(expected) as caught:
            open_(cut)
        if isinstance(caught.value, env.TruncatedEnvelopeError):
            assert caught.value.length == length and caught.value.minimum == 77
            assert str(length) in str(caught.value)
            if length == 3:
                assert "version" in str(caught.value)
            elif length < 49:
                assert "header" in str(caught.value)
            elif 49 <= length < 61:
                assert "nonce" in str(caught.value)
            else:
                assert "tag" in str(caught.value)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unsupported_version(version: int) -> None:
    envelope = seal().envelope
    changed = envelope[:3] + bytes([version]) + envelope[4:]
    for data in (changed, changed[:4], changed[:20]):  # refused whatever its length
        assert env.is_envelope(data)
        with pytest.raises(env.UnsupportedVersionError, match=f"version {version} ") as caught:
            open_(data)
        assert caught.value.version == version


def test_unknown_and_wrong_kind() -> None:
    call = seal(kind=Kind.CALL).envelope
    create = seal(kind=Kind.CREATE).envelope
    for kind in (0, 3, 255):
        with pytest.raises(env.UnknownKindError, match=f"kind {kind} is unknown"):
            open_(call[:4] + bytes([kind]) + call[5:])
    with pytest.raises(env.WrongKindError, match="init code") as caught:
        open_(create, to=TO)  # init code sent to a recipient
    assert caught.value.kind == Kind.CREATE and caught.value.expected == Kind.CALL
    with pytest.raises(env.WrongKindError, match="no recipient"):
        open_(call, to=None)  # call data used as a contract creation


def test_wrong_chain() -> None:
    envelope = seal(chain_id=1).envelope
    with pytest.raises(env.ChainMismatchError) as caught:
        open_(envelope)
    assert "envelope is for chain 1, this node serves chain 31337" in str(caught.value)
    assert (caught.value.envelope_chain_id, caught.value.node_chain_id) == (1, 31337)


def test_epoch_window() -> None:
    envelope = seal().envelope
    # current and up to `grace` previous epochs are accepted
    for current, grace in [(EPOCH, 0), (EPOCH, 1), (EPOCH + 1, 1), (EPOCH + 3, 3)]:
        assert open_(envelope, current_epoch=current, grace=grace).plaintext == PLAINTEXT
    with pytest.raises(env.StaleEpochError) as stale:
        open_(envelope, current_epoch=EPOCH + 2, grace=1)
    assert (stale.value.epoch, stale.value.current_epoch) == (EPOCH, EPOCH + 2)
    assert stale.value.grace == 1
    assert "fetch the current transaction key" in str(stale.value)
    with pytest.raises(env.StaleEpochError):
        open_(envelope, current_epoch=EPOCH + 1, grace=0)
    with pytest.raises(env.FutureEpochError) as future:
        open_(envelope, current_epoch=EPOCH - 1)
    assert f"epoch {EPOCH}" in str(future.value) and f"epoch {EPOCH - 1}" in str(future.value)
    assert open_(envelope, current_epoch=EPOCH - 1, lookahead=1).plaintext == PLAINTEXT
    assert isinstance(stale.value, env.EpochError) and isinstance(future.value, env.EpochError)


def test_unknown_epoch_key() -> None:
    envelope = seal().envelope
    with pytest.raises(env.UnknownEpochError, match=f"no transaction key for epoch {EPOCH}"):
        open_(envelope, keys_by_epoch={EPOCH - 1: tx_key(EPOCH - 1)})

    def raises(epoch: int) -> X25519PrivateKey:
        raise KeyError(epoch)

    with pytest.raises(env.UnknownEpochError):
        open_(envelope, keys_by_epoch=raises)
    with pytest.raises(env.UnknownEpochError):
        open_(envelope, keys_by_epoch=lambda epoch: None)


def test_keys_are_looked_up_only_inside_the_window() -> None:
    asked: list[int] = []

    def keys(epoch: int) -> X25519PrivateKey:
        asked.append(epoch)
        return all_epochs(epoch)

    with pytest.raises(env.StaleEpochError):
        open_(seal(epoch=3).envelope, keys_by_epoch=keys)
    with pytest.raises(env.FutureEpochError):
        open_(seal(epoch=2**32 - 1).envelope, keys_by_epoch=keys)
    assert asked == []


def test_tampered_byte_in_every_region() -> None:
    """Flip bits at every position: each header field gives its own error, the rest fail AEAD."""
    envelope = seal().envelope
    regions = {
        "magic": range(0, 3),
        "version": range(3, 4),
        "kind": range(4, 5),
        "chain id": range(5, 13),
        "epoch": range(13, 17),
        "ephemeral key": range(17, 49),
        "nonce": range(49, 61),
        "ciphertext": range(61, len(envelope) - 16),
        "tag": range(len(envelope) - 16, len(envelope)),
    }
    seen: dict[str, set[type[env.EnvelopeError]]] = {name: set() for name in regions}
    for name, positions in regions.items():
        for position in positions:
            for mask in (0x01, 0x80, 0xFF):
                tampered = flip(envelope, position, mask)
                if name == "magic":
                    expected: type[env.EnvelopeError] = env.NotAnEnvelopeError
                elif name == "version":
                    expected = env.UnsupportedVersionError
                elif name == "kind":
                    expected = env.UnknownKindError
                elif name == "chain id":
                    expected = env.ChainMismatchError
                elif name == "epoch":
                    epoch = int.from_bytes(tampered[13:17], "big")
                    if epoch < EPOCH - 1:
                        expected = env.StaleEpochError
                    elif epoch > EPOCH:
                        expected = env.FutureEpochError
                    else:
                        expected = env.EnvelopeAuthenticationError
                else:
                    expected = env.EnvelopeAuthenticationError
                with pytest.raises(expected):
                    open_(tampered)
                seen[name].add(expected)
    assert seen["epoch"] == {
        env.StaleEpochError,
        env.FutureEpochError,
        env.EnvelopeAuthenticationError,
    }
    # kind 1 -> 2 is a known kind: it is refused for this recipient
    with pytest.raises(env.WrongKindError):
        open_(flip(envelope, 4, 0x03))


def test_header_is_authenticated_even_when_checks_pass() -> None:
    """AAD binding: a header changed so that every plain check passes still fails."""
    envelope = seal().envelope
    other_chain = envelope[:5] + (1).to_bytes(8, "big") + envelope[13:]
    with pytest.raises(env.EnvelopeAuthenticationError):
        open_(other_chain, chain_id=1)
    # another epoch in the window, with a key lookup that hands out the same key for both
    same_key = tx_key()
    other_epoch = envelope[:13] + (EPOCH - 1).to_bytes(4, "big") + envelope[17:]
    with pytest.raises(env.EnvelopeAuthenticationError):
        open_(other_epoch, keys_by_epoch=lambda epoch: same_key)
    assert open_(envelope, keys_by_epoch=lambda epoch: same_key).plaintext == PLAINTEXT
    # call data relabelled as init code and used in a creation
    relabelled = envelope[:4] + bytes([Kind.CREATE]) + envelope[5:]
    with pytest.raises(env.EnvelopeAuthenticationError):
        open_(relabelled, to=None)


def test_bound_to_sender_and_recipient() -> None:
    """Copying an envelope into another account's transaction, or to another contract, fails."""
    envelope = seal().envelope
    with pytest.raises(env.EnvelopeAuthenticationError, match="another sender or recipient"):
        open_(envelope, sender=OTHER)
    with pytest.raises(env.EnvelopeAuthenticationError):
        open_(envelope, to=OTHER)
    with pytest.raises(env.EnvelopeAuthenticationError):
        open_(envelope, to=bytes(20))
    create = seal(kind=Kind.CREATE).envelope
    with pytest.raises(env.EnvelopeAuthenticationError):
        open_(create, to=None, sender=OTHER)


def test_encrypted_to_another_key() -> None:
    stranger = X25519PrivateKey.generate()
    envelope = env.seal_request(
        PLAINTEXT,
        kind=Kind.CALL,
        chain_id=CHAIN_ID,
        epoch=EPOCH,
        enclave_public=stranger.public_key().public_bytes_raw(),
        sender=SENDER,
        to=TO,
    ).envelope
    with pytest.raises(env.EnvelopeAuthenticationError, match="another transaction key"):
        open_(envelope)
    # the stranger can open it, and nothing else about the envelope is wrong
    assert open_(envelope, keys_by_epoch={EPOCH: stranger}).plaintext == PLAINTEXT


def test_low_order_ephemeral_key() -> None:
    envelope = seal().envelope
    zero_point = envelope[:17] + bytes(32) + envelope[49:]
    with pytest.raises(env.EnvelopeAuthenticationError, match="low-order"):
        open_(zero_point)


def test_errors_are_distinct() -> None:
    classes: list[type[env.EnvelopeError]] = [
        env.NotAnEnvelopeError,
        env.TruncatedEnvelopeError,
        env.UnsupportedVersionError,
        env.UnknownKindError,
        env.WrongKindError,
        env.ChainMismatchError,
        env.StaleEpochError,
        env.FutureEpochError,
        env.UnknownEpochError,
        env.EnvelopeAuthenticationError,
        env.UnknownPurposeError,
        env.ResponseMismatchError,
    ]
    assert all(issubclass(cls, env.EnvelopeError) for cls in classes)
    reasons = [cls.reason for cls in classes]
    assert len(set(reasons)) == len(reasons)
    assert not issubclass(env.EnvelopeError, ValueError)  # bad data is not a caller bug


def test_caller_mistakes_are_value_errors() -> None:
    key = env.epoch_public_key(SECRET, EPOCH)
    base = {
        "kind": Kind.CALL,
        "chain_id": CHAIN_ID,
        "epoch": EPOCH,
        "enclave_public": key,
        "sender": SENDER,
        "to": TO,
    }
    bad: list[dict[str, object]] = [
        {"nonce": bytes(11)},
        {"enclave_public": key[:31]},
        {"enclave_public": bytes(32)},  # low-order point
        {"sender": SENDER[:19]},
        {"to": None},  # kind CALL without a recipient
        {"kind": Kind.CREATE},  # kind CREATE with a recipient
        {"chain_id": -1},
        {"chain_id": 2**64},
        {"epoch": 2**32},
    ]
    for change in bad:
        with pytest.raises(ValueError):
            env.seal_request(b"", **{**base, **change})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        env.seal_request("text", **base)  # type: ignore[arg-type]
    sealed = seal()
    with pytest.raises(ValueError):
        env.seal_response(
            b"", response_key=sealed.response_key, request_digest=sealed.request_digest, index=1
        )
    with pytest.raises(ValueError):
        env.seal_response(b"", response_key=sealed.response_key[:16], request_digest=bytes(32))
    with pytest.raises(ValueError):
        env.derive_epoch_key(bytes(16), 0)


def test_reprs_hide_plaintext_and_keys() -> None:
    sealed = seal()
    opened = open_(sealed.envelope)
    assert MARKER.decode() not in repr(opened) and str(MARKER) not in repr(opened)
    assert repr(opened.response_key) not in repr(opened)
    assert repr(sealed.response_key) not in repr(sealed)


# ----------------------------------------------------------------------------- responses


def test_response_bound_to_its_request() -> None:
    eph = X25519PrivateKey.generate()
    first = seal(b"first request", ephemeral_private=eph)
    second = seal(b"second request", ephemeral_private=eph)
    assert first.response_key == second.response_key  # same key agreement on purpose
    response = env.seal_response(
        b"for the first", response_key=first.response_key, request_digest=first.request_digest
    )
    with pytest.raises(env.EnvelopeAuthenticationError, match="another request"):
        env.open_response(
            response, response_key=second.response_key, request_digest=second.request_digest
        )
    third = seal(b"third request")
    with pytest.raises(env.EnvelopeAuthenticationError):
        env.open_response(
            response, response_key=third.response_key, request_digest=first.request_digest
        )
    assert (
        env.open_response(
            response, response_key=first.response_key, request_digest=first.request_digest
        )
        == b"for the first"
    )


def test_response_fields_cannot_be_swapped() -> None:
    sealed = seal()
    key, digest = sealed.response_key, sealed.request_digest
    log2 = env.seal_response(
        b"log two", response_key=key, request_digest=digest, purpose=Purpose.LOG, index=2
    )
    with pytest.raises(env.ResponseMismatchError, match="log 2 of its request, not the log 0"):
        env.open_response(log2, response_key=key, request_digest=digest, purpose=Purpose.LOG)
    revert = env.seal_response(
        b"reverted", response_key=key, request_digest=digest, purpose=Purpose.REVERT
    )
    with pytest.raises(env.ResponseMismatchError, match="revert data of its request"):
        env.open_response(revert, response_key=key, request_digest=digest)
    # rewriting the header to claim another field breaks authentication
    relabelled = revert[:4] + bytes([Purpose.RESULT]) + revert[5:]
    with pytest.raises(env.EnvelopeAuthenticationError):
        env.open_response(relabelled, response_key=key, request_digest=digest)
    reindexed = log2[:5] + (0).to_bytes(4, "big") + log2[9:]
    with pytest.raises(env.EnvelopeAuthenticationError):
        env.open_response(reindexed, response_key=key, request_digest=digest, purpose=Purpose.LOG)


def test_response_tampering_and_truncation() -> None:
    sealed = seal()
    key, digest = sealed.response_key, sealed.request_digest
    response = env.seal_response(b"some return data", response_key=key, request_digest=digest)

    def open_it(data: bytes) -> bytes:
        return env.open_response(data, response_key=key, request_digest=digest)

    for position in range(len(response)):
        tampered = flip(response, position, 0x80)
        if position < 3:
            expected: type[env.EnvelopeError] = env.NotAnEnvelopeError
        elif position == 3:
            expected = env.UnsupportedVersionError
        elif position == 4:
            expected = env.UnknownPurposeError
        else:
            expected = env.EnvelopeAuthenticationError
        with pytest.raises(expected):
            open_it(tampered)
    for length in range(len(response)):
        if length < 3:
            expected = env.NotAnEnvelopeError
        elif length < 37:
            expected = env.TruncatedEnvelopeError
        else:
            expected = env.EnvelopeAuthenticationError
        with pytest.raises(expected):
            open_it(response[:length])
    with pytest.raises(env.NotAnEnvelopeError, match="unencrypted"):
        open_it(b"\x00" * 64)
    with pytest.raises(env.NotAnEnvelopeError):
        open_it(sealed.envelope)  # a request is not a response


# ----------------------------------------------------------------------------- epochs


def test_epoch_at() -> None:
    assert env.epoch_at(TIMESTAMP) == EPOCH == TIMESTAMP // 86_400
    assert env.epoch_at(0) == 0
    assert env.epoch_at(86_399) == 0 and env.epoch_at(86_400) == 1
    assert env.epoch_at(3_599, 3_600) == 0 and env.epoch_at(3_600, 3_600) == 1
    for bad in [(-1, 86_400), (0, 0), (0, -5)]:
        with pytest.raises(ValueError):
            env.epoch_at(*bad)
    with pytest.raises(ValueError):
        env.epoch_at(2**32 * 10, 1)


def test_epoch_keys() -> None:
    a, b = env.epoch_public_key(SECRET, EPOCH), env.epoch_public_key(SECRET, EPOCH + 1)
    assert a != b and a == env.epoch_public_key(SECRET, EPOCH)
    assert env.epoch_public_key(bytes(32), EPOCH) != a
    assert tx_key().public_key().public_bytes_raw() == a


# ----------------------------------------------------------------------------- purity


def test_module_imports_only_the_standard_library_and_cryptography() -> None:
    for name in ("envelope.py", "__init__.py"):
        tree = ast.parse((REPO / "gateway" / "protocol" / name).read_text())
        modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module
                modules.add(node.module)
        allowed = {"__future__", "hashlib", "os", "collections.abc", "dataclasses", "enum"}
        allowed.add("typing")
        for module in modules:
            assert module in allowed or module.startswith("cryptography."), module


# ----------------------------------------------------------------------------- the spec


def _spec_text() -> str:
    """docs/envelope.md, or its section once merged into docs/PROTOCOL.md."""
    standalone = REPO / "docs" / "envelope.md"
    if standalone.exists():
        return standalone.read_text()
    text = (REPO / "docs" / "PROTOCOL.md").read_text()
    match = re.search(r"^(#+) Transaction envelope.*$", text, re.M)
    assert match, "no 'Transaction envelope' section in docs/PROTOCOL.md"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, match.end())
    return text[match.start() : end.start() if end else len(text)]


def _documented_values() -> dict[str, bytes]:
    """Labelled hex values of the worked example's code blocks.

    A value starts on a line `label  hex` and continues on indented hex lines; spaces
    between hex groups and `# comments` are ignored.
    """
    text = _spec_text()
    text = text[text.index("Worked example") :]
    values: dict[str, str] = {}
    label: str | None = None
    inside = False
    for raw in text.splitlines():
        if raw.startswith("```"):
            inside, label = not inside, None
            continue
        if not inside:
            continue
        line = raw.split("#", 1)[0].rstrip()
        start = re.fullmatch(r"([a-z_]+)\s+([0-9a-f][0-9a-f ]*)", line)
        more = re.fullmatch(r"\s+([0-9a-f][0-9a-f ]*)", line)
        if start:
            label = start.group(1)
            assert label not in values, f"{label} documented twice"
            values[label] = start.group(2)
        elif more and label:
            values[label] += more.group(1)
        else:
            raise AssertionError(f"unparsable line in the worked example: {raw!r}")
    return {name: bytes.fromhex(value.replace(" ", "")) for name, value in values.items()}


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def test_worked_example_byte_for_byte() -> None:
    """Recompute every documented value from the spec's own recipe, then with the module."""
    doc = _documented_values()

    # the recipe, with cryptography primitives only
    assert env.epoch_at(TIMESTAMP) == EPOCH
    tx_info = b"coco-gateway/tx-key/v1" + EPOCH.to_bytes(4, "big")
    tx_private = _hkdf(SECRET, None, tx_info, 32)
    tx_public = X25519PrivateKey.from_private_bytes(tx_private).public_key().public_bytes_raw()
    eph = X25519PrivateKey.from_private_bytes(EPH_PRIVATE)
    eph_public = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PrivateKey.from_private_bytes(tx_private).public_key())
    salt = eph_public + tx_public
    info = b"coco-gateway/envelope/v1"
    okm = _hkdf(shared, salt, info, 64)
    header = b"\xc0\xc0E\x01\x01" + CHAIN_ID.to_bytes(8, "big") + EPOCH.to_bytes(4, "big")
    header += eph_public
    aad = header + SENDER + TO
    sealed_bytes = AESGCM(okm[:32]).encrypt(NONCE, PLAINTEXT, aad)
    envelope = header + NONCE + sealed_bytes
    digest = hashlib.sha256(envelope).digest()
    response_header = b"\xc0\xc0R\x01\x01" + bytes(4)
    response_aad = response_header + digest
    response = (
        response_header
        + RESPONSE_NONCE
        + AESGCM(okm[32:]).encrypt(RESPONSE_NONCE, RESPONSE_PLAINTEXT, response_aad)
    )
    expected = {
        "secret": SECRET,
        "tx_info": tx_info,
        "tx_private": tx_private,
        "tx_public": tx_public,
        "eph_private": EPH_PRIVATE,
        "eph_public": eph_public,
        "shared": shared,
        "hkdf_salt": salt,
        "hkdf_info": info,
        "okm": okm,
        "request_key": okm[:32],
        "response_key": okm[32:],
        "header": header,
        "aad": aad,
        "nonce": NONCE,
        "plaintext": PLAINTEXT,
        "ciphertext": sealed_bytes[:-16],
        "tag": sealed_bytes[-16:],
        "envelope": envelope,
        "request_digest": digest,
        "response_plaintext": RESPONSE_PLAINTEXT,
        "response_header": response_header,
        "response_aad": response_aad,
        "response_nonce": RESPONSE_NONCE,
        "response": response,
    }
    assert set(doc) == set(expected)
    for label, value in expected.items():
        assert doc[label].hex() == value.hex(), label

    # the module produces the same bytes ...
    assert env.derive_epoch_key(SECRET, EPOCH).private_bytes_raw() == tx_private
    sealed = env.seal_request(
        PLAINTEXT,
        kind=Kind.CALL,
        chain_id=CHAIN_ID,
        epoch=EPOCH,
        enclave_public=env.epoch_public_key(SECRET, EPOCH),
        sender=SENDER,
        to=TO,
        ephemeral_private=X25519PrivateKey.from_private_bytes(EPH_PRIVATE),
        nonce=NONCE,
    )
    assert sealed.envelope == doc["envelope"]
    assert sealed.response_key == doc["response_key"]
    assert sealed.request_digest == doc["request_digest"]
    assert MARKER not in sealed.envelope
    # ... and opens the documented bytes
    opened = env.open_request(
        doc["envelope"],
        chain_id=CHAIN_ID,
        keys_by_epoch={EPOCH: env.derive_epoch_key(SECRET, EPOCH)},
        current_epoch=env.epoch_at(TIMESTAMP),
        sender=SENDER,
        to=TO,
    )
    assert opened.plaintext == PLAINTEXT and opened.response_key == doc["response_key"]
    reply = env.seal_response(
        RESPONSE_PLAINTEXT,
        response_key=opened.response_key,
        request_digest=opened.request_digest,
        nonce=RESPONSE_NONCE,
    )
    assert reply == doc["response"]
    assert MARKER not in reply
    assert (
        env.open_response(
            doc["response"], response_key=sealed.response_key, request_digest=sealed.request_digest
        )
        == RESPONSE_PLAINTEXT
    )
    assert len(doc["envelope"]) == 113 and len(doc["response"]) == 57


def test_spec_states_the_constants() -> None:
    text = _spec_text()
    for fact in [
        "coco-gateway/envelope/v1",
        "coco-gateway/tx-key/v1",
        "86 400 seconds",
        "77 + n",
        "envelope is for chain X, this node serves chain Y",
        "AES-256-GCM",
    ]:
        assert fact in text, fact
    assert env.DEFAULT_EPOCH_PERIOD == 86_400 and env.DEFAULT_GRACE == 1


def _reason_codes(cls: type[env.EnvelopeError]) -> set[str]:
    """The ``reason`` of ``cls`` and of every subclass below it."""
    codes = {cls.reason}
    for sub in cls.__subclasses__():
        codes |= _reason_codes(sub)
    return codes


def test_the_documented_reasons_are_the_codes() -> None:
    """The checks table of docs/PROTOCOL.md ("Opening a request") and the response errors
    it names are exactly the ``reason`` codes of the EnvelopeError classes (one list)."""
    spec = _spec_text()
    table = spec[spec.index("### Opening a request") :]
    table = table[: table.index("\n\n**On the wire.**")]
    rows = re.findall(r"^\| [0-9a-z]+ \|.*\| `([a-z-]+)` \|[^|]*\|$", table, re.M)
    classes = set(re.findall(r"^\| [0-9a-z]+ \|[^|]*\| `(\w+)`", table, re.M))
    responses = set(re.findall(r"`(\w+Error)` \(`([a-z-]+)`\)", spec))
    documented = set(rows) | {code for _, code in responses}
    abstract = {env.EnvelopeError.reason, env.EpochError.reason}  # bases, never raised as such
    assert documented == _reason_codes(env.EnvelopeError) - abstract
    for name in classes | {name for name, _ in responses}:
        assert issubclass(getattr(env, name), env.EnvelopeError), name
