"""The action kinds and the shape of their arguments (checked without looking at the state).

``parse_args(kind, params)`` turns an action's JSON arguments into typed values (addresses
and hashes as bytes) or refuses with ``unknown-action`` / ``bad-args``. What an action needs
of the state (the member exists, the quorum survives, ...) is ``state.py``'s to check.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.governance.errors import GovernanceError

# kind -> {argument: (type, required)}; types: address, hash32, key32, json, bool, uint,
# platform, policy, object
KINDS: dict[str, dict[str, tuple[str, bool]]] = {
    "add_member": {
        "address": ("address", True),
        "encryptionKey": ("key32", False),
        "data": ("json", False),
    },
    "remove_member": {"address": ("address", True)},
    "set_member_data": {"address": ("address", True), "data": ("json", True)},
    "trust_node": {"address": ("address", True)},
    "retire_node": {"address": ("address", True)},
    "add_validator": {"address": ("address", True)},
    "remove_validator": {"address": ("address", True)},
    "allow_measurement": {"measurement": ("hash32", True)},
    "disallow_measurement": {"measurement": ("hash32", True)},
    "allow_platform": {"platform": ("platform", True)},
    "disallow_platform": {"platform": ("platform", True)},
    "set_allow_virtual": {"allow": ("bool", True)},
    "set_node_policy": {"name": ("policy", True), "value": ("json", True)},
    "rotate_ledger_secret": {},
    "refresh_recovery_shares": {},
    "set_recovery_threshold": {"threshold": ("uint", True)},
    "open_network": {},
    "set_constitution": {"constitution": ("object", True)},
}

# node policies: name -> the values it takes
POLICIES: dict[str, tuple[Any, ...]] = {
    "privacy": ("open", "strict"),  # strict: calls and reads need an authenticated caller
    "publicBalances": (False, True),  # whether anyone may read any balance
    "requireEncryption": (False, True),  # refuse plain (non-enveloped) calldata
}

_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def usable_x25519(public: bytes) -> bool:
    """False for a key no share could be sealed to (a low-order point: shared secret 0)."""
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True


_PLATFORM = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def _bad(kind: str, what: str) -> GovernanceError:
    return GovernanceError("bad-args", f"{kind}: {what}", kind=kind)


def _hex(kind: str, name: str, value: Any, size: int) -> bytes:
    if (
        not isinstance(value, str)
        or not value.startswith("0x")
        or len(value) != 2 + 2 * size
        or value != value.lower()
    ):
        raise _bad(kind, f"{name} must be 0x and {size} bytes of lowercase hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise _bad(kind, f"{name} is not hex") from None


def parse_args(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Typed arguments of one action; ``unknown-action`` or ``bad-args`` naming the field."""
    spec = KINDS.get(kind)
    if spec is None:
        raise GovernanceError("unknown-action", f"{kind!r} is not an action kind", kind=kind)
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise _bad(kind, f"unknown arguments {unknown}")
    out: dict[str, Any] = {}
    for name, (typ, needed) in spec.items():
        if name not in params:
            if needed:
                raise _bad(kind, f'"{name}" is missing')
            out[name] = None
            continue
        value = params[name]
        if typ == "address":
            out[name] = _hex(kind, name, value, 20)
        elif typ == "hash32":
            out[name] = _hex(kind, name, value, 32)
        elif typ == "key32":
            out[name] = None if value is None else _hex(kind, name, value, 32)
            if out[name] is not None and not usable_x25519(out[name]):
                raise _bad(kind, f"{name} is not a usable X25519 public key (low order)")
        elif typ == "bool":
            if not isinstance(value, bool):
                raise _bad(kind, f"{name} must be true or false")
            out[name] = value
        elif typ == "uint":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _bad(kind, f"{name} must be a non-negative integer")
            out[name] = value
        elif typ == "platform":
            if not isinstance(value, str) or not _PLATFORM.match(value):
                raise _bad(kind, f"{name} must be a short lowercase platform name")
            out[name] = value
        elif typ == "policy":
            if value not in POLICIES:
                raise _bad(kind, f"policy {value!r} is not one of {', '.join(POLICIES)}")
            out[name] = value
        elif typ == "object":
            if not isinstance(value, dict):
                raise _bad(kind, f"{name} must be an object")
            out[name] = value
        else:  # json: any JSON value (already checked plain by typed.Action)
            out[name] = value
    if kind == "set_node_policy" and not any(
        type(v) is type(out["value"]) and v == out["value"] for v in POLICIES[out["name"]]
    ):
        allowed = ", ".join(repr(v) for v in POLICIES[out["name"]])
        raise _bad(kind, f"policy {out['name']} takes one of {allowed}")
    return out
