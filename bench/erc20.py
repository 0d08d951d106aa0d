"""ERC-20 transfer throughput: the gateway against py-evm's own fast path.

    python -m bench.erc20 [--senders 20] [--txs 2000] [--enclave process|inprocess]

Everything is signed before anything is timed. The baseline mines the same signed
transfers directly with py-evm (in-memory AtomicDB, ``MiningChain.mine_all``, blocks of
100, one state root per block); the gateway run sends them to a fresh node process from
one asyncio task per sender and watches blocks for the receipts. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    POOL_NONCE_WINDOW,
    NodeProcess,
    Rpc,
    Workload,
    apply_setup,
    cpu_seconds,
    evm_chain,
    evm_mine,
    find_py_spy,
    make_workload,
    percentile,
    start_py_spy,
    stop_py_spy,
    summarize_profile,
    table,
)

BASELINE_BLOCK = 100
PROFILE_RATE = 200


# ---------------------------------------------------------------------------- baseline
@dataclass
class BaselineResult:
    txs: int
    blocks: int
    seconds: float
    cpu_seconds: float

    @property
    def tps(self) -> float:
        return self.txs / self.seconds


def run_baseline(work: Workload, block_size: int = BASELINE_BLOCK) -> BaselineResult:
    chain = evm_chain()
    evm_mine(chain, [work.setup[0].raw])  # the deployment, then the funding: untimed
    evm_mine(chain, [tx.raw for tx in work.setup[1:]])
    raws = [tx.raw for tx in work.interleaved()]
    blocks = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, len(raws), block_size):
        evm_mine(chain, raws[start:start + block_size])
        blocks += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return BaselineResult(len(raws), blocks, seconds, cpu)


# ---------------------------------------------------------------------------- gateway
@dataclass
class GatewayResult:
    txs: int
    seconds: float
    latencies: list[float]
    submit_latencies: list[float]
    block_sizes: list[int]
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    failed: int = 0

    @property
    def tps(self) -> float:
        return self.txs / self.seconds


async def drive_gateway(
    rpc: Rpc, work: Workload, *, poll_interval: float, window: int, timeout: float
) -> GatewayResult:
    """The timed part: concurrent senders plus one block watcher that fetches receipts."""
    submitted: dict[bytes, float] = {}
    observed: dict[bytes, float] = {}
    submit_latencies: list[float] = []
    block_sizes: list[int] = []
    inflight = [0] * len(work.senders)
    wakeups = [asyncio.Event() for _ in work.senders]
    owner = {tx.hash: i for i, q in enumerate(work.transfers) for tx in q}
    expected = work.total
    failed = 0
    first_block = int(await rpc.call("eth_blockNumber"), 16) + 1
    all_seen = asyncio.Event()

    async def sender(i: int) -> None:
        for tx in work.transfers[i]:
            while inflight[i] >= window:  # the pool's nonce-gap limit: wait for a block
                wakeups[i].clear()
                await wakeups[i].wait()
            inflight[i] += 1
            t = time.perf_counter()
            submitted[tx.hash] = t
            await rpc.send_raw(tx)
            submit_latencies.append(time.perf_counter() - t)

    async def watcher() -> None:
        nonlocal failed
        next_block = first_block
        while len(observed) < expected:
            head = int(await rpc.call("eth_blockNumber"), 16)
            if head < next_block:
                await asyncio.sleep(poll_interval)
                continue
            for number in range(next_block, head + 1):
                receipts = await rpc.call("eth_getBlockReceipts", [hex(number)])
                now = time.perf_counter()
                block_sizes.append(len(receipts))
                for receipt in receipts:
                    tx_hash = bytes.fromhex(receipt["transactionHash"][2:])
                    if tx_hash not in submitted or tx_hash in observed:
                        continue
                    observed[tx_hash] = now
                    if receipt["status"] != "0x1":
                        failed += 1
                    i = owner[tx_hash]
                    inflight[i] -= 1
                    wakeups[i].set()
            next_block = head + 1
        all_seen.set()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(sender(i)) for i in range(len(work.senders))]
    watch = asyncio.create_task(watcher())
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, watch), timeout)
    except TimeoutError:
        raise RuntimeError(
            f"timed out after {timeout:g} s with {len(observed)}/{expected} receipts"
        ) from None
    first_submit = min(submitted.values(), default=t0)
    last_receipt = max(observed.values())
    latencies = [observed[h] - submitted[h] for h in observed]
    return GatewayResult(
        expected, last_receipt - first_submit, latencies, submit_latencies, block_sizes,
        failed=failed,
    )


def run_gateway(
    work: Workload,
    *,
    enclave: str,
    poll_interval: float,
    window: int,
    timeout: float,
    profile_dir: Path | None,
    py_spy: str | None,
) -> GatewayResult:
    with NodeProcess(enclave=enclave) as node:
        async def main() -> GatewayResult:
            async with Rpc(node.url, connections=len(work.senders) + 8) as rpc:
                await apply_setup(rpc, work.setup)
                pids = {"node": node.proc.pid if node.proc else None, "enclave": node.enclave_pid()}
                spies = []
                if profile_dir is not None and py_spy is not None:
                    for name, pid in pids.items():
                        if pid is not None:
                            out = profile_dir / f"{name}.txt"
                            spies.append((name, out, start_py_spy(py_spy, pid, out, PROFILE_RATE)))
                    await asyncio.sleep(1.0)  # let py-spy attach before the clock starts
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                client0 = time.process_time()
                t0 = time.perf_counter()
                try:
                    result = await drive_gateway(
                        rpc, work, poll_interval=poll_interval, window=window, timeout=timeout
                    )
                finally:
                    elapsed = time.perf_counter() - t0
                    for _, _, spy in spies:
                        stop_py_spy(spy)
                result.cpu_seconds = {
                    name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items() if pid
                }
                result.cpu_seconds["client"] = time.process_time() - client0
                for name, out, _ in spies:
                    if out.exists():
                        print(f"\n--- py-spy profile of the {name} process ({out})")
                        print(summarize_profile(out, PROFILE_RATE, elapsed))
                return result

        return asyncio.run(main())


# ---------------------------------------------------------------------------- breakdown
# Where the enclave's CPU time goes, measured without HTTP or the process boundary: the
# gateway's Enclave object driven in this thread (submit K, build, fetch the block's
# receipts) against py-evm's mine_all with the same K, with thread CPU time summed around
# a few coarse functions. The wrapped names are looked up, and skipped when they moved.
_GATEWAY_PARTS = [
    ("gateway.enclave.core", "Enclave", "_on_SubmitRawTx", "SubmitRawTx"),
    ("gateway.execution.engine", "Engine", "admit", "  Engine.admit"),
    ("gateway.execution.engine", "Engine", "_state", "    Engine._state (new VM + state)"),
    ("gateway.ledger.store", "Ledger", "pool_add", "  Ledger.pool_add"),
    ("gateway.enclave.core", "Enclave", "_on_BuildBlock", "BuildBlock"),
    ("gateway.execution.engine", "Engine", "build_block", "  Engine.build_block"),
    ("gateway.execution.pool", "TxPool", "executable", "    TxPool.executable"),
    ("gateway.execution.engine", "Engine", "block_rpc", "  Engine.block_rpc"),
    ("gateway.ledger.store", "Ledger", "commit_block", "  Ledger.commit_block"),
    ("gateway.enclave.core", "Enclave", "_on_GetBlockReceipts", "GetBlockReceipts"),
    ("gateway.execution.engine", "Engine", "_block_data", "Engine._block_data (re-read block)"),
    ("gateway.ledger.store", "BufferedKV", "__getitem__", "BufferedKV.__getitem__ (SQLite)"),
]
_EVM_PARTS = [
    ("eth.vm.base", "VM", "apply_transaction", "VM.apply_transaction"),
    ("eth.vm.base", "VM", "mine_block", "VM.mine_block (state root)"),
    ("eth.vm.base", "VM", "set_block_transactions_and_withdrawals", "VM tx+receipt tries"),
    ("eth.chains.base", "Chain", "persist_block", "Chain.persist_block"),
]


def _instrument(parts: list[tuple[str, str, str, str]], acc: dict[str, float]) -> None:
    import functools
    import importlib

    for module_name, class_name, attr, label in parts:
        cls = getattr(importlib.import_module(module_name), class_name, None)
        fn = getattr(cls, attr, None) if cls is not None else None
        if fn is None or isinstance(cls.__dict__.get(attr), classmethod | staticmethod):
            continue

        def wrapped(*a: Any, __fn: Any = fn, __label: str = label, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return __fn(*a, **k)
            finally:
                acc[__label] = acc.get(__label, 0.0) + time.thread_time() - t

        setattr(cls, attr, functools.wraps(fn)(wrapped))


def breakdown(work: Workload, sizes: list[int], reps: int) -> str:
    from gateway.enclave import messages as m
    from gateway.enclave.core import Enclave
    from gateway.node import NodeConfig

    acc: dict[str, float] = {}
    _instrument(_EVM_PARTS, acc)
    _instrument(_GATEWAY_PARTS, acc)
    txs = work.interleaved()
    raws = [tx.raw for tx in txs]
    results: dict[str, dict[str, float]] = {}
    cleanups: list[str] = []
    enclaves: list[Any] = []

    def gateway_run(k: int) -> Callable[[], None]:
        tmp = tempfile.mkdtemp(prefix="coco-bench-breakdown-")
        cleanups.append(tmp)
        enclave = Enclave(NodeConfig(data_dir=Path(tmp)).open_message())
        enclaves.append(enclave)
        clock = [int(time.time())]

        def build() -> Any:
            clock[0] += 1
            return enclave.handle(m.BuildBlock(clock[0]))

        enclave.handle(m.SubmitRawTx(work.setup[0].raw))
        build()
        for tx in work.setup[1:]:
            enclave.handle(m.SubmitRawTx(tx.raw))
        build()

        def run() -> None:
            for start in range(0, len(raws), k):
                for raw in raws[start:start + k]:
                    enclave.handle(m.SubmitRawTx(raw))
                block = build()
                if len(block["transactions"]) != len(raws[start:start + k]):
                    raise RuntimeError("breakdown: a block left transactions behind")
                enclave.handle(m.GetBlockReceipts(block["number"]))
        return run

    def baseline_run(k: int) -> Callable[[], None]:
        chain = evm_chain()
        evm_mine(chain, [work.setup[0].raw])
        evm_mine(chain, [tx.raw for tx in work.setup[1:]])

        def run() -> None:
            for start in range(0, len(raws), k):
                evm_mine(chain, raws[start:start + k])
        return run

    try:
        for k in sizes:
            for name, factory in ((f"gateway enclave, {k}/block", gateway_run),
                                  (f"py-evm mine_all, {k}/block", baseline_run)):
                best: dict[str, float] | None = None
                for _ in range(reps):
                    run = factory(k)
                    acc.clear()
                    t = time.thread_time()
                    run()
                    snap = {**acc, "TOTAL": time.thread_time() - t}
                    if best is None or snap["TOTAL"] < best["TOTAL"]:
                        best = snap
                    while enclaves:
                        enclaves.pop().close()
                assert best is not None
                results[name] = best
                print(f"breakdown: {name}: {best['TOTAL'] * 1000 / len(raws):.2f} ms/tx",
                      flush=True)
    finally:
        while enclaves:
            enclaves.pop().close()
        for tmp in cleanups:
            shutil.rmtree(tmp, ignore_errors=True)
    labels = ["TOTAL"] + [p[3] for p in _GATEWAY_PARTS] + [p[3] for p in _EVM_PARTS]
    names = list(results)
    rows = [
        [label] + [f"{results[n][label] * 1000 / len(raws):.3f}" if label in results[n] else "-"
                   for n in names]
        for label in labels
        if any(label in results[n] for n in names)
    ]
    return (f"CPU milliseconds per transaction (thread time, best of {reps}; nested rows are "
            "included in the rows above them)\n" + table(rows, ["part", *names]))


# ---------------------------------------------------------------------------- report
def report(
    args: argparse.Namespace, work: Workload, base: BaselineResult, gw: GatewayResult
) -> str:
    ms = 1000.0
    ratio = gw.tps / base.tps
    rows = [
        [f"gateway ({args.enclave} enclave)", f"{gw.tps:.1f}",
         f"{percentile(gw.latencies, 50) * ms:.0f}", f"{percentile(gw.latencies, 99) * ms:.0f}",
         f"{gw.seconds:.2f}"],
        [f"baseline py-evm mine_all ({BASELINE_BLOCK}/block)", f"{base.tps:.1f}", "-", "-",
         f"{base.seconds:.2f}"],
        ["ratio gateway / baseline", f"{ratio:.2f}", "", "", ""],
    ]
    lines = [
        "",
        f"ERC-20 transfers: {work.total} txs from {len(work.senders)} senders "
        f"(window {args.window} in flight per sender), {os.cpu_count()} CPUs, "
        f"load average at start {args.load_at_start}",
        "",
        table(rows, ["run", "tx/s", "p50 ms", "p99 ms", "seconds"]),
        "",
        f"target ratio >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f})",
        "",
        "details",
        f"  gateway blocks: {len(gw.block_sizes)}, transactions per block mean "
        f"{sum(gw.block_sizes) / max(1, len(gw.block_sizes)):.1f}, max "
        f"{max(gw.block_sizes, default=0)}",
        f"  eth_sendRawTransaction round trip: p50 "
        f"{percentile(gw.submit_latencies, 50) * ms:.1f} ms, p99 "
        f"{percentile(gw.submit_latencies, 99) * ms:.1f} ms",
        f"  failed receipts (status 0): {gw.failed}",
        "  CPU seconds per 1000 txs: "
        + ", ".join(f"{k} {v * 1000 / gw.txs:.2f}" for k, v in gw.cpu_seconds.items())
        + f"; baseline {base.cpu_seconds * 1000 / base.txs:.2f}",
        f"  baseline on CPU time: {base.txs / base.cpu_seconds:.1f} tx/s "
        f"(wall {base.tps:.1f}); blocks {base.blocks}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.erc20", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--txs", type=int, default=2000)
    parser.add_argument("--enclave", choices=["process", "inprocess"], default="process")
    parser.add_argument("--window", type=int, default=POOL_NONCE_WINDOW,
                        help="transactions in flight per sender (the pool allows 64 ahead)")
    parser.add_argument("--poll-interval", type=float, default=0.005,
                        help="seconds between eth_blockNumber polls when no block is new")
    parser.add_argument("--timeout", type=float, default=110.0,
                        help="give up the gateway run after this many seconds")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--profile", metavar="DIR", nargs="?", const="",
                        help="sample the node and enclave processes with py-spy during the "
                        "timed part; collapsed stacks go to DIR (default: a temp dir)")
    parser.add_argument("--py-spy", default=None, help="path of the py-spy binary")
    parser.add_argument("--breakdown", metavar="SIZES", nargs="?", const="20,100",
                        help="instead of the runs, drive the enclave in-process with blocks of "
                        "each size (default 20,100) and print where its CPU time goes, beside "
                        "py-evm's mine_all at the same block size")
    parser.add_argument("--reps", type=int, default=2, help="repetitions per --breakdown run")
    args = parser.parse_args(argv)
    if args.senders < 1 or args.txs < 1:
        parser.error("--senders and --txs must be positive")
    args.window = max(1, min(args.window, POOL_NONCE_WINDOW))
    args.load_at_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    profile_dir = None
    py_spy = None
    if args.profile is not None:
        py_spy = find_py_spy(args.py_spy)
        if py_spy is None:
            parser.error("--profile needs py-spy on PATH or --py-spy PATH")
        profile_dir = Path(args.profile or tempfile.mkdtemp(prefix="coco-bench-profile-"))
        profile_dir.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    work = make_workload(args.senders, args.txs)
    print(f"signed {len(work.setup)} setup + {work.total} transfer txs in "
          f"{time.perf_counter() - t:.1f} s", flush=True)

    if args.breakdown is not None:
        sizes = [int(s) for s in args.breakdown.split(",") if s.strip()]
        print(breakdown(work, sizes, max(1, args.reps)))
        return 0

    base = None
    if not args.skip_baseline:
        base = run_baseline(work)
        print(f"baseline: {base.tps:.1f} tx/s ({base.txs} txs in {base.seconds:.2f} s)", flush=True)

    gw = run_gateway(
        work,
        enclave=args.enclave,
        poll_interval=args.poll_interval,
        window=args.window,
        timeout=args.timeout,
        profile_dir=profile_dir,
        py_spy=py_spy,
    )
    print(f"gateway: {gw.tps:.1f} tx/s ({gw.txs} txs in {gw.seconds:.2f} s)", flush=True)
    if base is None:
        return 0
    print(report(args, work, base, gw))
    return 0 if gw.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
