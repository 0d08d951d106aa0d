"""ERC-20 transfers on a four-validator consortium against a single dev node, in one run.

    python -m bench.cluster [--senders 20] [--txs 2000] [--validators 4] [--block-period 1]
                            [--rules attested-diff,re-execute] [--skip-baseline]

Everything is signed before anything is timed (``bench.common.make_workload``: the Token
deployment from dev account 0, ETH and tokens for each sender, then each sender's transfers).
Then, in this order, each on fresh processes:

1. the in-process py-evm baseline (``bench.erc20.run_baseline``, as bench/README.md says);
2. a single ``coco-gateway dev`` node (automine; a consortium of one, so every block is final
   when it is made);
3. a consortium per validation rule: ``coco-gateway init --validators N --dev-alloc
   --block-period B --validation RULE --chain-id 31337``, every node started as ``coco-gateway
   node --config``, all on this machine.

Each gateway run gets the same setup (untimed) and the same signed transfers. The senders
are spread over the nodes (sender i submits to node i mod N: any node accepts and forwards);
one watcher follows the ``finalized`` block on the first node and fetches each newly final
block's receipts. Latency is from submit to the watcher holding the receipt of a final block
(submit-to-finality); throughput is transfers over first submit to last final receipt.
Prints throughput, the ratio to the single node (target >= 0.7 under attested-diff), and
latency p50/p99. See docs/performance.md, "Consortium".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    CHAIN_ID,
    POOL_NONCE_WINDOW,
    REPO,
    NodeProcess,
    Rpc,
    Workload,
    apply_setup,
    cpu_seconds,
    free_port,
    make_workload,
    percentile,
    table,
)
from bench.erc20 import GatewayResult, drive_gateway, pooled, run_baseline

RULES = ("attested-diff", "re-execute")
TARGET_RATIO = 0.7  # issue 8: the cluster under attested-diff vs the single node


# ---------------------------------------------------------------------------- the cluster
@dataclass
class ClusterProcesses:
    """A consortium made by ``coco-gateway init`` in a temporary directory, every node a
    ``coco-gateway node --config`` process on free ports (written into consortium.json and
    each node.json before anything starts). Logs: ``<dir>/<node>/node.log``."""

    validators: int = 4
    rule: str = "attested-diff"
    block_period: float = 1.0
    round_timeout: float | None = None  # None: init's default (consortium.json roundTimeout)
    extra_init: list[str] = field(default_factory=list)
    root: Path | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)  # name, dir, rpc, proc
    keep: bool = False

    def start(self, timeout: float = 180.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="coco-bench-cluster-"))
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "init",
            "--dir",
            str(self.root),
            "--validators",
            str(self.validators),
            "--dev-alloc",
            "--block-period",
            f"{self.block_period:g}",
            "--validation",
            self.rule,
            "--chain-id",
            str(CHAIN_ID),
            *self.extra_init,
        ]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"init failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}")
        self._free_ports()
        for node in self.nodes:
            log = open(node["dir"] / "node.log", "ab")  # noqa: SIM115 (the child owns it)
            node["proc"] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "node",
                    "--config",
                    str(node["dir"] / "node.json"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            log.close()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while not _answers(node["url"]):
                if node["proc"].poll() is not None or time.monotonic() > deadline:
                    tail = (node["dir"] / "node.log").read_text(errors="replace")[-3000:]
                    self.stop()
                    raise RuntimeError(f"{node['name']} did not start:\n{tail}")
                time.sleep(0.2)

    def _free_ports(self) -> None:
        assert self.root is not None
        terms_path = self.root / "consortium.json"
        terms = json.loads(terms_path.read_text())
        files = sorted(self.root.glob("*/node.json"))
        raws = {p: json.loads(p.read_text()) for p in files}
        old_p2p = {f"{r['p2p']['host']}:{r['p2p']['port']}": r["name"] for r in raws.values()}
        ports = {r["name"]: (free_port(), free_port()) for r in raws.values()}
        if self.round_timeout is not None:
            terms["roundTimeout"] = self.round_timeout
        for entry in terms.get("nodes", []):
            if entry["name"] in ports:
                rpc, p2p = ports[entry["name"]]
                entry["rpc"], entry["p2p"] = f"127.0.0.1:{rpc}", f"127.0.0.1:{p2p}"
        terms_path.write_text(json.dumps(terms, indent=2) + "\n")
        for path, raw in raws.items():
            rpc, p2p = ports[raw["name"]]
            raw["rpc"] = {"host": "127.0.0.1", "port": rpc}
            raw["p2p"] = {"host": "127.0.0.1", "port": p2p}
            raw["peers"] = [f"127.0.0.1:{ports[old_p2p[p]][1]}" for p in raw.get("peers", [])]
            path.write_text(json.dumps(raw, indent=2) + "\n")
            if raw["role"] != "observer":
                self.nodes.append(
                    {
                        "name": raw["name"],
                        "dir": path.parent,
                        "url": f"http://127.0.0.1:{rpc}",
                        "proc": None,
                    }
                )

    @property
    def urls(self) -> list[str]:
        return [n["url"] for n in self.nodes]

    def pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for n in self.nodes:
            proc = n["proc"]
            out[n["name"]] = proc.pid if proc is not None else None
            out[n["name"] + "-enclave"] = _child_pid(proc.pid) if proc is not None else None
        return out

    def stop(self) -> None:
        for n in self.nodes:
            proc = n["proc"]
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for n in self.nodes:
            proc = n["proc"]
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            n["proc"] = None
        if self.root is not None and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ClusterProcesses:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return "result" in json.loads(resp.read())
    except OSError:
        return False


def _child_pid(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


# ---------------------------------------------------------------------------- the drive
async def _finalized(rpc: Rpc) -> int:
    block = await rpc.call("eth_getBlockByNumber", ["finalized", False])
    return -1 if block is None else int(block["number"], 16)


async def _wait_final(rpc: Rpc, urls: list[str], timeout: float = 60) -> None:
    """Wait until every node's finalized height reaches the first node's head (setup done
    everywhere before the clock starts)."""
    head = int(await rpc.call("eth_blockNumber"), 16)
    deadline = time.monotonic() + timeout
    for url in urls:
        async with Rpc(url, connections=2) as other:
            while await _finalized(other) < head:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not reach block {head} within {timeout:g} s")
                await asyncio.sleep(0.05)


def run(
    label: str,
    urls: list[str],
    pids: dict[str, int | None],
    work: Workload,
    args: argparse.Namespace,
) -> GatewayResult:
    async def main() -> GatewayResult:
        clients = [Rpc(u, connections=len(work.senders) + 8) for u in urls]
        for c in clients:
            await c.__aenter__()
        try:
            await apply_setup(clients[0], work.setup)
            await _wait_final(clients[0], urls)
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            client0 = time.process_time()
            result = await drive_gateway(
                clients,
                work,
                window=args.window,
                poll_interval=args.poll_interval,
                timeout=args.timeout,
                follow="finalized",
            )
            result.cpu_seconds = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items() if p}
            result.cpu_seconds["client"] = time.process_time() - client0
            result.label = label
            return result
        finally:
            for c in clients:
                await c.__aexit__(None, None, None)

    return asyncio.run(main())


# ---------------------------------------------------------------------------- main
def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--txs", type=int, default=2000)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--block-period", type=float, default=1.0)
    parser.add_argument(
        "--round-timeout",
        type=float,
        default=None,
        help="the clusters' QBFT round timeout in seconds, written into "
        "consortium.json before the nodes start (default: init's)",
    )
    parser.add_argument(
        "--rules",
        default=",".join(RULES),
        help="validation rules to run a cluster with, comma-separated",
    )
    parser.add_argument("--window", type=int, default=POOL_NONCE_WINDOW)
    parser.add_argument("--poll-interval", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="passes of the single node and the clusters, in alternating order, pooled",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the clusters' directories (configs, data, node logs)",
    )
    args = parser.parse_args(argv)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    if not set(rules) <= set(RULES):
        parser.error(f"--rules: from {', '.join(RULES)}")
    args.window = max(1, min(args.window, POOL_NONCE_WINDOW))
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    load_start = _loadavg()

    t = time.perf_counter()
    work = make_workload(args.senders, args.txs)
    print(
        f"signed {len(work.setup)} setup + {work.total} transfer txs in "
        f"{time.perf_counter() - t:.1f} s",
        flush=True,
    )
    base = None if args.skip_baseline else run_baseline(work)
    if base is not None:
        print(f"baseline py-evm: {base.tps:.1f} tx/s", flush=True)

    def run_single() -> GatewayResult:
        with NodeProcess() as node:
            pids = {"node": node.proc.pid if node.proc else None, "enclave": node.enclave_pid()}
            result = run("single dev node", [node.url], pids, work, args)
        print(f"single node: {result.tps:.1f} tx/s", flush=True)
        return result

    def run_cluster(rule: str) -> GatewayResult:
        cluster = ClusterProcesses(
            args.validators,
            rule,
            args.block_period,
            round_timeout=args.round_timeout,
            keep=args.keep,
        )
        with cluster:
            result = run(
                f"{args.validators} validators, {rule}", cluster.urls, cluster.pids(), work, args
            )
        if args.keep:
            print(f"kept {cluster.root}")
        print(f"cluster {rule}: {result.tps:.1f} tx/s", flush=True)
        return result

    # --rounds N: N passes, the order reversed every other pass (single first, then the
    # clusters; then the clusters, then single), each kind pooled over the passes, so that
    # a change in the machine's other load weighs on both sides alike
    passes: dict[str, list[GatewayResult]] = {}
    kinds = ["single", *rules]
    for n in range(args.rounds):
        for kind in kinds if n % 2 == 0 else kinds[::-1]:
            result = run_single() if kind == "single" else run_cluster(kind)
            passes.setdefault(kind, []).append(result)
    runs = []
    for kind in kinds:
        runs.append(pooled(passes[kind]))
        runs[-1].label = passes[kind][0].label
    single = runs[0]
    if args.rounds > 1:
        for kind in kinds:
            print(f"{kind}: " + ", ".join(f"{r.tps:.1f}" for r in passes[kind]) + " tx/s")

    ms = 1000.0
    rows = []
    for r in runs:
        rows.append(
            [
                r.label,
                f"{r.tps:.1f}",
                f"{r.tps / single.tps:.2f}",
                f"{percentile(r.latencies, 50) * ms:.0f}",
                f"{percentile(r.latencies, 99) * ms:.0f}",
                f"{r.seconds:.2f}",
                f"{len(r.block_sizes)}",
            ]
        )
    if base is not None:
        rows.append(
            [
                "baseline py-evm mine_all (100/block)",
                f"{base.tps:.1f}",
                f"{base.tps / single.tps:.2f}",
                "-",
                "-",
                f"{base.seconds:.2f}",
                "-",
            ]
        )
    print()
    timeout = "init's" if args.round_timeout is None else f"{args.round_timeout:g} s"
    print(
        f"ERC-20 transfers: {work.total} txs from {len(work.senders)} senders, window "
        f"{args.window}; cluster block period {args.block_period:g} s, round timeout "
        f"{timeout}; {os.cpu_count()} CPUs; "
        f"load average at start {load_start}, at end {_loadavg()}"
    )
    print()
    print(table(rows, ["run", "tx/s", "vs single", "p50 ms", "p99 ms", "seconds", "blocks"]))
    print()
    ok = True
    for r in runs:
        cpu = sum(r.cpu_seconds.values()) * 1000 / r.txs
        print(
            f"  {r.label}: CPU ms per transfer, all processes {cpu:.2f} ("
            + ", ".join(f"{k} {v * 1000 / r.txs:.2f}" for k, v in r.cpu_seconds.items())
            + f"); failed receipts {r.failed}"
        )
        ok &= r.failed == 0
    attested = next((r for r in runs[1:] if r.label.endswith("attested-diff")), None)
    if attested is not None:
        ratio = attested.tps / single.tps
        print(
            f"\ntarget cluster (attested-diff) / single node >= {TARGET_RATIO}: "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'} ({ratio:.2f})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
