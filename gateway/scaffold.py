"""``coco-gateway init``: make a consortium's files and its nodes' identities.

For every validator and member it makes ``DIR/<name>/data`` and the node identity key inside
that node's own enclave (the ``MakeIdentity`` message: the key is made and sealed there, and
only its address comes out). With the terms known, the genesis node's enclave makes the
consortium secret, sealed beside its identity (``MakeIdentity`` with the terms): the only
place it is ever made; every other node receives it in the join. Then it writes each node's
``DIR/<name>/node.json`` and, last, ``DIR/consortium.json`` (the public terms), so a directory
with a ``consortium.json`` is a finished consortium and an interrupted init can simply be run
again (the identities already made are reopened, not replaced).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import (
    ConfigError,
    ConsortiumTerms,
    Endpoint,
    NodeEntry,
    NodeFile,
    parse_hostport,
)
from gateway.enclave.messages import DEFAULT_FORK, MakeIdentity
from gateway.errors import RpcError
from gateway.p2p.tls import TlsError, ensure_identity

TERMS_FILE = "consortium.json"
NODE_FILE = "node.json"
DATA_DIR = "data"
_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")
_ETHER = re.compile(r"(\d+)\s*(ether|eth)", re.I)


class InitError(Exception):
    """init cannot go on: the message says why and what to do."""


@dataclass
class InitOptions:
    directory: Path
    validators: int = 4
    members: int = 0
    observers: int = 0
    chain_id: int = 1337
    fork: str = DEFAULT_FORK
    validation: str = "attested-diff"
    block_period: float = 1
    privacy: str = "open"
    host: str = "127.0.0.1"
    base_rpc_port: int = 8545
    base_p2p_port: int = 30301
    alloc: dict[str, str] = field(default_factory=dict)  # address (lower case) -> wei
    dev_alloc: bool = False
    measurements: list[str] = field(default_factory=list)
    genesis_timestamp: int | None = None  # None: now
    gov_members: list[dict[str, Any]] = field(default_factory=list)  # governance members
    recovery_threshold: int | None = None
    opening: bool = False  # the service starts "opening" (members vote open_network)


@dataclass(frozen=True)
class PlannedNode:
    name: str
    role: str
    rpc_port: int
    p2p_port: int


@dataclass(frozen=True)
class Identity:
    """What a node's enclave says about the identity it made: its address, the enclave's
    measurement and platform."""

    address: str
    measurement: str | None
    platform: str
    consortium_secret: bool = False  # its data directory holds the sealed consortium secret


@dataclass
class InitResult:
    directory: Path
    terms: ConsortiumTerms
    nodes: dict[str, NodeFile]
    dev_accounts: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_alloc(text: str) -> tuple[str, str]:
    """``ADDR=WEI`` (or ``ADDR=100ether``): the address in lower case and a decimal wei."""
    address, sep, amount = text.partition("=")
    if not sep or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise ValueError(f"{text!r}: expected ADDR=WEI with a 0x-prefixed 20-byte address")
    amount = amount.strip().replace("_", "")
    ether = _ETHER.fullmatch(amount)
    if ether:
        wei = int(ether.group(1)) * 10**18
    elif amount.isdigit() and amount.isascii():
        wei = int(amount)
    else:
        raise ValueError(f"{text!r}: the amount is wei (digits) or <n>ether")
    if wei >= 2**256:
        raise ValueError(f"{text!r}: the amount does not fit in 256 bits")
    return address.lower(), str(wei)


def plan_nodes(opts: InitOptions) -> list[PlannedNode]:
    """node1..nodeN (validators, then members), observer1..K; node i at base port + i - 1,
    observers after the others."""
    if opts.validators < 1:
        raise InitError("a consortium needs at least one validator (--validators)")
    if opts.members < 0 or opts.observers < 0:
        raise InitError("--members and --observers count nodes: 0 or more")
    total = opts.validators + opts.members + opts.observers
    if total > 256:
        raise InitError(f"{total} nodes is more than this command makes (256)")
    first_member = opts.validators + 1
    roles = (
        [("validator", f"node{i}") for i in range(1, first_member)]
        + [("member", f"node{i}") for i in range(first_member, first_member + opts.members)]
        + [("observer", f"observer{i}") for i in range(1, opts.observers + 1)]
    )
    planned = [
        PlannedNode(name, role, opts.base_rpc_port + i, opts.base_p2p_port + i)
        for i, (role, name) in enumerate(roles)
    ]
    rpc = {p.rpc_port for p in planned}
    p2p = {p.p2p_port for p in planned}
    for label, ports, base in (
        ("--base-rpc-port", rpc, opts.base_rpc_port),
        ("--base-p2p-port", p2p, opts.base_p2p_port),
    ):
        if base < 1 or max(ports) > 65535:
            raise InitError(f"{label} {base}: the ports of {total} nodes must lie in 1..65535")
    if rpc & p2p:
        raise InitError(
            f"the RPC ports {min(rpc)}..{max(rpc)} and the p2p ports {min(p2p)}..{max(p2p)} "
            "overlap: choose --base-rpc-port and --base-p2p-port further apart"
        )
    return planned


def build_files(
    opts: InitOptions,
    planned: list[PlannedNode],
    identities: dict[str, Identity],
    measurements: list[str],
    alloc: dict[str, str],
) -> tuple[ConsortiumTerms, dict[str, NodeFile]]:
    """The terms and the node files, from the plan and the identities the enclaves made."""
    host = opts.host
    listed = [p for p in planned if p.role != "observer"]
    entries = [
        NodeEntry(
            name=p.name,
            address=identities[p.name].address,
            role=p.role,
            rpc=f"{host}:{p.rpc_port}",
            p2p=f"{host}:{p.p2p_port}",
        )
        for p in listed
    ]
    validators = [e.address for e in entries if e.role == "validator"]
    platforms = sorted({identities[p.name].platform for p in listed} | {"virtual"})
    terms = ConsortiumTerms(
        chain_id=opts.chain_id,
        fork=opts.fork,
        genesis_timestamp=(
            int(time.time()) if opts.genesis_timestamp is None else opts.genesis_timestamp
        ),
        alloc=alloc,
        privacy=opts.privacy,
        validation=opts.validation,
        block_period=_tidy(opts.block_period),
        validators=validators,
        genesis_node=validators[0],
        nodes=entries,
        measurements=measurements,
        platforms=platforms,
        allow_virtual="virtual" in platforms,
        members=list(opts.gov_members),
        recovery_threshold=opts.recovery_threshold if opts.gov_members else None,
        # a governed consortium says how its service starts: open unless init --opening
        service=("opening" if opts.opening else "open") if opts.gov_members else None,
    )
    try:  # the loader's checks, on what is about to be written
        terms = ConsortiumTerms.from_dict(terms.to_dict(), TERMS_FILE)
    except ConfigError as exc:
        raise InitError(f"the options make invalid terms: {exc}") from None
    nodes: dict[str, NodeFile] = {}
    for p in planned:
        peers = [f"{host}:{q.p2p_port}" for q in listed if q.name != p.name]
        nodes[p.name] = NodeFile(
            name=p.name,
            role=p.role,
            consortium=f"../{TERMS_FILE}",
            data_dir=DATA_DIR,
            rpc=Endpoint(host, p.rpc_port),
            p2p=Endpoint(host, p.p2p_port),
            peers=peers,
            enclave="process",
            privacy=opts.privacy,
            path=opts.directory / p.name / NODE_FILE,
        )
    return terms, nodes


def _tidy(seconds: float) -> float:
    """1.0 is written 1: the file reads as a person would write it."""
    return int(seconds) if float(seconds).is_integer() else seconds


async def make_identity(data_dir: Path, terms: dict[str, Any] | None = None) -> Identity:
    """Start an enclave process on ``data_dir``, have it make (or reopen) the node identity
    key inside, and return what it says about it. With the consortium's ``terms``, the
    genesis node's enclave also makes the consortium secret there."""
    from gateway.enclave.runtime import ProcessEnclave

    enclave = ProcessEnclave()
    try:
        answer = await enclave.start_identity(
            MakeIdentity(data_dir=str(data_dir), consortium=terms)
        )
    finally:
        await enclave.close()
    if not isinstance(answer, dict) or not isinstance(answer.get("address"), bytes):
        raise InitError(f"the enclave on {data_dir} did not answer MakeIdentity with an address")
    address = answer["address"]
    measurement = answer.get("measurement")
    if len(address) != 20:
        raise InitError(f"the enclave on {data_dir} answered a {len(address)}-byte address")
    return Identity(
        address="0x" + address.hex(),
        measurement="0x" + measurement.hex() if isinstance(measurement, bytes) else None,
        platform=str(answer.get("platform") or "virtual"),
        consortium_secret=answer.get("consortiumSecret") is True,
    )


def make_consortium_secret(directory: Path, terms: ConsortiumTerms) -> str:
    """Have the genesis node's enclave make the consortium secret, sealed beside its identity
    in its data directory; the genesis node's name."""
    genesis = terms.node_by_address(terms.genesis_node)
    if genesis is None:
        raise InitError(f"the genesis node {terms.genesis_node} is not in the node list")
    data = directory / genesis.name / DATA_DIR
    try:
        made = asyncio.run(make_identity(data, terms.to_open_terms()))
    except RpcError as exc:
        raise InitError(
            f"{genesis.name}'s enclave could not make the consortium secret: {exc.message}"
        ) from None
    if made.address != terms.genesis_node or not made.consortium_secret:
        raise InitError(f"{genesis.name}'s enclave did not make the consortium secret")
    return genesis.name


async def make_identities(
    directory: Path, names: list[str], parallel: int = 2
) -> dict[str, Identity]:
    """Each named node's identity, made in its own enclave (``parallel`` enclaves at once)."""
    gate = asyncio.Semaphore(parallel)

    async def one(name: str) -> tuple[str, Identity]:
        data = directory / name / DATA_DIR
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        async with gate:
            try:
                return name, await make_identity(data)
            except RpcError as exc:
                raise InitError(
                    f"cannot make {name}'s identity in its enclave: {exc.message}"
                ) from None

    return dict(await asyncio.gather(*(one(n) for n in names)))


def local_measurement() -> str:
    """This installation's enclave measurement (what ``coco-gateway attest measure`` says)."""
    from gateway.enclave.keys import measurement

    return "0x" + measurement()[0].hex()


def init_consortium(opts: InitOptions) -> InitResult:
    """Make the consortium in ``opts.directory``; InitError when it cannot (nothing is
    overwritten: an existing consortium.json is refused)."""
    directory = opts.directory
    terms_path = directory / TERMS_FILE
    if terms_path.exists():
        raise InitError(
            f"{terms_path} exists: {directory} already holds a consortium. Run its nodes, or "
            "choose another --dir (remove the directory only if you mean to destroy that "
            "consortium's keys and chain)"
        )
    if directory.exists() and not directory.is_dir():
        raise InitError(f"{directory} exists and is not a directory")
    if opts.host in _WILDCARD_HOSTS:
        raise InitError(
            f"--host {opts.host!r}: the nodes' addresses go into the configs, where other nodes "
            "dial them: give an address they can reach (e.g. 127.0.0.1, or this machine's IP)"
        )
    try:
        parse_hostport(f"{opts.host}:1")
    except ValueError:
        raise InitError(f"--host {opts.host!r} is not a host name or IP address") from None
    if opts.opening and not opts.gov_members:
        raise InitError(
            "--opening needs members (--member or --dev-members): only members can vote "
            "open_network"
        )
    planned = plan_nodes(opts)  # node.json files without a consortium.json: an unfinished
    # init, whose files are written again (the identities already made are reopened)
    alloc = dict(opts.alloc)
    dev_accounts = 0
    if opts.dev_alloc:
        from gateway.devaccounts import DEV_BALANCE_WEI, DEV_MNEMONIC, derive

        accounts = derive(DEV_MNEMONIC)
        for account in accounts:
            alloc.setdefault(account.address.lower(), str(DEV_BALANCE_WEI))
        dev_accounts = len(accounts)
    measurements = [m.lower() for m in opts.measurements] or [local_measurement()]

    directory.mkdir(parents=True, exist_ok=True)
    identities = asyncio.run(
        make_identities(directory, [p.name for p in planned if p.role != "observer"])
    )
    terms, nodes = build_files(opts, planned, identities, measurements, alloc)
    make_consortium_secret(directory, terms)
    warnings = [
        f"{name}'s enclave reports measurement {identity.measurement}, which the terms' "
        "measurements do not list: that node will not be admitted to the consortium"
        for name, identity in identities.items()
        if identity.measurement is not None and identity.measurement not in terms.measurements
    ]
    for p in planned:
        if p.role == "observer":  # no identity; the data directory holds its public ledger
            (directory / p.name / DATA_DIR).mkdir(parents=True, exist_ok=True)
        # every node's p2p TLS key (0600) and self-signed certificate, held by the host
        try:
            ensure_identity(directory / p.name / DATA_DIR, p.name)
        except TlsError as exc:
            raise InitError(str(exc)) from None
        nodes[p.name].save()
    terms.save(terms_path)  # last: its presence says the consortium is complete
    return InitResult(directory, terms, nodes, dev_accounts, warnings)


def summary(result: InitResult, command: str = "coco-gateway") -> str:
    """What init made and how to start each node."""
    terms, directory = result.terms, result.directory
    counts = {
        r: sum(1 for n in result.nodes.values() if n.role == r)
        for r in ("validator", "member", "observer")
    }
    lines = [
        f"Made a consortium in {directory}:",
        f"  chain id {terms.chain_id}, fork {terms.fork}, validation {terms.validation}, "
        f"privacy {terms.privacy}, a block every {terms.block_period:g} s",
        f"  {counts['validator']} validator(s), {counts['member']} member(s), "
        f"{counts['observer']} observer(s); quorum {-(-2 * counts['validator'] // 3)} of "
        f"{counts['validator']}",
        f"  {directory / TERMS_FILE}: the terms (public; the genesis block commits to them)",
        "",
        f"  {'name':<11} {'role':<9} {'address':<42}  {'rpc':<21} p2p",
    ]
    for name, node in result.nodes.items():
        entry = terms.node(name)
        address = entry.address if entry is not None else "(none: observers have no identity)"
        lines.append(
            f"  {name:<11} {node.role:<9} {address:<42}  http://{node.rpc!s:<14} {node.p2p}"
        )
    if result.dev_accounts:
        lines += [
            "",
            f"  --dev-alloc: the {result.dev_accounts} dev mnemonic accounts are funded "
            "(their keys are public: development only)",
        ]
    for warning in result.warnings:
        lines += ["", f"  WARNING: {warning}"]
    if terms.allow_virtual:
        lines += [
            "",
            "  WARNING: allowVirtual is true: software (virtual) enclaves may join and",
            "  validate. A virtual enclave protects nothing against its machine's operator:",
            "  whoever runs such a node can read the consortium's confidential state. Use it",
            "  for development only; for production list hardware platforms and measurements.",
        ]
    lines += [
        "",
        "  Secret: each node's data directory (<name>/data: its sealing key, its sealed",
        "  identity key and, once it holds it, the sealed consortium secret). The genesis node's",
        "  enclave made the consortium secret just now; the others receive it when they join.",
        "  Keep each directory on its node's machine only, and back up sealing.key,",
        "  node-key.sealed and consortium-secret.sealed: the ledger can be rebuilt from peers.",
        "",
        "Start every node (each in its own terminal or service):",
    ]
    for name in result.nodes:
        lines.append(f"  {command} node --config {directory / name / NODE_FILE}")
    lines += [
        "",
        "or all of them here, with a live status view:",
        f"  {command} cluster up --dir {directory}",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- a new node


@dataclass
class AddedNode:
    node_file: NodeFile
    identity: Identity
    governed: bool


def add_node(
    directory: Path,
    name: str,
    *,
    role: str = "validator",
    host: str = "127.0.0.1",
    rpc_port: int = 8545,
    p2p_port: int = 30301,
) -> AddedNode:
    """A node for an existing consortium (docs/GOVERNANCE.md, "Joins"): ``DIR/NAME/data``
    with its identity key made in its enclave, its p2p TLS identity, and ``DIR/NAME/node.json``
    dialling every node of ``DIR/consortium.json``, which is left as it is (it fixes the
    genesis block). On a governed chain the node joins once the members vote ``trust_node``
    for its address; without governance it cannot join (the node list is the terms')."""
    terms_path = directory / TERMS_FILE
    try:
        terms = ConsortiumTerms.load(terms_path)
    except ConfigError as exc:
        raise InitError(str(exc)) from None
    if role not in ("validator", "member"):
        raise InitError(f"--role {role!r}: a new node is a validator or a member")
    if any(n.name == name for n in terms.nodes) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise InitError(f"--name {name!r}: a new name (letters, digits, _ . -) not in the terms")
    node_dir = directory / name
    if (node_dir / NODE_FILE).exists():
        raise InitError(f"{node_dir / NODE_FILE} exists: that node was made already")
    if rpc_port == p2p_port:
        raise InitError("--rpc-port and --p2p-port must differ")
    data = node_dir / DATA_DIR
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    try:
        identity = asyncio.run(make_identity(data))
    except RpcError as exc:
        raise InitError(f"cannot make {name}'s identity in its enclave: {exc.message}") from None
    try:
        ensure_identity(data, name)
    except TlsError as exc:
        raise InitError(str(exc)) from None
    node_file = NodeFile(
        name=name,
        role=role,
        consortium=f"../{TERMS_FILE}",
        data_dir=DATA_DIR,
        rpc=Endpoint(host, rpc_port),
        p2p=Endpoint(host, p2p_port),
        peers=[n.p2p for n in terms.nodes],
        enclave="process",
        privacy=terms.privacy,
        path=node_dir / NODE_FILE,
    )
    node_file.save()
    return AddedNode(node_file, identity, bool(terms.members))
