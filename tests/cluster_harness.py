"""A local consortium for tests: ``coco-gateway init``, then one ``coco-gateway node --config``
process per node, on free 127.0.0.1 ports.

``Cluster`` makes the consortium (``init`` writes ``consortium.json`` and one directory with
``node.json`` per node; the harness then moves every node to free ports, in both files, before
anything starts), optionally routes chosen links through fault tools (``FaultProxy`` for
partitions and delays, ``P2pRelay`` for changed frames) by editing the ``peers`` of the
node.json files, and starts, stops (SIGTERM), kills (SIGKILL, the node and its enclave) and
restarts nodes by name. Each node's output goes to its own log file (``ClusterNode.log_path``,
kept across restarts); ``Cluster.report()`` prints the tails, and the ``cluster`` fixtures
print them when a test fails.

``Traffic`` sends value transfers from dev accounts through the nodes in turn while a test
does its damage, and keeps every hash a node accepted and every receipt a client saw, for the
final check that nothing was lost (``Cluster.check_nothing_lost``) and that all nodes agree on
the chain up to the common finalized height (``Cluster.check_agreement``).

``wait_until(cond, timeout, what)`` polls a condition and fails naming ``what`` and the last
value it saw. ``Cluster.finish(request)`` is a fixture's teardown: it prints the report when
a test that used the cluster failed, closes it, and with ``clean_exit`` checks that every
node exited with 0. Node ports are chosen below the kernel's ephemeral range
(``node_port``), so a node started late still finds its port free; ``make_identity`` makes
an outsider's identity in an enclave. Stopping a node is tests/conftest.py's
``stop_process``, shared with the dev node fixtures.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import REPO, any_failed, stop_process, stop_processes
from fault_proxy import DOWNSTREAM, UPSTREAM, FaultProxy, P2pRelay, Rule

T = TypeVar("T")

CLOCK_OFFSET_ENV = "COCO_CLOCK_OFFSET_SECONDS"  # gateway/clock.py
LOG_TAIL = 40


class ClusterError(AssertionError):
    pass


_PORTS_TAKEN: set[int] = set()  # handed out in this process: never twice


def node_port() -> int:
    """A free 127.0.0.1 port below Linux's ephemeral range (32768 up): a node started
    minutes after ``init`` (a late member, a restart) must not find its port taken by the
    local end of some outgoing connection meanwhile, as a port the kernel handed out (bind
    to port 0) can be."""
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(20000, 32700)
        if port in _PORTS_TAKEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_TAKEN.add(port)
        return port
    raise ClusterError("no free port in 20000..32700")


def make_identity(data_dir: Path) -> dict[str, Any]:
    """A node identity made in a fresh enclave process for ``data_dir`` (an outsider's)."""
    import asyncio

    from gateway.enclave import messages as m
    from gateway.enclave.runtime import ProcessEnclave

    async def make() -> dict[str, Any]:
        enclave = ProcessEnclave()
        try:
            return dict(await enclave.start_identity(m.MakeIdentity(str(data_dir))))
        finally:
            await enclave.close()

    return asyncio.run(make())


def failed_in(request: pytest.FixtureRequest) -> bool:
    """In a fixture's teardown: whether a test that used it failed in its set-up or call
    (a function fixture: that test; a module or session one: any test under its node)."""
    return any_failed(request.node.nodeid)


def wait_until(
    cond: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``cond`` until it returns something truthy and return that; fail after
    ``timeout`` seconds with a message naming ``what`` and the last value (or error) seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = cond()
        except (OSError, RpcFailure, ValueError, KeyError) as exc:  # a node down or starting
            value, last = None, f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout is not None else ""
            raise ClusterError(
                f"timed out after {timeout:g} s waiting for {what} (last: {last!r:.500})"
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


# ------------------------------------------------------------------------------- JSON-RPC


class RpcFailure(Exception):
    """A JSON-RPC error answer: ``error`` is its error object."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('code')} {error.get('message')}")
        self.method = method
        self.error = error

    @property
    def reason(self) -> str | None:
        data = self.error.get("data")
        return data.get("reason") if isinstance(data, dict) else None


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 10) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RpcFailure(method, answer["error"])
    return answer["result"]


def rpc_batch(url: str, calls: Sequence[tuple[str, list[Any]]], timeout: float = 30) -> list[Any]:
    """Several calls in one JSON-RPC batch; results in order (an error raises)."""
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answers = {a["id"]: a for a in json.loads(resp.read())}
    out = []
    for i, (method, _) in enumerate(calls):
        if "error" in answers[i]:
            raise RpcFailure(method, answers[i]["error"])
        out.append(answers[i]["result"])
    return out


# ------------------------------------------------------------------------------- a node


@dataclass
class ClusterNode:
    """One node of the cluster: its directory (with node.json), process and log."""

    name: str
    directory: Path
    role: str
    rpc_port: int
    p2p_port: int
    address: str | None = None  # the node identity (validators and members)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # where the node runs from: its ``gateway`` package is the one imported (default the
    # repository; a copy with other code gives another measurement)
    cwd: Path | None = None

    @property
    def config(self) -> Path:
        return self.directory / "node.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def p2p(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "node.log"

    @property
    def data_dir(self) -> Path:
        raw = json.loads(self.config.read_text())
        return (self.directory / raw.get("dataDir", "data")).resolve()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self) -> str:
        state = "up" if self.running else "down"
        return f"<{self.role} {self.name} rpc={self.rpc_port} p2p={self.p2p_port} {state}>"

    def edit_config(self, **fields: Any) -> None:
        """Set fields of this node's node.json (read at its next start)."""
        doc = json.loads(self.config.read_text())
        doc.update(fields)
        self.config.write_text(json.dumps(doc, indent=2))

    def empty_data_dir_keeping_identity(self) -> None:
        """The stopped node loses its data directory (ledger, sealed consortium secret) but
        keeps its identity: the sealing key file and its sealed node key."""
        from gateway.enclave.keys import NODE_KEY_FILE, SEALING_KEY_FILE

        assert not self.running, f"{self.name} is running"
        kept = self.data_dir.parent / f"{self.data_dir.name}-kept"
        kept.mkdir()
        for name in (SEALING_KEY_FILE, NODE_KEY_FILE):
            shutil.copyfile(self.data_dir / name, kept / name)
        shutil.rmtree(self.data_dir)
        kept.rename(self.data_dir)

    # -- processes -----------------------------------------------------------------------
    def start(self, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> ClusterNode:
        """Start the node process (not waiting for it: see ``Cluster.start``); ``args``:
        extra ``coco-gateway node`` options (e.g. ``["--recover"]``)."""
        if self.running:
            raise ClusterError(f"{self.name} is already running")
        if env is not None:
            self.env = dict(env)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "node",
                    "--config",
                    str(self.config),
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                cwd=str(self.cwd or REPO),
                start_new_session=True,  # its own process group: kill -9 takes the enclave too
            )
        return self

    def stop(self, timeout: float = 30, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` (default SIGTERM), then wait; SIGKILL the group if it does not exit in
        ``timeout``; nothing of its group (an orphaned enclave) lingers. Its exit code."""
        code = stop_process(self.proc, sig, timeout)
        self.proc = None
        return code

    def kill9(self) -> None:
        """kill -9 of the node and its enclave process (the whole process group)."""
        self.stop(sig=signal.SIGKILL)

    # -- reading it ----------------------------------------------------------------------
    def rpc(self, method: str, params: list[Any] | None = None, timeout: float = 10) -> Any:
        return rpc_call(self.url, method, params, timeout)

    def answers(self) -> bool:
        try:
            self.rpc("eth_chainId", timeout=2)
        except (OSError, RpcFailure):
            return False
        return True

    def status(self) -> dict[str, Any]:
        return dict(self.rpc("coco_nodeStatus"))

    def height(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def finalized(self) -> int:
        block = self.rpc("eth_getBlockByNumber", ["finalized", False])
        return -1 if block is None else int(block["number"], 16)

    def block_hashes(self, start: int, end: int) -> list[str | None]:
        """Hashes of blocks ``start`` .. ``end`` (inclusive), None where missing."""
        out: list[str | None] = []
        for lo in range(start, end + 1, 100):
            hi = min(end, lo + 99)
            calls = [("eth_getBlockByNumber", [hex(n), False]) for n in range(lo, hi + 1)]
            out += [b["hash"] if b else None for b in rpc_batch(self.url, calls)]
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def log_since(self, mark: int) -> str:
        """The log written after ``mark`` (a size from ``log_mark``)."""
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def log_mark(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0


# ------------------------------------------------------------------------------- the cluster


class Cluster:
    """A consortium made by ``coco-gateway init`` in ``root`` (see the module docstring).

    ``init_args`` are extra ``init`` options (e.g. ``["--validation", "re-execute"]``,
    ``["--measurement", "0x..."]``). Nothing starts until ``start()``.
    """

    def __init__(
        self,
        root: Path,
        *,
        validators: int = 4,
        members: int = 0,
        observers: int = 0,
        block_period: float = 1,
        dev_alloc: bool = True,
        init_args: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.nodes: dict[str, ClusterNode] = {}
        self.proxies: dict[tuple[str, str], FaultProxy | P2pRelay] = {}  # (dialler, target)
        self.traffic: list[Traffic] = []
        self.chain_id = 0
        root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "gateway.cli", "init",
            "--dir", str(root),
            "--validators", str(validators),
            *(["--dev-alloc"] if dev_alloc else []),
            "--block-period", f"{block_period:g}",
        ]  # fmt: skip
        if members:
            cmd += ["--members", str(members)]
        if observers:
            cmd += ["--observers", str(observers)]
        cmd += list(init_args)
        self.init_command = cmd
        done = subprocess.run(
            cmd, cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False
        )
        self.init_output = done.stdout + done.stderr
        if done.returncode != 0:
            raise ClusterError(
                f"coco-gateway init failed ({done.returncode}): {' '.join(cmd)}\n{self.init_output}"
            )
        self._read_files()
        self._move_to_free_ports()

    # -- files ---------------------------------------------------------------------------
    @property
    def terms_path(self) -> Path:
        return self.root / "consortium.json"

    def terms(self) -> dict[str, Any]:
        return dict(json.loads(self.terms_path.read_text()))

    def _node_files(self) -> list[Path]:
        return sorted(self.root.glob("*/node.json"))

    def _read_files(self) -> None:
        terms = self.terms()
        self.chain_id = int(terms["chainId"])
        addresses = {n["name"]: n.get("address") for n in terms.get("nodes", [])}
        for path in self._node_files():
            raw = json.loads(path.read_text())
            name = raw["name"]
            self.nodes[name] = ClusterNode(
                name=name,
                directory=path.parent,
                role=raw["role"],
                rpc_port=int(raw["rpc"]["port"]),
                p2p_port=int(raw["p2p"]["port"]),
                address=addresses.get(name),
            )
        if not self.nodes:
            raise ClusterError(f"init wrote no node.json under {self.root}")

    def _move_to_free_ports(self) -> None:
        """Free ports for every node, written consistently into consortium.json (its nodes'
        rpc and p2p) and every node.json (own rpc and p2p, and peers), before any start."""
        old_p2p = {n.p2p: n.name for n in self.nodes.values()}
        for node in self.nodes.values():
            node.rpc_port, node.p2p_port = node_port(), node_port()
        terms = self.terms()
        for entry in terms.get("nodes", []):
            node = self.nodes.get(entry["name"])
            if node is not None:
                entry["rpc"] = f"127.0.0.1:{node.rpc_port}"
                entry["p2p"] = node.p2p
        self.terms_path.write_text(json.dumps(terms, indent=2) + "\n")
        for node in self.nodes.values():
            raw = json.loads(node.config.read_text())
            raw["rpc"] = {"host": "127.0.0.1", "port": node.rpc_port}
            raw["p2p"] = {"host": "127.0.0.1", "port": node.p2p_port}
            raw["peers"] = [self.nodes[old_p2p[p]].p2p for p in raw.get("peers", [])]
            node.config.write_text(json.dumps(raw, indent=2) + "\n")

    def add_node(self, name: str, role: str = "validator", cwd: Path | None = None) -> ClusterNode:
        """A node outside consortium.json, made by ``coco-gateway add-node`` (run from
        ``cwd``, so its identity is made by that code) on free ports; not started."""
        rpc, p2p = node_port(), node_port()
        cmd = [
            sys.executable, "-m", "gateway.cli", "add-node", "--dir", str(self.root),
            "--name", name, "--role", role, "--rpc-port", str(rpc), "--p2p-port", str(p2p),
        ]  # fmt: skip
        done = subprocess.run(
            cmd, cwd=str(cwd or REPO), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise ClusterError(f"add-node failed ({done.returncode}): {done.stdout}{done.stderr}")
        address = done.stdout.split("address ", 1)[1].split()[0]
        node = ClusterNode(
            name=name,
            directory=self.root / name,
            role=role,
            rpc_port=rpc,
            p2p_port=p2p,
            address=address,
            cwd=cwd,
        )
        self.nodes[name] = node
        return node

    def peers_of(self, name: str) -> list[str]:
        return list(json.loads(self.nodes[name].config.read_text()).get("peers", []))

    def set_peers(self, name: str, peers: Iterable[str]) -> None:
        node = self.nodes[name]
        raw = json.loads(node.config.read_text())
        raw["peers"] = list(peers)
        node.config.write_text(json.dumps(raw, indent=2) + "\n")

    # -- fault tools on the links --------------------------------------------------------
    def route_through(self, names: Iterable[str], kind: str = "proxy") -> None:
        """Every link with one end in ``names`` goes through its own fault tool (``"proxy"``:
        a ``FaultProxy``; ``"relay"``: a ``P2pRelay``, which serves TLS with the target's
        own certificate from its data directory, as its host could): the dialler's node.json
        lists the tool's address instead of the target's. Call before starting those nodes."""
        chosen = set(names)
        for dialler in self.nodes.values():
            peers = []
            for endpoint in self.peers_of(dialler.name):
                target = next((n for n in self.nodes.values() if n.p2p == endpoint), None)
                if target is None or not ({dialler.name, target.name} & chosen):
                    peers.append(endpoint)
                    continue
                label = f"{dialler.name}->{target.name}"
                tool: FaultProxy | P2pRelay = (
                    FaultProxy(target.p2p, name=label).start()
                    if kind == "proxy"
                    else P2pRelay(target.p2p, tls=target.data_dir, name=label).start()
                )
                self.proxies[(dialler.name, target.name)] = tool
                peers.append(tool.address)
            self.set_peers(dialler.name, peers)

    def tools_of(self, name: str) -> list[FaultProxy | P2pRelay]:
        return [t for (a, b), t in self.proxies.items() if name in (a, b)]

    def partition(self, name: str, how: str = "refuse") -> None:
        """Cut ``name`` off from every peer (its links must go through proxies)."""
        tools = self.tools_of(name)
        if not tools:
            raise ClusterError(f"no proxies on {name}'s links: route_through([{name!r}]) first")
        for tool in tools:
            if isinstance(tool, FaultProxy):
                tool.partition(how)
            else:
                tool.partition()

    def heal(self, name: str) -> None:
        for tool in self.tools_of(name):
            tool.heal()

    def rules_into(self, name: str, make: Callable[[str], Rule]) -> list[Rule]:
        """Install ``make(direction)`` on every relay of ``name``'s links, in the direction
        that carries frames *to* ``name``; returns the rules (``applied`` counts)."""
        rules = []
        for (dialler, target), tool in self.proxies.items():
            if not isinstance(tool, P2pRelay) or name not in (dialler, target):
                continue
            direction = UPSTREAM if target == name else DOWNSTREAM
            rules.append(tool.add_rule(make(direction)))
        if not rules:
            raise ClusterError(f"no relays on {name}'s links: route_through([{name!r}], 'relay')")
        return rules

    def clear_rules(self, name: str) -> None:
        """Remove every rule from the relays of ``name``'s links."""
        for relay, _direction in self.relays_into(name):
            for rule in list(relay.rules):
                relay.remove_rule(rule)

    def relays_into(self, name: str) -> list[tuple[P2pRelay, str]]:
        """(relay, direction toward ``name``) for each relay on ``name``'s links."""
        out = []
        for (dialler, target), tool in self.proxies.items():
            if isinstance(tool, P2pRelay) and name in (dialler, target):
                out.append((tool, UPSTREAM if target == name else DOWNSTREAM))
        return out

    # -- processes -----------------------------------------------------------------------
    def __getitem__(self, name: str) -> ClusterNode:
        return self.nodes[name]

    def names(self, role: str | None = None) -> list[str]:
        return [n.name for n in self.nodes.values() if role is None or n.role == role]

    def validators(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.role == "validator"]

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.running]

    def start(
        self,
        names: Iterable[str] | None = None,
        *,
        env: dict[str, dict[str, str]] | None = None,
        wait: bool = True,
        timeout: float = 120,
    ) -> None:
        """Start the named nodes (default: all), then wait until each answers JSON-RPC."""
        chosen = list(names) if names is not None else list(self.nodes)
        for name in chosen:
            self.nodes[name].start((env or {}).get(name))
        if wait:
            for name in chosen:
                self.wait_answers(name, timeout)

    def wait_answers(self, name: str, timeout: float = 120) -> None:
        node = self.nodes[name]

        def up() -> bool:
            if node.proc is not None and node.proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {node.proc.returncode} while starting:\n{node.log_tail()}"
                )
            return node.answers()

        self.wait_until(up, timeout, f"{name} to answer JSON-RPC on {node.url}")

    def restart(self, name: str, timeout: float = 120) -> None:
        self.nodes[name].stop()
        self.start([name], timeout=timeout)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def flow(self, senders: int = 4, **options: Any) -> Traffic:
        """Start ``Traffic`` (value transfers) on this cluster; ``close()`` stops it."""
        traffic = Traffic(self, senders, **options).start()
        self.traffic.append(traffic)
        return traffic

    def close(self) -> dict[str, int | None]:
        """Stop the traffic, every node (SIGTERM, then SIGKILL) and every fault tool; the
        nodes' exit codes (None: it was not running)."""
        for traffic in self.traffic:
            traffic.stop()
        nodes = list(self.nodes.values())
        try:
            exits = stop_processes([n.proc for n in nodes], signal.SIGTERM, timeout=30)
        finally:
            for node in nodes:
                if node.proc is not None and node.proc.poll() is None:
                    node.kill9()
                node.proc = None
        codes: dict[str, int | None] = {n.name: code for n, code in zip(nodes, exits, strict=True)}
        for tool in self.proxies.values():
            tool.stop()
        return codes

    def finish(self, request: pytest.FixtureRequest, *, clean_exit: bool = False) -> None:
        """A fixture's teardown: when a test that used it failed, print each node's status
        and last log lines; then ``close()``. ``clean_exit``: every node that ran must have
        exited with 0 on SIGTERM."""
        if failed_in(request):
            print(f"\n===== cluster {self.root}\n{self.report()}")
        codes = self.close()
        if clean_exit:
            unclean = {n: c for n, c in codes.items() if c not in (0, None)}
            assert not unclean, f"unclean exits {unclean}\n{self.report()}"

    # -- sharing one cluster between tests ----------------------------------------------
    def damage(self) -> list[str]:
        """What a test left broken: nodes down or run with their own environment (a clock
        offset), fault tools partitioned or with rules, traffic still running. Empty when
        the cluster is whole again."""
        out = [f"{n.name} is down" for n in self.nodes.values() if not n.running]
        out += [f"{n.name} runs with {n.env}" for n in self.nodes.values() if n.running and n.env]
        for (a, b), tool in self.proxies.items():
            cut = tool.cut_off if isinstance(tool, P2pRelay) else tool.mode != "pass"
            if cut:
                out.append(f"the link {a}->{b} is partitioned")
            if isinstance(tool, FaultProxy) and tool.delay_seconds:
                out.append(f"the link {a}->{b} is delayed")
            if isinstance(tool, P2pRelay) and tool.rules:
                out.append(f"the relay {a}->{b} has rules {[r.name for r in tool.rules]}")
        out += [f"traffic {i} still runs" for i, t in enumerate(self.traffic) if t.running]
        return out

    def restore(self, timeout: float = 120) -> None:
        """Undo what a test broke (see ``damage``): stop its traffic, heal every link and
        drop every rule, start again the nodes that are down or run with an environment of
        their own; then wait until every node holds the head node1 had, and check."""
        for traffic in self.traffic:
            traffic.stop()
        self.traffic.clear()
        for (_a, _b), tool in self.proxies.items():
            tool.heal()
            if isinstance(tool, FaultProxy):
                tool.delay(0)
            if isinstance(tool, P2pRelay):
                for rule in list(tool.rules):
                    tool.remove_rule(rule)
        odd = [n.name for n in self.nodes.values() if n.running and n.env]
        for name in odd:
            self.nodes[name].stop()
        down = [n.name for n in self.nodes.values() if not n.running]
        if down:
            self.start(down, env={name: {} for name in down}, timeout=timeout)
        up = [n for n in self.nodes.values() if n.role != "observer"]
        self.wait_height(max(n.height() for n in up), timeout=timeout)
        left = self.damage()
        assert not left, f"could not restore the cluster: {left}"

    # -- waiting and checking ------------------------------------------------------------
    def wait_until(self, cond: Callable[[], T], timeout: float, what: str) -> T:
        return wait_until(cond, timeout, what, on_timeout=self.brief_status)

    def brief_status(self) -> str:
        lines = []
        for node in self.nodes.values():
            if not node.running:
                lines.append(f"  {node.name}: down")
                continue
            try:
                s = node.status()
                lines.append(
                    f"  {node.name}: height {s.get('height')} finalized {s.get('finalized')} "
                    f"round {s.get('round')} peers {len(s.get('peers') or [])} "
                    f"state {s.get('state')} lastError {s.get('lastError')}"
                )
            except Exception as exc:  # a status view must not hide the real failure
                lines.append(f"  {node.name}: no status ({type(exc).__name__}: {exc})")
        return "node status:\n" + "\n".join(lines)

    def report(self, lines: int = LOG_TAIL) -> str:
        out = [self.brief_status()]
        for node in self.nodes.values():
            out.append(f"----- {node.name} ({node.log_path}), last {lines} lines")
            out.append(node.log_tail(lines))
        return "\n".join(out)

    def heights(self, nodes: Iterable[ClusterNode] | None = None) -> dict[str, int]:
        return {n.name: n.height() for n in (nodes or self.running())}

    def wait_height(
        self, height: int, nodes: Iterable[str] | None = None, timeout: float = 60
    ) -> None:
        chosen = [self.nodes[n] for n in nodes] if nodes is not None else self.running()

        def reached() -> bool:
            return all(n.height() >= height for n in chosen)

        self.wait_until(reached, timeout, f"height {height} on {[n.name for n in chosen]}")

    def wait_progress(
        self, blocks: int = 3, nodes: Iterable[str] | None = None, timeout: float = 60
    ) -> int:
        """Wait until the named (default: running) nodes are ``blocks`` past the highest
        head now; returns that height."""
        chosen = list(nodes) if nodes is not None else [n.name for n in self.running()]
        target = max(self.nodes[n].height() for n in chosen) + blocks
        self.wait_height(target, chosen, timeout)
        return target

    def check_agreement(self, nodes: Iterable[str] | None = None) -> int:
        """All named (default: running) nodes hold the same block hash at every height up to
        the lowest finalized height among them; returns that height."""
        chosen = [self.nodes[n] for n in nodes] if nodes is not None else self.running()
        finalized = {n.name: n.finalized() for n in chosen}
        common = min(finalized.values())
        assert common >= 0, f"a node has no finalized block: {finalized}"
        chains = {n.name: n.block_hashes(0, common) for n in chosen}
        first = chosen[0].name
        for name, hashes in chains.items():
            for number, (a, b) in enumerate(zip(chains[first], hashes, strict=True)):
                assert a is not None and a == b, (
                    f"block {number}: {first} has {a}, {name} has {b} "
                    f"(finalized heights {finalized})"
                )
        return common

    def check_nothing_lost(
        self, traffic: Traffic, nodes: Iterable[str] | None = None, timeout: float = 60
    ) -> None:
        """Every transaction a node accepted has a receipt on every named node, and every
        receipt a client saw is there, unchanged (block hash, number, index, status)."""
        chosen = [self.nodes[n] for n in nodes] if nodes is not None else self.running()
        accepted = traffic.accepted_hashes()
        seen = traffic.receipts_seen()
        for node in chosen:
            missing: list[str] = []

            def all_there(node: ClusterNode = node, missing: list[str] = missing) -> bool:
                missing.clear()
                for lo in range(0, len(accepted), 100):
                    chunk = accepted[lo : lo + 100]
                    calls = [("eth_getTransactionReceipt", [h]) for h in chunk]
                    for h, r in zip(chunk, rpc_batch(node.url, calls), strict=True):
                        if r is None:
                            missing.append(h)
                        elif h in seen:
                            want, got = seen[h], _receipt_key(r)
                            assert got == want, (
                                f"{node.name}: the receipt of {h} changed: a client saw {want}, "
                                f"now {got}"
                            )
                return not missing

            wait_until(
                all_there,
                timeout,
                f"receipts of all {len(accepted)} accepted txs on {node.name}",
                on_timeout=lambda missing=missing: (
                    f"{len(missing)} missing, e.g. {missing[:5]}\n{self.brief_status()}"
                ),
            )


OPEN_CHAIN = 31337  # tests/clients/js/lib.mjs and the Foundry scripts expect the dev chain id


def governed(
    root: Path,
    constitution: dict[str, Any],
    *,
    members: int = 3,
    init_args: Sequence[str] = (),
    **options: Any,
) -> Iterator[Cluster]:
    """For a module fixture (``yield from governed(...)``): a consortium with ``members``
    dev members (``init --dev-members``) under ``constitution``, written into the terms
    before the first start (genesis follows the terms), started and at height 2; its report
    printed if the fixture fails, closed after."""
    c = Cluster(root, init_args=["--dev-members", str(members), *init_args], **options)
    terms = c.terms()
    terms["constitution"] = constitution
    c.terms_path.write_text(json.dumps(terms, indent=2))
    yield from serve(c)


def serve(c: Cluster, height: int = 2, timeout: float = 180) -> Iterator[Cluster]:
    """For a fixture (``yield from serve(Cluster(...))``): ``c`` started and at ``height``;
    its report printed if the fixture fails, closed after."""
    try:
        c.start()
        c.wait_height(height, timeout=timeout)
        yield c
    except BaseException:
        print(c.report())
        raise
    finally:
        c.close()


def lend_open(pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared "open" consortium: node1..node4 (validators), node5 (a member) and
    observer1, the dev accounts funded, chain 31337; its nodes must exit cleanly on SIGTERM
    at the end."""
    yield from pool.lend(
        request, "open", clean_exit=True, validators=4, members=1, observers=1,
        init_args=["--chain-id", str(OPEN_CHAIN)],
    )  # fmt: skip


class ClusterPool:
    """Clusters shared between tests, across modules, one running at a time (the machine
    has two cores): ``lend`` gives a test the cluster of its ``kind``, made and started on
    first use (``setup`` runs before the start, e.g. to route links through fault tools),
    closing the cluster of another kind that ran before. The test gets it whole (no
    ``damage``) and it is restored after the test (``Cluster.restore``); a cluster that
    cannot be restored is closed and the next test of its kind gets a new one. Session
    fixture ``cluster_pool`` (tests/conftest.py)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.kind: str | None = None
        self.cluster: Cluster | None = None
        self.clean_exit = False
        self.failed = False  # a test that used the running cluster failed

    def get(
        self,
        kind: str,
        setup: Callable[[Cluster], None] | None = None,
        clean_exit: bool = False,
        **options: Any,
    ) -> Cluster:
        if kind != self.kind or self.cluster is None:
            self.close()
            cluster = Cluster(self.factory.mktemp(kind), **options)
            self.cluster, self.kind, self.clean_exit = cluster, kind, clean_exit
            if setup is not None:
                setup(cluster)
            cluster.start()
            cluster.wait_height(1, timeout=120)
        damage = self.cluster.damage()
        assert not damage, f"the shared {kind} cluster is not whole: {damage}"
        return self.cluster

    def lend(
        self,
        request: pytest.FixtureRequest,
        kind: str,
        setup: Callable[[Cluster], None] | None = None,
        clean_exit: bool = False,
        **options: Any,
    ) -> Iterator[Cluster]:
        """A function fixture's body: ``yield from pool.lend(request, "kind", ...)``."""
        cluster = self.get(kind, setup, clean_exit, **options)
        yield cluster
        if failed_in(request):
            self.failed = True
            print(f"\n===== shared cluster {cluster.root}\n{cluster.report()}")
        try:
            cluster.restore()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        cluster, self.cluster, self.kind = self.cluster, None, None
        failed, self.failed = self.failed, False
        if cluster is None:
            return
        if failed:
            print(f"\n===== shared cluster {cluster.root}, closing\n{cluster.report()}")
        codes = cluster.close()
        if self.clean_exit:
            unclean = {n: c for n, c in codes.items() if c not in (0, None)}
            assert not unclean, f"unclean exits {unclean}\n{cluster.report()}"


def _receipt_key(receipt: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        receipt["blockHash"],
        receipt["blockNumber"],
        receipt["transactionIndex"],
        receipt["status"],
    )


# ------------------------------------------------------------------------------- traffic


@dataclass
class _Sent:
    tx_hash: str
    sender: int
    nonce: int
    node: str  # where it was accepted
    at: float
    receipt: tuple[str, str, str, str] | None = None
    seen_on: str | None = None


class Traffic:
    """Value transfers from ``senders`` dev accounts, each sender one transaction at a time
    (the next once a receipt for the last is seen on some node), sent to the running nodes in
    turn; a node that does not answer is skipped and the same signed transaction goes to the
    next. A background thread; ``stop()`` ends it. Every accepted hash and every receipt a
    client saw is kept."""

    def __init__(
        self,
        cluster: Cluster,
        senders: int = 4,
        *,
        first_account: int = 0,
        receipt_timeout: float = 120,
        only: Sequence[str] | None = None,
    ) -> None:
        from gateway.devaccounts import derive

        self.cluster = cluster
        self.accounts = derive(count=first_account + senders)[first_account:]
        self.receipt_timeout = receipt_timeout
        self.only = list(only) if only is not None else None
        self.sent: list[_Sent] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._turn = 0

    def start(self) -> Traffic:
        for i in range(len(self.accounts)):
            t = threading.Thread(target=self._run, args=(i,), name=f"traffic-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results -------------------------------------------------------------------------
    def accepted_hashes(self) -> list[str]:
        with self._lock:
            return [s.tx_hash for s in self.sent]

    def receipts_seen(self) -> dict[str, tuple[str, str, str, str]]:
        with self._lock:
            return {s.tx_hash: s.receipt for s in self.sent if s.receipt is not None}

    def confirmed(self) -> int:
        with self._lock:
            return sum(1 for s in self.sent if s.receipt is not None)

    def wait_confirmed(self, more: int, timeout: float = 60) -> None:
        target = self.confirmed() + more
        self.cluster.wait_until(
            lambda: self.confirmed() >= target, timeout, f"{more} more confirmed transfers"
        )

    # -- the senders ---------------------------------------------------------------------
    def _targets(self) -> list[ClusterNode]:
        nodes = [
            n
            for n in self.cluster.nodes.values()
            if n.running and n.role != "observer" and (self.only is None or n.name in self.only)
        ]
        with self._lock:
            self._turn += 1
            k = self._turn % max(1, len(nodes))
        return nodes[k:] + nodes[:k]

    def _run(self, index: int) -> None:
        from eth_account import Account
        from eth_utils import to_checksum_address

        account = self.accounts[index]
        sink = to_checksum_address(f"0x{0xC0C0 + index:040x}")
        nonce = None
        while not self._stop.is_set():
            try:
                if nonce is None:
                    node = next(iter(self._targets()), None)
                    if node is None:
                        self._stop.wait(0.2)
                        continue
                    nonce = int(
                        node.rpc("eth_getTransactionCount", [account.address, "pending"]), 16
                    )
                tx = {
                    "type": 2,
                    "chainId": self.cluster.chain_id,
                    "nonce": nonce,
                    "to": sink,
                    "value": 1 + nonce,
                    "gas": 21_000,
                    "maxFeePerGas": 50 * 10**9,
                    "maxPriorityFeePerGas": 10**9,
                }
                raw = (
                    "0x"
                    + bytes(Account.sign_transaction(tx, account.private_key).raw_transaction).hex()
                )
                record = self._submit(index, nonce, raw)
                if record is None:
                    continue
                if self._await_receipt(record):
                    nonce += 1
                else:
                    nonce = None  # ask again (it may still be pending somewhere)
            except Exception as exc:  # keep sending; the test reads ``errors``
                with self._lock:
                    self.errors.append(f"sender {index}: {type(exc).__name__}: {exc}")
                nonce = None
                self._stop.wait(0.5)

    def _submit(self, index: int, nonce: int, raw: str) -> _Sent | None:
        for node in self._targets():
            try:
                tx_hash = node.rpc("eth_sendRawTransaction", [raw], timeout=10)
            except OSError:
                continue
            except RpcFailure as exc:
                message = str(exc.error.get("message", "")).lower()
                if "known" in message or "already" in message:
                    from eth_utils import keccak

                    tx_hash = "0x" + keccak(bytes.fromhex(raw[2:])).hex()
                else:
                    with self._lock:
                        self.errors.append(f"sender {index} nonce {nonce} on {node.name}: {exc}")
                    self._stop.wait(0.5)
                    return None
            record = _Sent(tx_hash, index, nonce, node.name, time.monotonic())
            with self._lock:
                if all(s.tx_hash != tx_hash for s in self.sent):
                    self.sent.append(record)
                else:
                    record = next(s for s in self.sent if s.tx_hash == tx_hash)
            return record
        self._stop.wait(0.2)
        return None

    def _await_receipt(self, record: _Sent) -> bool:
        deadline = time.monotonic() + self.receipt_timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            for node in self._targets():
                try:
                    r = node.rpc("eth_getTransactionReceipt", [record.tx_hash], timeout=5)
                except (OSError, RpcFailure):
                    continue
                if r is not None:
                    with self._lock:
                        record.receipt = _receipt_key(r)
                        record.seen_on = node.name
                    return True
            self._stop.wait(0.1)
        return False


# ------------------------------------------------------------------------------- the host's view
# What a host that holds a software enclave's files can do (docs/SECURITY.md: why a virtual
# enclave deserves no trust): read the sealing key file, open the sealed consortium secret,
# and with it open and re-seal block bodies. The fault tests use it to offer a validator a
# proposal whose sealed body opens but carries another state diff.

BODY_INFO = b"coco-gateway/block-body/v1"


def consortium_secret(data_dir: Path) -> bytes:
    """The consortium secret of a (software-enclave) node's data directory: its sealing key
    file opens ``consortium-secret.sealed`` (gateway/enclave/keys.py)."""
    from gateway.enclave.keys import SEALING_KEY_FILE, SECRET_FILE, LocalSealer

    path = data_dir / SECRET_FILE
    if not path.exists():
        raise ClusterError(f"{data_dir}: no sealed consortium secret (yet)")
    doc = json.loads(path.read_text())
    key = (data_dir / SEALING_KEY_FILE).read_bytes()
    name = f"consortium_secret:chain-{doc['chainId']}"
    return LocalSealer(key).open(name, bytes.fromhex(doc["sealed"].removeprefix("0x")))


def _body_aead(secret: bytes) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=BODY_INFO).derive(secret)
    return AESGCM(key)


def _body_ad(chain_id: int, block_hash: bytes) -> bytes:
    return BODY_INFO + chain_id.to_bytes(32, "big") + block_hash


def open_body(secret: bytes, chain_id: int, block_hash: bytes, blob: bytes) -> dict[str, Any]:
    """A sealed block body v1 (PLAN8, docs/PROTOCOL.md) opened: {"txs", "diff"}."""
    import msgpack

    if blob[:1] != b"\x01":
        raise ValueError("not a version 1 body")
    plain = _body_aead(secret).decrypt(blob[1:13], blob[13:], _body_ad(chain_id, block_hash))
    return dict(msgpack.unpackb(plain, raw=False))


def seal_body(secret: bytes, chain_id: int, block_hash: bytes, body: dict[str, Any]) -> bytes:
    import secrets as _secrets

    import msgpack

    nonce = _secrets.token_bytes(12)
    plain = msgpack.packb(body, use_bin_type=True)
    return (
        b"\x01" + nonce + _body_aead(secret).encrypt(nonce, plain, _body_ad(chain_id, block_hash))
    )


def proposal_block_hash(frame: dict[str, Any]) -> tuple[int, bytes]:
    """(height, block hash) of the block a ``qbft`` PROPOSAL frame proposes (the hash is
    keccak of the header RLP, the QBFT block's payload)."""
    from eth_utils import keccak

    from gateway.consensus.qbft.messages import Proposal, decode_message

    msg = decode_message(bytes(frame["m"]))
    assert isinstance(msg, Proposal)
    return msg.height, keccak(msg.proposed_block.payload)
