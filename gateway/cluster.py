"""``coco-gateway cluster``: a local consortium as child processes, with a status view.

``cluster up`` runs ``coco-gateway node --config DIR/<name>/node.json`` for every node of the
consortium in DIR (each its own process group, its output in ``DIR/<name>/node.log``), polls
each node's ``coco_nodeStatus`` and shows one line per node: redrawn in place on a terminal,
a plain line every few seconds otherwise. Ctrl-C or SIGTERM stops every node: SIGTERM first,
SIGKILL to the node's process group after a grace period. ``cluster status`` prints the view
once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gateway.config import ConfigError, ConsortiumTerms, NodeFile
from gateway.scaffold import NODE_FILE, TERMS_FILE

POLL_INTERVAL = 1.0  # seconds between status polls
PLAIN_INTERVAL = 5.0  # seconds between plain status lines (stdout not a terminal)
GRACE = 20.0  # seconds a node has to stop after SIGTERM before SIGKILL
STATUS_TIMEOUT = 2.0
LOG_FILE = "node.log"


class ClusterError(Exception):
    """The cluster cannot be run or read: the message says why."""


def find_nodes(directory: Path) -> tuple[ConsortiumTerms, list[NodeFile]]:
    """The terms and the node files of the consortium in ``directory``: the terms' nodes in
    their order, then observers by name."""
    terms_path = directory / TERMS_FILE
    if not terms_path.exists():
        raise ClusterError(f"{terms_path} does not exist: no consortium in {directory}")
    try:
        terms = ConsortiumTerms.load(terms_path)
        nodes = [NodeFile.load(p) for p in sorted(directory.glob(f"*/{NODE_FILE}"))]
        for node in nodes:
            node.check_against(terms)
    except ConfigError as exc:
        raise ClusterError(str(exc)) from None
    order = {entry.name: i for i, entry in enumerate(terms.nodes)}
    nodes.sort(key=lambda n: (order.get(n.name, len(order)), n.name))
    missing = [e.name for e in terms.nodes if e.name not in {n.name for n in nodes}]
    if missing:
        raise ClusterError(
            f"{directory}: no {NODE_FILE} for " + ", ".join(missing) + " (listed in the terms)"
        )
    return terms, nodes


# ------------------------------------------------------------------ status


@dataclass
class NodeView:
    """One node's line of the status view."""

    name: str
    role: str
    url: str
    status: dict[str, Any] | None = None
    error: str = ""  # why the status could not be read (or the process's end)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            return None
    return None


def _peers(value: Any) -> str:
    """A count, or a list of links: the distinct nodes linked (a node with a link each way
    counts once; unnamed links, observers', count each)."""
    if isinstance(value, list):
        named = {p.get("name") or p.get("address") for p in value if isinstance(p, dict)}
        named.discard(None)
        named.discard("")
        unnamed = sum(
            1 for p in value if not isinstance(p, dict) or not (p.get("name") or p.get("address"))
        )
        return str(len(named) + unnamed)
    number = _int(value)
    return "-" if number is None else str(number)


def _num(value: Any) -> str:
    number = _int(value)
    return "-" if number is None else str(number)


def _short(address: Any) -> str:
    if isinstance(address, str) and len(address) == 42:
        return address[:6] + ".." + address[-4:]
    return "-" if address in (None, "") else str(address)[:12]


HEADER = f"{'node':<11} {'role':<9} {'state':<14} {'height':>7} {'final':>7} {'round':>5} {'proposer':<13} {'peers':>5}  last error"  # noqa: E501


def render_line(view: NodeView, names: dict[str, str] | None = None) -> str:
    """``name role state height finalized round proposer peers last-error``."""
    s = view.status or {}
    proposer = s.get("proposer")
    if isinstance(proposer, str) and names and proposer.lower() in names:
        who = names[proposer.lower()]
    else:
        who = _short(proposer)
    state = str(s.get("state") or ("down" if view.status is None else "-"))[:14]
    error = view.error or str(s.get("lastError") or "")
    return (
        f"{view.name:<11} {view.role:<9} {state:<14} "
        f"{_num(s.get('height')):>7} {_num(s.get('finalized')):>7} "
        f"{_num(s.get('round')):>5} {who:<13} {_peers(s.get('peers')):>5}  "
        f"{' '.join(error.split())[:100]}"
    )


def render(views: list[NodeView], names: dict[str, str] | None = None) -> list[str]:
    return [HEADER, *(render_line(v, names) for v in views)]


def plain_line(views: list[NodeView]) -> str:
    """One line for logs: ``time name h=.. f=.. r=.. peers=.. | ...``."""
    parts = []
    for v in views:
        s = v.status or {}
        if v.status is None:
            parts.append(f"{v.name} down" + (f" ({v.error})" if v.error else ""))
            continue
        part = (
            f"{v.name} h={_num(s.get('height'))} f={_num(s.get('finalized'))} "
            f"r={_num(s.get('round'))} peers={_peers(s.get('peers'))}"
        )
        error = v.error or s.get("lastError")
        parts.append(part + (f" err={' '.join(str(error).split())[:60]}" if error else ""))
    return time.strftime("%H:%M:%S ") + " | ".join(parts)


async def poll_status(session: Any, view: NodeView) -> None:
    """Fill ``view`` from the node's ``coco_nodeStatus`` (or say why it could not)."""
    import aiohttp

    body = {"jsonrpc": "2.0", "id": 1, "method": "coco_nodeStatus", "params": []}
    try:
        async with session.post(
            view.url, json=body, timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT)
        ) as resp:
            reply = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
        view.status = None
        view.error = view.error if view.error.startswith("exited") else _why(exc)
        return
    if isinstance(reply, dict) and isinstance(reply.get("result"), dict):
        view.status = reply["result"]
        view.error = ""
    else:
        view.status = None
        error = reply.get("error") if isinstance(reply, dict) else None
        view.error = str(error.get("message")) if isinstance(error, dict) else "bad answer"


def _why(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return "not listening"
    if isinstance(exc, TimeoutError):
        return "no answer"
    return type(exc).__name__


def _views(nodes: list[NodeFile]) -> list[NodeView]:
    return [NodeView(n.name, n.role, f"http://{_dial(n.rpc.host)}:{n.rpc.port}") for n in nodes]


def _dial(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _names(terms: ConsortiumTerms) -> dict[str, str]:
    return {e.address: e.name for e in terms.nodes}


async def status_once(directory: Path) -> list[str]:
    import aiohttp

    terms, nodes = find_nodes(directory)
    views = _views(nodes)
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(poll_status(session, v) for v in views))
    return render(views, _names(terms))


# ------------------------------------------------------------------ running


class Child:
    """One node's process: ``coco-gateway node --config FILE``, output to its node.log."""

    def __init__(self, node: NodeFile, argv_prefix: list[str]) -> None:
        self.node = node
        assert node.path is not None
        self.log_path = node.path.parent / LOG_FILE
        self.argv = [*argv_prefix, "node", "--config", str(node.path)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.reported = False

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} cluster up: starting\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,  # Ctrl-C reaches us; we stop the nodes in order
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL to the node's whole process group (its enclave process with it)."""
        if self.proc is None or self.proc.poll() is not None:
            return  # exited (and reaped): its enclave ends at the end of its stdin
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def log_tail(self, lines: int = 1) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(text[-lines:])


def node_command() -> list[str]:
    """How to run ``coco-gateway`` as a child: this interpreter, this package."""
    return [sys.executable, "-m", "gateway.cli"]


async def stop_all(children: list[Child], grace: float = GRACE, out: TextIO | None = None) -> None:
    """SIGTERM every node, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace
    while any(c.exited() is None for c in children) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for child in children:
        if child.exited() is None:
            if out is not None:
                print(f"{child.node.name} did not stop within {grace:g} s: SIGKILL", file=out)
            child.kill()


async def run_cluster(
    directory: Path,
    out: TextIO = sys.stdout,
    grace: float = GRACE,
    duration: float | None = None,
) -> int:
    """Run every node of the consortium in ``directory`` until Ctrl-C / SIGTERM (or for
    ``duration`` seconds); 0 when they all stopped cleanly."""
    import aiohttp

    terms, nodes = find_nodes(directory)
    children = [Child(n, node_command()) for n in nodes]
    views = _views(nodes)
    names = _names(terms)
    tty = out.isatty()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"cluster: starting {len(children)} node(s) from {directory}", file=out)
    for child in children:
        print(
            f"  {child.node.name}: {' '.join(child.argv[-3:])}  (log: {child.log_path})", file=out
        )
        child.start()
    print("Ctrl-C stops them all.\n", file=out, flush=True)
    drawn = 0
    last_plain = 0.0
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                for child, view in zip(children, views, strict=True):
                    code = child.exited()
                    if code is not None and not child.reported:
                        child.reported = True
                        view.error = f"exited (code {code}): {child.log_tail()}"
                        if not tty:
                            print(f"cluster: {child.node.name} {view.error}", file=out, flush=True)
                await asyncio.gather(
                    *(
                        poll_status(session, v)
                        for c, v in zip(children, views, strict=True)
                        if not c.reported
                    )
                )
                for c, v in zip(children, views, strict=True):
                    if c.reported:
                        v.status = None
                if tty:
                    width = max(20, shutil.get_terminal_size().columns - 1)
                    lines = [line[:width] for line in render(views, names)]  # no wrapping
                    if drawn:
                        out.write(f"\x1b[{drawn}F")
                    out.write("".join(f"\x1b[2K{line}\n" for line in lines))
                    out.flush()
                    drawn = len(lines)
                elif time.monotonic() - last_plain >= PLAIN_INTERVAL:
                    last_plain = time.monotonic()
                    print(plain_line(views), file=out, flush=True)
                if duration is not None and time.monotonic() - started >= duration:
                    break
                try:
                    await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
                except TimeoutError:
                    pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("\ncluster: stopping the nodes (SIGTERM)...", file=out, flush=True)
        await stop_all(children, grace, out)
    failed = [c for c in children if c.exited() not in (0, -signal.SIGTERM)]
    for child in children:
        print(f"  {child.node.name}: exit code {child.exited()}", file=out)
    return 1 if failed else 0
