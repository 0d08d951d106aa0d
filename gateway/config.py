"""A consortium's configuration files: its public terms and each node's own settings.

``consortium.json`` (``ConsortiumTerms``) holds the terms every node of one consortium shares,
byte for byte: chain id, fork, allocations, validators, the node list, which enclave
measurements and platforms may join. It is public. The genesis block's extraData is
keccak256 of its canonical JSON (``ConsortiumTerms.canonical_json``), so the genesis hash
commits to the terms and a node with different terms is on a different chain.

``node.json`` (``NodeFile``) is one node's settings: its name and role, where the terms and
its data directory are (paths relative to the file), its listening addresses and its peers.

Both are loaded strictly: every field is checked, an unknown field is refused, and an error
names the file, the field and the reason (``ConfigError``), e.g.
``node.json: p2p.port: expected an integer 1..65535``. docs/operating.md describes them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.enclave.messages import FORK_NAMES

CONFIG_VERSION = 1
ROLES = ("validator", "member", "observer")
IDENTITY_ROLES = ("validator", "member")  # the roles with a node identity (and an enclave)
VALIDATION_RULES = ("attested-diff", "re-execute")
PRIVACY_MODES = ("open", "strict")
SERVICE_STATES = ("opening", "open")  # gateway.governance.state.SERVICE_STATES
ENCLAVE_RUNTIMES = ("process", "inprocess")

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH32 = re.compile(r"0x[0-9a-fA-F]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_MAX_WEI = 2**256 - 1
_MAX_U64 = 2**64 - 1


class ConfigError(ValueError):
    """A configuration file cannot be used: ``file: field: reason``.

    ``code`` is stable for programs: "unreadable", "not-json", "missing-field",
    "unknown-field", "invalid-field", "inconsistent"."""

    def __init__(self, file: str, field: str, reason: str, code: str = "invalid-field") -> None:
        self.file = file
        self.field = field
        self.reason = reason
        self.code = code
        super().__init__(f"{file}: {field}: {reason}" if field else f"{file}: {reason}")


# ------------------------------------------------------------------ field readers


def _governance_fields(
    r: _Reader, data: dict[str, Any]
) -> tuple[list[dict[str, Any]], int | None, dict[str, Any] | None, str | None]:
    """``members``, ``recoveryThreshold``, ``constitution`` and ``service``, read as strictly as the
    governance core reads them at block 0 (``genesis_from_terms``); all optional: terms
    without members run without governance (static validators, docs/GOVERNANCE.md)."""
    from gateway.governance.state import genesis_from_terms

    members_raw = r.raw("members", None)
    threshold = r.raw("recoveryThreshold", None)
    constitution = r.raw("constitution", None)
    service = r.raw("service", None)
    if members_raw is None:
        for key, value in (
            ("recoveryThreshold", threshold),
            ("constitution", constitution),
            ("service", service),
        ):
            if value is not None:
                raise r.fail(key, "needs members (governance is off without them)", "inconsistent")
        return [], None, None, None
    if not isinstance(members_raw, list) or not members_raw:
        raise r.fail("members", "expected a non-empty list of members")
    members: list[dict[str, Any]] = []
    for i, value in enumerate(members_raw):
        m = _Reader(r.file, value, f"members[{i}]")
        entry: dict[str, Any] = {"address": m.address("address")}
        key = m.raw("encryptionKey", None)
        if key is not None:
            if not isinstance(key, str) or not _HASH32.fullmatch(key):
                raise m.fail("encryptionKey", "expected a 0x-prefixed 32-byte X25519 public key")
            entry["encryptionKey"] = key.lower()
        if "data" in value:
            entry["data"] = m.raw("data")
        m.done()
        if any(e["address"] == entry["address"] for e in members):
            raise m.fail("address", "listed twice", "inconsistent")
        members.append(entry)
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)):
        raise r.fail("recoveryThreshold", "expected an integer")
    holders = sum(1 for m in members if "encryptionKey" in m)
    if threshold is not None and not 1 <= threshold <= holders:
        raise r.fail(
            "recoveryThreshold",
            f"must be 1..{holders} (the members with an encryptionKey)",
            "inconsistent",
        )
    if constitution is not None and not isinstance(constitution, dict):
        raise r.fail("constitution", "expected a JSON object (docs/GOVERNANCE.md)")
    if service is not None and service not in SERVICE_STATES:
        raise r.fail("service", f"expected one of {', '.join(SERVICE_STATES)}")
    check = dict(data)
    check["members"] = members
    try:  # the core's own checks: keys usable, threshold in range, constitution well formed
        genesis_from_terms(check, bytes(32))
    except ValueError as exc:
        raise r.fail("members", f"governance terms refused: {exc}", "inconsistent") from None
    except Exception as exc:  # a GovernanceError from a nested check
        raise r.fail("members", f"governance terms refused: {exc}", "inconsistent") from None
    return members, threshold, constitution, service


class _Reader:
    """Reads the fields of one JSON object, naming the file and field path in errors."""

    def __init__(self, file: str, data: Any, path: str = "") -> None:
        self.file = file
        self.path = path
        if not isinstance(data, dict):
            raise ConfigError(file, path or "(top level)", "expected a JSON object")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, reason: str, code: str = "invalid-field") -> ConfigError:
        return ConfigError(self.file, self.name(key), reason, code)

    def raw(self, key: str, default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "missing", "missing-field")
            return default
        return self.data[key]

    def sub(self, key: str) -> _Reader:
        return _Reader(self.file, self.raw(key), self.name(key))

    def integer(self, key: str, low: int, high: int, default: Any = ...) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected an integer {low}..{high}")
        return value

    def number(self, key: str, low: float, high: float, default: Any = ...) -> float:
        """An int or a float in [low, high], kept as written (the canonical JSON keeps it)."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise self.fail(key, f"expected a number {low:g}..{high:g}")
        if not low <= value <= high:
            raise self.fail(key, f"expected a number {low:g}..{high:g}")
        return value

    def boolean(self, key: str, default: Any = ...) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "expected true or false")
        return value

    def string(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise self.fail(key, "expected one of " + ", ".join(f'"{c}"' for c in choices))
        return str(value)

    def address(self, key: str) -> str:
        return _address(self.raw(key), lambda reason: self.fail(key, reason))

    def array(self, key: str, minimum: int = 0) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.fail(key, "expected a list")
        if len(value) < minimum:
            raise self.fail(
                key, f"expected at least {minimum} entr{'y' if minimum == 1 else 'ies'}"
            )
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown field", "unknown-field")


def _address(value: Any, fail: Any) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise fail("expected a 0x-prefixed 20-byte hex address")
    return value.lower()


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) into its parts; ValueError with a reason."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError('expected "host:port"')
    host, _, port_text = text.rpartition(":")
    if not _HOST.fullmatch(host):
        raise ValueError(f'expected "host:port" with a valid host, not {host!r}')
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError('expected "host:port" with a port 1..65535')
    return host, int(port_text)


def _hostport(value: Any, fail: Any) -> str:
    try:
        parse_hostport(value)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return str(value)


# ------------------------------------------------------------------ consortium.json


@dataclass(frozen=True)
class NodeEntry:
    """One node of the consortium's node list: a validator or a member, with its identity."""

    name: str
    address: str  # 0x-hex, lower case: the node identity key's address
    role: str  # "validator" | "member"
    rpc: str  # "host:port"
    p2p: str  # "host:port"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "role": self.role,
            "rpc": self.rpc,
            "p2p": self.p2p,
        }


@dataclass(frozen=True)
class ConsortiumTerms:
    """``consortium.json``: what every node of the consortium agrees on."""

    chain_id: int
    validators: list[str]
    genesis_node: str
    nodes: list[NodeEntry]
    measurements: list[str]
    fork: str = "osaka"
    gas_limit: int = 30_000_000
    genesis_timestamp: int = 0
    alloc: dict[str, str] = field(default_factory=dict)  # address -> balance in wei (decimal)
    privacy: str = "open"
    validation: str = "attested-diff"
    block_period: float = 1
    # QBFT's round-0 timer (Besu's QBFT examples use a 4 s request timeout): it bounds the
    # proposer's build budget (docs/qbft.md, "Block size and the round timer")
    round_timeout: float = 4.0
    max_round_timeout: float = 30.0
    epoch_period: int = 86_400
    platforms: list[str] = field(default_factory=lambda: ["virtual"])
    allow_virtual: bool = True
    # governance (docs/GOVERNANCE.md): absent from the file when there are no members, so
    # terms written before governance keep their canonical JSON (and their genesis hash)
    members: list[dict[str, Any]] = field(default_factory=list)
    recovery_threshold: int | None = None
    constitution: dict[str, Any] | None = None
    # "open", or "opening": users may not transact until the members vote open_network
    service: str | None = None
    version: int = CONFIG_VERSION

    # -------------------------------------------------------------- reading

    @classmethod
    def from_dict(cls, data: Any, file: str = "consortium.json") -> ConsortiumTerms:
        r = _Reader(file, data)
        version = r.integer("version", 0, 2**31)
        if version != CONFIG_VERSION:
            raise r.fail("version", f"unsupported version {version} (this release reads 1)")
        chain_id = r.integer("chainId", 1, _MAX_U64)
        fork = r.choice("fork", FORK_NAMES)
        gas_limit = r.integer("gasLimit", 5000, 2**63 - 1)
        genesis_timestamp = r.integer("genesisTimestamp", 0, _MAX_U64)

        alloc_reader = r.sub("alloc")
        alloc: dict[str, str] = {}
        for key, value in alloc_reader.data.items():
            where = alloc_reader.name(key)
            address = _address(key, lambda reason, w=where: ConfigError(file, w, reason))
            if address in alloc:
                raise ConfigError(file, where, "duplicate address (case-insensitively)")
            if (
                not isinstance(value, str)
                or not value.isdigit()
                or not value.isascii()
                or int(value) > _MAX_WEI
            ):
                raise ConfigError(file, where, "expected a balance in wei as a decimal string")
            alloc[address] = value

        privacy = r.choice("privacy", PRIVACY_MODES)
        validation = r.choice("validation", VALIDATION_RULES)
        # header timestamps are whole seconds and strictly increase: a shorter period would
        # run the chain ahead of the clock until validators refuse its proposals as future
        block_period = r.number("blockPeriod", 1, 3600)
        round_timeout = r.number("roundTimeout", 0.001, 3600)
        max_round_timeout = r.number("maxRoundTimeout", 0.001, 86_400)
        if max_round_timeout < round_timeout:
            raise r.fail("maxRoundTimeout", "must be at least roundTimeout")
        epoch_period = r.integer("epochPeriod", 1, 2**31)

        validators: list[str] = []
        for i, value in enumerate(r.array("validators", 1)):
            where = f"validators[{i}]"
            address = _address(value, lambda reason, w=where: ConfigError(file, w, reason))
            if address in validators:
                raise ConfigError(file, where, "listed twice")
            validators.append(address)
        genesis_node = r.address("genesisNode")
        if genesis_node not in validators:
            raise r.fail("genesisNode", "must be one of the validators", "inconsistent")

        nodes: list[NodeEntry] = []
        for i, value in enumerate(r.array("nodes", 1)):
            n = _Reader(file, value, f"nodes[{i}]")
            name = n.string("name")
            if not _NAME.fullmatch(name):
                raise n.fail("name", "expected letters, digits, '.', '_' or '-' (at most 64)")
            entry = NodeEntry(
                name=name,
                address=n.address("address"),
                role=n.choice("role", IDENTITY_ROLES),
                rpc=_hostport(n.raw("rpc"), lambda reason, n=n: n.fail("rpc", reason)),
                p2p=_hostport(n.raw("p2p"), lambda reason, n=n: n.fail("p2p", reason)),
            )
            n.done()
            for other in nodes:
                for attr in ("name", "address", "p2p", "rpc"):
                    if getattr(other, attr) == getattr(entry, attr):
                        raise n.fail(attr, f"also used by node {other.name!r}", "inconsistent")
            nodes.append(entry)
        listed = {e.address for e in nodes if e.role == "validator"}
        for i, address in enumerate(validators):
            if address not in listed:
                raise ConfigError(
                    file, f"validators[{i}]", "has no node of role validator", "inconsistent"
                )
        for i, entry in enumerate(nodes):
            if entry.role == "validator" and entry.address not in validators:
                raise ConfigError(
                    file, f"nodes[{i}].role", "validator not in validators", "inconsistent"
                )

        measurements: list[str] = []
        for i, value in enumerate(r.array("measurements", 1)):
            if not isinstance(value, str) or not _HASH32.fullmatch(value):
                raise ConfigError(
                    file, f"measurements[{i}]", "expected a 0x-prefixed 32-byte hex measurement"
                )
            if value.lower() in measurements:
                raise ConfigError(file, f"measurements[{i}]", "listed twice")
            measurements.append(value.lower())
        platforms: list[str] = []
        for i, value in enumerate(r.array("platforms", 1)):
            if not isinstance(value, str) or not _PLATFORM.fullmatch(value):
                raise ConfigError(file, f"platforms[{i}]", "expected a platform name")
            if value in platforms:
                raise ConfigError(file, f"platforms[{i}]", "listed twice")
            platforms.append(value)
        allow_virtual = r.boolean("allowVirtual")
        if ("virtual" in platforms) != allow_virtual:
            raise r.fail(
                "allowVirtual",
                'must be true exactly when platforms lists "virtual"',
                "inconsistent",
            )
        members, recovery_threshold, constitution, service = _governance_fields(r, data)
        r.done()
        return cls(
            version=version,
            chain_id=chain_id,
            fork=fork,
            gas_limit=gas_limit,
            genesis_timestamp=genesis_timestamp,
            alloc=alloc,
            privacy=privacy,
            validation=validation,
            block_period=block_period,
            round_timeout=round_timeout,
            max_round_timeout=max_round_timeout,
            epoch_period=epoch_period,
            validators=validators,
            genesis_node=genesis_node,
            nodes=nodes,
            measurements=measurements,
            platforms=platforms,
            allow_virtual=allow_virtual,
            members=members,
            recovery_threshold=recovery_threshold,
            constitution=constitution,
            service=service,
        )

    @classmethod
    def load(cls, path: str | Path) -> ConsortiumTerms:
        return cls.from_dict(_read_json(path), str(path))

    # -------------------------------------------------------------- writing

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object, in the documented key order."""
        return {
            "version": self.version,
            "chainId": self.chain_id,
            "fork": self.fork,
            "gasLimit": self.gas_limit,
            "genesisTimestamp": self.genesis_timestamp,
            "alloc": dict(self.alloc),
            "privacy": self.privacy,
            "validation": self.validation,
            "blockPeriod": self.block_period,
            "roundTimeout": self.round_timeout,
            "maxRoundTimeout": self.max_round_timeout,
            "epochPeriod": self.epoch_period,
            "validators": list(self.validators),
            "genesisNode": self.genesis_node,
            "nodes": [n.to_dict() for n in self.nodes],
            "measurements": list(self.measurements),
            "platforms": list(self.platforms),
            "allowVirtual": self.allow_virtual,
            **self._governance_dict(),
        }

    def _governance_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.members:
            out["members"] = [dict(m) for m in self.members]
        if self.recovery_threshold is not None:
            out["recoveryThreshold"] = self.recovery_threshold
        if self.constitution is not None:
            out["constitution"] = self.constitution
        if self.service is not None:
            out["service"] = self.service
        return out

    def canonical_json(self) -> bytes:
        """What the genesis block's extraData hashes (keccak256): the terms as ``to_dict``,
        ``json.dumps(terms, sort_keys=True, separators=(",", ":"))``, UTF-8 (all ASCII)."""
        return canonical_json(self.to_dict())

    def to_open_terms(self) -> dict[str, Any]:
        """The dict the enclave's ``Open.consortium`` takes: the terms as in the file (the
        enclave hashes its canonical JSON into the genesis extraData)."""
        return self.to_dict()

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    # -------------------------------------------------------------- questions

    def node(self, name: str) -> NodeEntry | None:
        return next((n for n in self.nodes if n.name == name), None)

    def node_by_address(self, address: str) -> NodeEntry | None:
        address = address.lower()
        return next((n for n in self.nodes if n.address == address), None)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, ASCII: the same bytes from the same terms on every node."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


# ------------------------------------------------------------------ node.json


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}


DEFAULT_SNAPSHOT_THRESHOLD = 256


@dataclass(frozen=True)
class NodeFile:
    """``node.json``: one node's settings. ``path`` is where it was read from (or will be
    written to); ``consortium`` and ``data_dir`` are relative to its directory."""

    name: str
    role: str  # "validator" | "member" | "observer"
    rpc: Endpoint
    p2p: Endpoint
    consortium: str = "../consortium.json"
    data_dir: str = "data"
    peers: list[str] = field(default_factory=list)  # "host:port" of other nodes' p2p
    enclave: str = "process"  # "process" | "inprocess"
    privacy: str = "open"
    # catch-up: a node this many finalized blocks (or more) behind starts from a sealed
    # snapshot of a peer's state instead of replaying each block; 0 never does
    snapshot_threshold: int = DEFAULT_SNAPSHOT_THRESHOLD
    version: int = CONFIG_VERSION
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: Any, file: str = "node.json", path: Path | None = None) -> NodeFile:
        r = _Reader(file, data)
        version = r.integer("version", 0, 2**31)
        if version != CONFIG_VERSION:
            raise r.fail("version", f"unsupported version {version} (this release reads 1)")
        name = r.string("name")
        if not _NAME.fullmatch(name):
            raise r.fail("name", "expected letters, digits, '.', '_' or '-' (at most 64)")
        role = r.choice("role", ROLES)
        consortium = r.string("consortium")
        data_dir = r.string("dataDir")
        endpoints: dict[str, Endpoint] = {}
        for key in ("rpc", "p2p"):
            e = r.sub(key)
            host = e.string("host")
            if not _HOST.fullmatch(host):
                raise e.fail("host", "expected a host name or IP address")
            endpoints[key] = Endpoint(host, e.integer("port", 1, 65535))
            e.done()
        if endpoints["rpc"].port == endpoints["p2p"].port:
            raise r.fail("p2p.port", "must differ from rpc.port", "inconsistent")
        peers: list[str] = []
        for i, value in enumerate(r.array("peers")):
            where = f"peers[{i}]"
            peer = _hostport(value, lambda reason, w=where: ConfigError(file, w, reason))
            if peer in peers:
                raise ConfigError(file, where, "listed twice")
            if peer == f"{endpoints['p2p']}":
                raise ConfigError(file, where, "is this node's own p2p address", "inconsistent")
            peers.append(peer)
        enclave = r.choice("enclave", ENCLAVE_RUNTIMES)
        privacy = r.choice("privacy", PRIVACY_MODES)
        snapshot_threshold = r.integer(
            "snapshotThreshold", 0, 2**31, default=DEFAULT_SNAPSHOT_THRESHOLD
        )
        r.done()
        return cls(
            snapshot_threshold=snapshot_threshold,
            version=version,
            name=name,
            role=role,
            consortium=consortium,
            data_dir=data_dir,
            rpc=endpoints["rpc"],
            p2p=endpoints["p2p"],
            peers=peers,
            enclave=enclave,
            privacy=privacy,
            path=path,
        )

    @classmethod
    def load(cls, path: str | Path) -> NodeFile:
        path = Path(path)
        return cls.from_dict(_read_json(path), str(path), path.absolute())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "role": self.role,
            "consortium": self.consortium,
            "dataDir": self.data_dir,
            "rpc": self.rpc.to_dict(),
            "p2p": self.p2p.to_dict(),
            "peers": list(self.peers),
            "enclave": self.enclave,
            "privacy": self.privacy,
            **(
                {}
                if self.snapshot_threshold == DEFAULT_SNAPSHOT_THRESHOLD
                else {"snapshotThreshold": self.snapshot_threshold}
            ),
        }

    def save(self, path: str | Path | None = None) -> None:
        target = path if path is not None else self.path
        if target is None:
            raise ValueError("NodeFile.save: no path")
        write_json(target, self.to_dict())

    # -------------------------------------------------------------- paths

    @property
    def base(self) -> Path:
        """The directory relative paths are resolved against (the file's own)."""
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()

    @property
    def consortium_path(self) -> Path:
        return self.resolve(self.consortium)

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def peer_addresses(self) -> list[tuple[str, int]]:
        return [parse_hostport(p) for p in self.peers]

    @property
    def has_identity(self) -> bool:
        return self.role in IDENTITY_ROLES

    # -------------------------------------------------------------- with the terms

    def load_terms(self) -> ConsortiumTerms:
        """Read the consortium's terms this file names and check this node against them."""
        terms = ConsortiumTerms.load(self.consortium_path)
        self.check_against(terms)
        return terms

    def check_against(self, terms: ConsortiumTerms) -> None:
        """This node's settings agree with the terms: a listed node with the same role and
        addresses (an observer: not listed; on a governed chain, a node made by ``add-node``
        may be unlisted too), and the consortium's privacy mode."""
        file = str(self.path) if self.path is not None else "node.json"
        entry = terms.node(self.name)
        if self.role == "observer":
            if entry is not None:
                raise ConfigError(
                    file, "name", f"{self.name!r} is a {entry.role} in the terms", "inconsistent"
                )
        elif entry is None:
            if not terms.members:  # governed: a new node joins by vote (add-node)
                raise ConfigError(
                    file, "name", f"{self.name!r} is not in the terms' nodes", "inconsistent"
                )
        else:
            if entry.role != self.role:
                raise ConfigError(
                    file, "role", f"the terms make {self.name!r} a {entry.role}", "inconsistent"
                )
            for key, mine in (("p2p.port", self.p2p), ("rpc.port", self.rpc)):
                theirs = entry.p2p if key == "p2p.port" else entry.rpc
                if parse_hostport(theirs)[1] != mine.port:
                    raise ConfigError(
                        file, key, f"the terms list {self.name!r} at {theirs}", "inconsistent"
                    )
        if self.privacy != terms.privacy:
            raise ConfigError(
                file,
                "privacy",
                f'the consortium\'s privacy is "{terms.privacy}"; every node must use it',
                "inconsistent",
            )


# ------------------------------------------------------------------ files


def _read_json(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such file", "unreadable") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read it ({exc})", "unreadable") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ConfigError(str(path), "", f"not valid JSON ({exc})", "not-json") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def write_json(path: str | Path, value: Any) -> None:
    """Stable, pretty JSON (2-space indent, key order as given, newline at the end), written
    to a temporary file beside ``path`` and renamed over it."""
    path = Path(path)
    text = json.dumps(value, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
