"""The ``coco-gateway`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from gateway import __version__
from gateway.enclave.messages import DEFAULT_FORK, FORK_NAMES
from gateway.govcli import add_init_options, members_of
from gateway.govcli import add_parser as add_gov_parser

N = TypeVar("N", int, float)  # a number an option takes


def _dev(args: argparse.Namespace) -> int:
    from gateway.startup import StartupError, prepare

    # checked first, before the slow imports: a refusal is quick, and writes nothing
    try:
        ready = prepare(args.host, args.port, Path(args.data_dir), args.chain_id, args.fork)
    except StartupError as exc:
        print(f"coco-gateway: cannot start: {exc}", file=sys.stderr)
        return 2

    from gateway.devaccounts import DEV_BALANCE_WEI, DEV_MNEMONIC, derive
    from gateway.node import NodeConfig
    from gateway.server.app import make_app

    chosen = ready.chain  # None: a new chain with the node's default
    config = NodeConfig(
        host=args.host,
        port=ready.port,
        chain_id=NodeConfig.chain_id if chosen.chain_id is None else chosen.chain_id,
        data_dir=Path(args.data_dir),
        block_time=args.block_time,
        dev=True,
        dev_accounts=args.accounts,
        fork=NodeConfig.fork if chosen.fork is None else chosen.fork,
        enclave_runtime=args.enclave,
        durable_fsync=args.fsync,
        epoch_period=args.epoch_period,
        require_encryption=args.require_encryption,
        seal_storage=not args.insecure_plaintext_storage,
        privacy=args.privacy,
        public_balances=args.public_balances,
        lock_fd=ready.lock.fd,
    )
    accounts = derive(DEV_MNEMONIC, args.accounts)
    url, everywhere = ready.url, ready.listening_note
    lines = [
        "",
        f"coco-gateway v{__version__}: development node (single validator, dev accounts unlocked)",
        "",
        "WARNING: this node runs a software (virtual) enclave: it protects nothing against",
        "         the machine's operator. Use it for development only.",
        "",
        "Available accounts",
        "==================",
    ]
    ether = DEV_BALANCE_WEI // 10**18
    lines += [f"({i}) {a.address} ({ether} ETH)" for i, a in enumerate(accounts)]
    lines += ["", "Private keys", "=================="]
    lines += [f"({i}) 0x{a.private_key.hex()}" for i, a in enumerate(accounts)]
    privacy = (
        "strict: reads answered only to their owners (personal RPC URLs, signed queries)"
        if args.privacy == "strict"
        else "open: every read answered, as on Anvil (--privacy strict to enforce)"
    )
    storage = (
        "PLAINTEXT (--insecure-plaintext-storage): for tests only"
        if args.insecure_plaintext_storage
        else "sealed (AES-256-GCM under the enclave's storage key)"
    )
    blocks = (
        "on each transaction (automine)" if args.block_time <= 0 else f"every {args.block_time:g} s"
    )
    lines += [
        "",
        f"Mnemonic:       {DEV_MNEMONIC}",
        "Derivation:     m/44'/60'/0'/0/<index>",
        "",
        f"Chain ID:       {config.chain_id}",
        f"Data directory: {Path(args.data_dir).resolve()}",
        f"Blocks:         {blocks}",
        "",
        f"Privacy:        {privacy}",
        f"Storage:        {storage}",
        "",
        f"RPC URL:        {url}" + (f" ({everywhere})" if everywhere else ""),
        f"WebSocket:      {url.replace('http', 'ws', 1)}",
        f"Sign in:        {url}/ in a browser with a wallet, for a personal RPC URL",
        "",
        f"Listening on {url} (Ctrl-C to stop)",
    ]
    return _serve(make_app(config), ready.sockets, "\n".join(lines), ready.close)


def _node(args: argparse.Namespace) -> int:
    """Run one consortium node (validator, member or observer) from its node.json."""
    from gateway.consortium_node import SettingsError, load_settings
    from gateway.startup import StartupError, bind_listeners, check_data_dir, lock_data_dir

    try:
        settings = load_settings(Path(args.config).resolve())
    except SettingsError as exc:
        print(f"coco-gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        sockets = bind_listeners(settings.rpc_host, settings.rpc_port)
        try:
            check_data_dir(settings.data_dir)
            lock = lock_data_dir(settings.data_dir)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        lock.announce()
    except StartupError as exc:
        print(f"coco-gateway: cannot start: {exc}", file=sys.stderr)
        return 2

    from gateway.consortium_node import ConsortiumNode, ObserverNode
    from gateway.node import Node, NodeConfig
    from gateway.server.app import make_app

    settings.recover = bool(getattr(args, "recover", False))
    config = settings.node_config(lock_fd=None if settings.role == "observer" else lock.fd)

    def factory(config: NodeConfig) -> Node:
        if settings.role == "observer":
            return ObserverNode(config, settings)
        return ConsortiumNode(config, settings)

    url = f"http://{settings.rpc_host}:{settings.rpc_port}"
    banner = (
        f"coco-gateway v{__version__}: consortium node {settings.name} ({settings.role}), "
        f"chain {settings.chain_id}\nRPC URL: {url}\n"
        f"P2P:     wss://{settings.p2p_host}:{settings.p2p_port}/p2p/v2\n"
        f"Data:    {settings.data_dir}\nListening (Ctrl-C to stop)"
    )

    def release() -> None:
        for sock in sockets:
            sock.close()
        lock.release()

    return _serve(make_app(config, factory), sockets, banner, release)


def _serve(app: Any, sockets: list[socket.socket], banner: str, release: Callable[[], None]) -> int:
    """Run ``app`` on ``sockets`` until it stops, then ``release`` what the node held; the
    banner comes once the node is up, so a failure to start is the only output."""
    from aiohttp import web

    from gateway.errors import RpcError
    from gateway.server.keys import NODE

    try:
        web.run_app(
            app,
            sock=sockets,
            print=lambda *_: print(banner, flush=True),
            access_log=None,
            shutdown_timeout=10,
        )
    except RpcError as exc:
        print(f"coco-gateway: cannot start: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"coco-gateway: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        release()
    node = app.get(NODE)
    return 0 if node is None else node.exit_code


def _verify_seal(args: argparse.Namespace) -> int:
    from gateway.sealcheck import NotChecked, SealCheckError, verify_block_seal

    try:
        report = asyncio.run(verify_block_seal(args.rpc, args.block))
    except NotChecked as exc:
        print(f"seal NOT checked: {exc}", file=sys.stderr)
        return 1
    except SealCheckError as exc:
        print(f"seal NOT valid: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


def _attest_measure(args: argparse.Namespace) -> int:
    from gateway.enclave.keys import measurement

    value, description = measurement()
    print(f"0x{value.hex()}  {description}")
    return 0


def _attest_verify(args: argparse.Namespace) -> int:
    from gateway.client.attest import explain, fetch_and_verify
    from gateway.protocol.attestation import AttestationError

    expected = bytes.fromhex(args.measurement.removeprefix("0x")) if args.measurement else None
    try:
        report = fetch_and_verify(
            args.url,
            expected_measurement=expected,
            expected_chain_id=args.chain_id,
            allow_virtual=args.allow_virtual,
        )
    except AttestationError as exc:
        print(f"attestation NOT accepted: {exc}", file=sys.stderr)
        return 1
    print(explain(report, measurement_checked=expected is not None))
    return 0


def _token(args: argparse.Namespace) -> int:
    from gateway.client.session import sign_in
    from gateway.protocol.attestation import AttestationError

    key = args.key or os.environ.get("COCO_PRIVATE_KEY")
    if not key:
        print("coco-gateway token: pass --key 0x... or set COCO_PRIVATE_KEY", file=sys.stderr)
        return 2
    try:
        session = sign_in(args.rpc, key)
    except AttestationError as exc:  # rpc_call's error type: the node refused or is down
        print(f"sign-in failed: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"sign-in failed: the key is not a valid private key ({exc})", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(session))
    else:
        print(session["rpcUrl"])
    return 0


def _init_options(args: argparse.Namespace, validators: int) -> Any:
    from gateway.scaffold import InitOptions

    return InitOptions(
        directory=Path(args.dir),
        validators=validators,
        members=args.members,
        observers=args.observers,
        chain_id=args.chain_id,
        fork=args.fork,
        validation=args.validation,
        block_period=args.block_period,
        privacy=args.privacy,
        host=args.host,
        base_rpc_port=args.base_rpc_port,
        base_p2p_port=args.base_p2p_port,
        alloc=dict(args.alloc),
        dev_alloc=args.dev_alloc,
        measurements=list(args.measurement),
        gov_members=members_of(args),
        recovery_threshold=args.recovery_threshold,
        opening=bool(getattr(args, "opening", False)),
    )


@contextlib.contextmanager
def _quiet_enclaves() -> Iterator[None]:
    """While init or add-node makes keys, the enclaves' own log lines (a sealing key made,
    ...) are noise: the command reports. Only for them: a node that ``cluster up`` starts
    after its init inherits this environment and must log as it always does."""
    before = os.environ.get("COCO_LOG_LEVEL")
    os.environ.setdefault("COCO_LOG_LEVEL", "WARNING")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COCO_LOG_LEVEL", None)
        else:
            os.environ["COCO_LOG_LEVEL"] = before


def _run_init(options: Any) -> int:
    from gateway.scaffold import InitError, init_consortium, summary

    try:
        with _quiet_enclaves():
            result = init_consortium(options)
    except InitError as exc:
        print(f"coco-gateway init: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coco-gateway init: interrupted (run it again to finish)", file=sys.stderr)
        return 130
    print(summary(result), flush=True)
    return 0


def _add_node(args: argparse.Namespace) -> int:
    from gateway.scaffold import InitError, add_node

    try:
        with _quiet_enclaves():
            added = add_node(
                Path(args.dir),
                args.name,
                role=args.role,
                host=args.host,
                rpc_port=args.rpc_port,
                p2p_port=args.p2p_port,
            )
    except InitError as exc:
        print(f"coco-gateway add-node: {exc}", file=sys.stderr)
        return 2
    address = added.identity.address
    print(f"node {args.name} ({args.role}): address {address}")
    print(f"  measurement {added.identity.measurement}, platform {added.identity.platform}")
    print(f"  config      {added.node_file.path}")
    print(f"  start it:   coco-gateway node --config {added.node_file.path}")
    if not added.governed:
        print(
            "  warning: this consortium has no governance (no members in consortium.json): "
            "its nodes admit only the nodes the terms list, so this node cannot join"
        )
        return 0
    trust = '{"address":"' + address + '"}'
    print("  it waits, pending, until the members vote it in:")
    print(f"    coco-gateway gov propose --rpc URL --key-file KEY --action 'trust_node={trust}'")
    if args.role == "validator":
        print(
            "  and, once it has joined and caught up, to make it seal blocks:\n"
            f"    coco-gateway gov propose --rpc URL --key-file KEY "
            f"--action 'add_validator={trust}'"
        )
    return 0


def _init(args: argparse.Namespace) -> int:
    from gateway.scaffold import TERMS_FILE

    existing = Path(args.dir) / TERMS_FILE
    if args.if_absent and existing.exists():
        print(f"coco-gateway init: {existing} exists; --if-absent: leaving it as it is")
        return 0
    return _run_init(_init_options(args, args.validators))


def _cluster_up(args: argparse.Namespace) -> int:
    from gateway.cluster import ClusterError, run_cluster
    from gateway.scaffold import TERMS_FILE

    directory = Path(args.dir)
    if not (directory / TERMS_FILE).exists():
        code = _run_init(_init_options(args, args.nodes))
        if code:
            return code
        print()
    else:
        print(f"cluster: using the consortium already in {directory} (init options ignored)")
    try:
        return asyncio.run(run_cluster(directory, grace=args.grace))
    except ClusterError as exc:
        print(f"coco-gateway cluster: {exc}", file=sys.stderr)
        return 2


def _cluster_status(args: argparse.Namespace) -> int:
    from gateway.cluster import ClusterError, status_once

    try:
        lines = asyncio.run(status_once(Path(args.dir)))
    except ClusterError as exc:
        print(f"coco-gateway cluster: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _number(text: str, parse: Callable[[str], N], low: float, high: float, what: str) -> N:
    """``text`` parsed and from ``low`` to ``high``, or an argparse error saying that
    ``text`` is not ``what``."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _count(text: str) -> int:
    return _number(text, int, 0, math.inf, "a count (0 or more)")


def _positive_count(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1")
    return value


def _seconds(text: str) -> float:
    return _number(text, float, 0, 3600, "a number of seconds (0 to 3600)")


def _chain_id(text: str) -> int:
    return _number(text, lambda t: int(t, 0), 1, 2**64 - 1, "a chain id (1 to 2**64-1)")


def _alloc(text: str) -> tuple[str, str]:
    from gateway.scaffold import parse_alloc

    try:
        return parse_alloc(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _measurement(text: str) -> str:
    value = text.lower() if text.startswith("0x") else "0x" + text.lower()
    if len(value) != 66 or any(c not in "0123456789abcdef" for c in value[2:]):
        raise argparse.ArgumentTypeError(f"{text!r} is not a 32-byte hex measurement")
    return value


def _add_init_options(p: argparse.ArgumentParser, default_dir: str | None) -> None:
    """The options of a new consortium (init, and cluster up when DIR has none)."""
    if default_dir is None:
        p.add_argument("--dir", required=True, help="the directory to make the consortium in")
    else:
        p.add_argument(
            "--dir", default=default_dir, help=f"the consortium's directory (default {default_dir})"
        )
    p.add_argument("--members", type=_count, default=0, help="non-validator members (default 0)")
    p.add_argument(
        "--observers", type=_count, default=0, help="observers: public data only (default 0)"
    )
    p.add_argument("--chain-id", type=_chain_id, default=1337, help="chain id (default 1337)")
    p.add_argument(
        "--fork", default=DEFAULT_FORK, choices=FORK_NAMES, help=f"default {DEFAULT_FORK}"
    )
    p.add_argument(
        "--validation",
        default="attested-diff",
        choices=["attested-diff", "re-execute"],
        help="how validators check a proposal: apply the attested producer's state diff "
        "(default), or re-execute its transactions",
    )
    p.add_argument(
        "--block-period", type=_seconds, default=1, help="seconds between blocks (default 1)"
    )
    p.add_argument(
        "--privacy",
        default="open",
        choices=["open", "strict"],
        help="who may read what, on every node (default open)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address every node listens on and is dialled at (default 127.0.0.1)",
    )
    p.add_argument(
        "--base-rpc-port", type=_port, default=8545, help="node1's RPC port (default 8545)"
    )
    p.add_argument(
        "--base-p2p-port", type=_port, default=30301, help="node1's p2p port (default 30301)"
    )
    p.add_argument(
        "--alloc",
        type=_alloc,
        action="append",
        default=[],
        metavar="ADDR=WEI",
        help="fund an account in genesis (repeatable; WEI in wei, or e.g. 100ether)",
    )
    p.add_argument(
        "--dev-alloc",
        action="store_true",
        help="fund the 10 well-known dev mnemonic accounts (public keys: development only)",
    )
    add_init_options(p)
    p.add_argument(
        "--measurement",
        type=_measurement,
        action="append",
        default=[],
        metavar="HEX",
        help="an enclave measurement allowed to join (repeatable; default: this "
        "installation's, as `coco-gateway attest measure` prints it)",
    )


def _epoch_period(text: str) -> int:
    """--epoch-period: a whole number of seconds, at least 1 (epochs divide time by it)."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{seconds} is not a positive number of seconds")
    return seconds


def _port(text: str) -> int:
    return _number(text, int, 0, 65535, "a TCP port (0 to 65535)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coco-gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"coco-gateway {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("COCO_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (COMMAND -h for more)"
    )

    dev = sub.add_parser("dev", help="run a single-node development chain")
    dev.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every IPv4 interface)",
    )
    dev.add_argument(
        "--port", type=_port, default=8545, help="TCP port for HTTP and WebSocket (default 8545)"
    )
    dev.add_argument(
        "--chain-id",
        type=int,
        default=None,
        help="chain id of a new chain (default 31337); an existing chain keeps its own, and "
        "a different value is refused",
    )
    dev.add_argument(
        "--data-dir", default="coco-data", help="where the chain lives (default ./coco-data)"
    )
    dev.add_argument(
        "--block-time",
        type=float,
        default=0.0,
        help="seconds between blocks; 0 (default) seals a block as soon as transactions arrive",
    )
    dev.add_argument("--accounts", type=int, default=10, help="number of funded dev accounts")
    dev.add_argument(
        "--fork",
        default=None,
        choices=FORK_NAMES,
        help=f"the execution rules of a new chain (default {DEFAULT_FORK}, solc's default "
        "target); an existing chain keeps its own, and a different value is refused",
    )
    dev.add_argument(
        "--enclave",
        default="process",
        choices=["process", "inprocess"],
        help="run the enclave in a child process (default) or on a thread of this process",
    )
    dev.add_argument(
        "--fsync", action="store_true", help="fsync every commit (survives power loss)"
    )
    dev.add_argument(
        "--require-encryption",
        action="store_true",
        help="refuse plain call data to contracts and plain deployments (value transfers pass)",
    )
    dev.add_argument(
        "--privacy",
        default="open",
        choices=["open", "strict"],
        help="strict: transactions, receipts, logs, balances and nonces only to their owners, "
        "eth_call with msg.sender zero unless signed in (default open, so every tool works)",
    )
    dev.add_argument(
        "--public-balances",
        action="store_true",
        help="with --privacy strict: let anyone read balances and nonces (the policy the "
        "security table allows to open); everything else stays private",
    )
    dev.add_argument(
        "--epoch-period",
        type=_epoch_period,
        default=86_400,
        help="seconds per transaction-key epoch (default one day)",
    )
    dev.add_argument(
        "--insecure-plaintext-storage",
        action="store_true",
        help="keep state, transactions and receipts unencrypted in the data directory "
        "(debugging only; such a directory is refused without this flag, and vice versa)",
    )
    dev.set_defaults(func=_dev)

    node = sub.add_parser(
        "node", help="run one consortium node (validator, member or observer) from node.json"
    )
    node.add_argument(
        "--config", required=True, help="the node's node.json (as coco-gateway init writes it)"
    )
    node.add_argument(
        "--recover",
        action="store_true",
        help="recovery mode: without a sealed consortium secret, take the members' recovery "
        "shares (coco-gateway gov recovery-share) until the threshold, besides waiting to "
        "join (docs/GOVERNANCE.md, Recovery)",
    )
    node.set_defaults(func=_node)

    attest = sub.add_parser("attest", help="attestation: measure this code, verify a node")
    attest_sub = attest.add_subparsers(
        dest="attest_command", required=True, metavar="ACTION", help="measure or verify"
    )
    measure = attest_sub.add_parser("measure", help="print the measurement of this installation")
    measure.set_defaults(func=_attest_measure)
    verify_att = attest_sub.add_parser("verify", help="fetch and verify a node's attestation")
    verify_att.add_argument("url", help="the node's RPC URL")
    verify_att.add_argument("--measurement", help="the expected measurement (0x-hex)")
    verify_att.add_argument("--chain-id", type=int, help="the expected chain id")
    verify_att.add_argument(
        "--allow-virtual",
        action="store_true",
        help="accept a software (virtual) enclave, for development",
    )
    verify_att.set_defaults(func=_attest_verify)

    token = sub.add_parser(
        "token", help="sign in with a private key and print a personal RPC URL (session)"
    )
    token.add_argument("--key", help="the account's private key (or set COCO_PRIVATE_KEY)")
    token.add_argument("--rpc", default="http://127.0.0.1:8545", help="the node's RPC URL")
    token.add_argument("--json", action="store_true", help="print the whole session as JSON")
    token.set_defaults(func=_token)

    init = sub.add_parser(
        "init", help="make a consortium: terms, node configs, identities in each enclave"
    )
    init.add_argument(
        "--validators", type=_positive_count, default=4, help="validator nodes (default 4)"
    )
    _add_init_options(init, None)
    init.add_argument(
        "--if-absent",
        action="store_true",
        help="do nothing (and succeed) when DIR already holds a consortium (for containers)",
    )
    init.set_defaults(func=_init)

    add = sub.add_parser(
        "add-node",
        help="make a new node for an existing consortium: its identity and node.json "
        "(consortium.json is not changed; on a governed chain the members trust it by vote)",
    )
    add.add_argument("--dir", required=True, help="the consortium's directory (consortium.json)")
    add.add_argument("--name", required=True, help="the new node's name (its directory in DIR)")
    add.add_argument(
        "--role",
        default="validator",
        choices=["validator", "member"],
        help="validator: seals blocks once the members add it as a validator (default); "
        "member: serves clients and follows the chain",
    )
    add.add_argument(
        "--host", default="127.0.0.1", help="the address it listens on (default 127.0.0.1)"
    )
    add.add_argument("--rpc-port", type=_port, default=8545, help="its RPC port (default 8545)")
    add.add_argument("--p2p-port", type=_port, default=30301, help="its p2p port (default 30301)")
    add.set_defaults(func=_add_node)

    cluster = sub.add_parser("cluster", help="run a local consortium as processes")
    cluster_sub = cluster.add_subparsers(
        dest="cluster_command", required=True, metavar="ACTION", help="up or status"
    )
    up = cluster_sub.add_parser(
        "up", help="init DIR if it holds no consortium, run every node, show their status"
    )
    up.add_argument(
        "--nodes",
        type=_positive_count,
        default=4,
        help="validators of a new consortium (default 4)",
    )
    _add_init_options(up, "coco-cluster")
    up.add_argument(
        "--grace",
        type=_seconds,
        default=20.0,
        help="seconds each node has to stop after SIGTERM before SIGKILL (default 20)",
    )
    up.set_defaults(func=_cluster_up)
    status = cluster_sub.add_parser("status", help="print the status of every node once")
    status.add_argument("--dir", default="coco-cluster", help="the consortium's directory")
    status.set_defaults(func=_cluster_status)

    verify = sub.add_parser("verify-seal", help="check a block's proof-of-authority seal")
    verify.add_argument("block", nargs="?", default="latest", help="block number or tag")
    verify.add_argument(
        "--rpc", default="http://127.0.0.1:8545", help="the node's RPC URL (default %(default)s)"
    )
    verify.set_defaults(func=_verify_seal)
    add_gov_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
