"""ERC-20 transfer throughput: the gateway against py-evm's own fast path, and the cost of
confidentiality (the same transfers with their call data in request envelopes).

    python -m bench.erc20 [--senders 20] [--txs 2000] [--enclave process|inprocess]
    python -m bench.erc20 --encrypted [--rounds 1]

Everything is signed before anything is timed. The baseline mines the same signed
transfers directly with py-evm (in-memory AtomicDB, ``MiningChain.mine_all``, blocks of
100, one state root per block); the gateway run sends them to a fresh node process from
one asyncio task per sender and watches blocks for the receipts. With ``--encrypted`` a
second fresh node gets the same transfers (same senders, nonces, recipients and amounts)
with their call data sealed to its attested transaction key, sealed and signed after the
node starts but before the clock does. See docs/performance.md.
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
    TxKey,
    Workload,
    apply_setup,
    cpu_seconds,
    envelope_sealer,
    evm_chain,
    evm_mine,
    fetch_tx_key,
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
SEALED_LOG_PREFIX = "0xc0c052"  # gateway.protocol.envelope.RESPONSE_MAGIC


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
        evm_mine(chain, raws[start : start + block_size])
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
    gas_used: list[int] = field(default_factory=list)
    sealed_logs: int = 0  # receipts whose every log's data is a response envelope
    encrypted: bool = False
    label: str = ""

    @property
    def tps(self) -> float:
        return self.txs / self.seconds


async def drive_gateway(
    submit: Rpc | list[Rpc],
    work: Workload,
    *,
    poll_interval: float,
    window: int,
    timeout: float,
    watch: Rpc | None = None,
    follow: str = "latest",
) -> GatewayResult:
    """The timed part, for one node or a cluster: one asyncio task per sender sends its
    transfers one after another (sender i to ``submit[i mod n]``; never waiting for receipts,
    but at most ``window`` in flight), while one watcher on ``watch`` (default: the first
    node) follows the ``follow`` block ("latest", or "finalized" for submit-to-finality) and
    fetches each new block's receipts. Latency is submit to the watcher holding the receipt;
    throughput is transfers over first submit to last receipt."""
    nodes = submit if isinstance(submit, list) else [submit]
    watcher_rpc = watch or nodes[0]
    submitted: dict[bytes, float] = {}
    observed: dict[bytes, float] = {}
    submit_latencies: list[float] = []
    block_sizes: list[int] = []
    gas_used: list[int] = []
    sealed_logs = 0
    inflight = [0] * len(work.senders)
    wakeups = [asyncio.Event() for _ in work.senders]
    owner = {tx.hash: i for i, q in enumerate(work.transfers) for tx in q}
    expected = work.total
    failed = 0
    first_block = await _followed(watcher_rpc, follow) + 1

    async def sender(i: int) -> None:
        rpc = nodes[i % len(nodes)]
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
        nonlocal failed, sealed_logs
        next_block = first_block
        while len(observed) < expected:
            head = await _followed(watcher_rpc, follow)
            if head < next_block:
                await asyncio.sleep(poll_interval)
                continue
            for number in range(next_block, head + 1):
                receipts = await watcher_rpc.call("eth_getBlockReceipts", [hex(number)])
                now = time.perf_counter()
                block_sizes.append(len(receipts))
                for receipt in receipts:
                    tx_hash = bytes.fromhex(receipt["transactionHash"][2:])
                    if tx_hash not in owner or tx_hash in observed:
                        continue
                    observed[tx_hash] = now
                    if receipt["status"] != "0x1":
                        failed += 1
                    gas_used.append(int(receipt["gasUsed"], 16))
                    logs = receipt.get("logs") or []
                    if logs and all(str(log["data"]).startswith(SEALED_LOG_PREFIX) for log in logs):
                        sealed_logs += 1
                    i = owner[tx_hash]
                    inflight[i] -= 1
                    wakeups[i].set()
            next_block = head + 1

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(sender(i)) for i in range(len(work.senders))]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, watcher()), timeout)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        raise RuntimeError(
            f"timed out after {timeout:g} s with {len(observed)}/{expected} receipts"
        ) from None
    first_submit = min(submitted.values(), default=t0)
    last_receipt = max(observed.values())
    latencies = [observed[h] - submitted[h] for h in observed]
    return GatewayResult(
        expected,
        last_receipt - first_submit,
        latencies,
        submit_latencies,
        block_sizes,
        failed=failed,
        gas_used=gas_used,
        sealed_logs=sealed_logs,
        encrypted=work.encrypted,
    )


async def _followed(rpc: Rpc, follow: str) -> int:
    """The number of the ``follow`` block ("latest": eth_blockNumber), -1 if there is none."""
    if follow == "latest":
        return int(await rpc.call("eth_blockNumber"), 16)
    block = await rpc.call("eth_getBlockByNumber", [follow, False])
    return -1 if block is None else int(block["number"], 16)


def run_gateway(
    work: Workload,
    *,
    encrypted: bool,
    label: str,
    enclave: str,
    poll_interval: float,
    window: int,
    timeout: float,
    profile_dir: Path | None,
    py_spy: str | None,
) -> GatewayResult:
    """One timed run on a fresh node. With ``encrypted``, the transfers are first sealed to
    the node's attested transaction key and signed again, before the clock starts."""
    with NodeProcess(enclave=enclave) as node:
        if encrypted:
            t = time.perf_counter()
            key = fetch_tx_key(node.url)
            work = work.sealed(envelope_sealer(key))
            print(
                f"{label}: sealed and signed {work.total} transfers to the {key.platform} "
                f"enclave's key of epoch {key.epoch} in {time.perf_counter() - t:.1f} s "
                "(untimed)",
                flush=True,
            )

        async def main() -> GatewayResult:
            async with Rpc(node.url, connections=len(work.senders) + 8) as rpc:
                await apply_setup(rpc, work.setup)
                pids = {"node": node.proc.pid if node.proc else None, "enclave": node.enclave_pid()}
                spies = []
                if profile_dir is not None and py_spy is not None:
                    for name, pid in pids.items():
                        if pid is not None:
                            out = profile_dir / f"{label}-{name}.txt"
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
                result.label = label
                result.cpu_seconds = {
                    name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items() if pid
                }
                result.cpu_seconds["client"] = time.process_time() - client0
                for name, out, _ in spies:
                    if out.exists():
                        print(f"\n--- py-spy profile of the {name} process, {label} run ({out})")
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
    ("gateway.execution.admission", "Admission", "open_envelope", "    Admission.open_envelope"),
    ("gateway.execution.engine", "Engine", "_state", "    Engine._state (new VM + state)"),
    ("gateway.ledger.store", "Ledger", "pool_add", "  Ledger.pool_add"),
    ("gateway.enclave.core", "Enclave", "_on_BuildBlock", "BuildBlock"),
    ("gateway.execution.engine", "Engine", "select_block", "  Engine.select_block"),
    ("gateway.execution.engine", "Engine", "execute_block", "  Engine.execute_block"),
    ("gateway.execution.engine", "Engine", "build_block", "  Engine.build_block"),
    ("gateway.execution.pool", "TxPool", "executable", "    TxPool.executable"),
    ("gateway.execution.engine", "Engine", "block_rpc", "  Engine.block_rpc"),
    ("gateway.ledger.store", "Ledger", "commit_block", "  Ledger.commit_block"),
    ("gateway.enclave.core", "Enclave", "_on_GetBlockReceipts", "GetBlockReceipts"),
    ("gateway.execution.views", "BlockViews", "shown_logs", "  BlockViews.shown_logs (seal logs)"),
    ("gateway.execution.views", "BlockViews", "data", "BlockViews.data (re-read block)"),
    ("gateway.ledger.store", "BufferedKV", "__getitem__", "BufferedKV.__getitem__ (SQLite)"),
    ("gateway.enclave.storage", "StorageSealer", "seal", "StorageSealer.seal (ledger AES-GCM)"),
    ("gateway.enclave.storage", "StorageSealer", "open", "StorageSealer.open (ledger AES-GCM)"),
    ("gateway.enclave.keys", "KeyRing", "tx_key", "KeyRing.tx_key (epoch key derivation)"),
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


def breakdown(work: Workload, sizes: list[int], reps: int, encrypted: bool = False) -> str:
    from gateway.enclave import messages as m
    from gateway.enclave.core import Enclave
    from gateway.node import NodeConfig
    from gateway.protocol.envelope import epoch_at

    acc: dict[str, float] = {}
    _instrument(_EVM_PARTS, acc)
    _instrument(_GATEWAY_PARTS, acc)
    plain_raws = [tx.raw for tx in work.interleaved()]
    results: dict[str, dict[str, float]] = {}
    cleanups: list[str] = []
    enclaves: list[Any] = []

    def gateway_run(k: int, sealed: bool = False) -> Callable[[], None]:
        tmp = tempfile.mkdtemp(prefix="coco-bench-breakdown-")
        cleanups.append(tmp)
        enclave = Enclave(NodeConfig(data_dir=Path(tmp)).open_message())
        enclaves.append(enclave)
        clock = [int(time.time())]
        raws = plain_raws
        if sealed:  # to this enclave's own key (a fresh consortium secret per data dir)
            epoch = epoch_at(clock[0], enclave.keys.epoch_period)
            key = TxKey(epoch, enclave.keys.tx_public(epoch), "virtual", b"")
            raws = [tx.raw for tx in work.sealed(envelope_sealer(key)).interleaved()]

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
                for raw in raws[start : start + k]:
                    enclave.handle(m.SubmitRawTx(raw))
                block = build()
                if len(block["transactions"]) != len(raws[start : start + k]):
                    raise RuntimeError("breakdown: a block left transactions behind")
                enclave.handle(m.GetBlockReceipts(block["number"]))

        return run

    def baseline_run(k: int) -> Callable[[], None]:
        chain = evm_chain()
        evm_mine(chain, [work.setup[0].raw])
        evm_mine(chain, [tx.raw for tx in work.setup[1:]])

        def run() -> None:
            for start in range(0, len(plain_raws), k):
                evm_mine(chain, plain_raws[start : start + k])

        return run

    def sealed_run(k: int) -> Callable[[], None]:
        return gateway_run(k, sealed=True)

    try:
        for k in sizes:
            plan: list[tuple[str, Callable[[int], Callable[[], None]]]] = [
                (f"gateway enclave, {k}/block", gateway_run)
            ]
            if encrypted:
                plan.append((f"gateway encrypted, {k}/block", sealed_run))
            plan.append((f"py-evm mine_all, {k}/block", baseline_run))
            for name, factory in plan:
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
                print(
                    f"breakdown: {name}: {best['TOTAL'] * 1000 / work.total:.2f} ms/tx", flush=True
                )
    finally:
        while enclaves:
            enclaves.pop().close()
        for tmp in cleanups:
            shutil.rmtree(tmp, ignore_errors=True)
    labels = ["TOTAL"] + [p[3] for p in _GATEWAY_PARTS] + [p[3] for p in _EVM_PARTS]
    names = list(results)
    rows = [
        [label]
        + [
            f"{results[n][label] * 1000 / work.total:.3f}" if label in results[n] else "-"
            for n in names
        ]
        for label in labels
        if any(label in results[n] for n in names)
    ]
    return (
        f"CPU milliseconds per transaction (thread time, best of {reps}; nested rows are "
        "included in the rows above them)\n" + table(rows, ["part", *names])
    )


# ---------------------------------------------------------------------------- report
def pooled(runs: list[GatewayResult]) -> GatewayResult:
    """Several runs of one kind as one: transfers over summed seconds, latencies pooled."""
    if len(runs) == 1:
        return runs[0]
    cpu: dict[str, float] = {}
    for r in runs:
        for k, v in r.cpu_seconds.items():
            cpu[k] = cpu.get(k, 0.0) + v
    return GatewayResult(
        sum(r.txs for r in runs),
        sum(r.seconds for r in runs),
        [x for r in runs for x in r.latencies],
        [x for r in runs for x in r.submit_latencies],
        [x for r in runs for x in r.block_sizes],
        cpu,
        sum(r.failed for r in runs),
        [x for r in runs for x in r.gas_used],
        sum(r.sealed_logs for r in runs),
        runs[0].encrypted,
        f"{runs[0].label.rsplit('#', 1)[0]}, pooled",
    )


def report(
    args: argparse.Namespace,
    work: Workload,
    base: BaselineResult | None,
    runs: list[GatewayResult],
) -> tuple[str, bool]:
    """The table and details; also whether every check held (receipts, sealed logs)."""
    ms = 1000.0
    plain = pooled([r for r in runs if not r.encrypted]) if not args.encrypted_only else None
    sealed = [r for r in runs if r.encrypted]
    enc = pooled(sealed) if sealed else None
    shown = list(runs)
    if len(runs) > 2:
        shown += [x for x in (plain, enc) if x is not None]

    def row(r: GatewayResult) -> list[str]:
        return [
            f"gateway {r.label}",
            f"{r.tps:.1f}",
            f"{percentile(r.latencies, 50) * ms:.0f}",
            f"{percentile(r.latencies, 99) * ms:.0f}",
            f"{r.seconds:.2f}",
        ]

    rows = [row(r) for r in shown]
    ratios: list[tuple[str, float, float]] = []  # (what, ratio, target)
    if base is not None:
        rows.append(
            [
                f"baseline py-evm mine_all ({BASELINE_BLOCK}/block)",
                f"{base.tps:.1f}",
                "-",
                "-",
                f"{base.seconds:.2f}",
            ]
        )
        for r in (plain, enc):
            if r is not None:
                kind = "encrypted" if r.encrypted else "plaintext"
                ratios.append((f"gateway {kind} / baseline", r.tps / base.tps, 0.80))
    if plain is not None and enc is not None:
        ratios.append(("encrypted / plaintext", enc.tps / plain.tps, 0.85))
    rows += [[f"ratio {what}", f"{value:.2f}", "", "", ""] for what, value, _ in ratios]
    lines = [
        "",
        f"ERC-20 transfers: {work.total} txs from {len(work.senders)} senders per run "
        f"(window {args.window} in flight per sender), {args.enclave} enclave, a fresh node per "
        f"run, {os.cpu_count()} CPUs, load average at start {args.load_at_start}, at end "
        f"{_loadavg()}",
        "",
        table(rows, ["run", "tx/s", "p50 ms", "p99 ms", "seconds"]),
        "",
    ]
    lines += [
        f"target {what} >= {target:.2f}: {'met' if value >= target else 'NOT met'} ({value:.2f})"
        for what, value, target in ratios
    ]
    ok = True
    lines += ["", "details"]
    for r in runs:
        lines += [
            f"  {r.label}: {len(r.block_sizes)} blocks, transactions per block mean "
            f"{sum(r.block_sizes) / max(1, len(r.block_sizes)):.1f}, max "
            f"{max(r.block_sizes, default=0)}; gas used per transfer mean "
            f"{sum(r.gas_used) / max(1, len(r.gas_used)):.0f}",
            f"    eth_sendRawTransaction round trip: p50 "
            f"{percentile(r.submit_latencies, 50) * ms:.1f} ms, p99 "
            f"{percentile(r.submit_latencies, 99) * ms:.1f} ms; failed receipts (status 0): "
            f"{r.failed}; receipts with sealed logs: {r.sealed_logs}/{r.txs}",
            "    CPU seconds per 1000 txs: "
            + ", ".join(f"{k} {v * 1000 / r.txs:.2f}" for k, v in r.cpu_seconds.items()),
        ]
        expected_sealed = r.txs if r.encrypted else 0
        if r.failed or r.sealed_logs != expected_sealed:
            ok = False
            lines.append(
                f"    CHECK FAILED: expected no failed receipts and {expected_sealed} "
                "receipts with sealed logs"
            )
    if plain is not None and enc is not None:

        def per_tx(r: GatewayResult, part: str | None = None) -> float:
            cpu = r.cpu_seconds.get(part, 0.0) if part else sum(r.cpu_seconds.values())
            return cpu * 1000 / r.txs

        lines.append(
            "  CPU ms per transfer, encrypted vs plaintext: "
            + ", ".join(
                f"{k} {per_tx(enc, k):.2f} vs {per_tx(plain, k):.2f}"
                for k in plain.cpu_seconds
                if k in enc.cpu_seconds
            )
            + f"; all processes {per_tx(enc):.2f} vs {per_tx(plain):.2f} "
            f"(CPU ratio plaintext / encrypted {per_tx(plain) / per_tx(enc):.2f})"
        )
    if base is not None:
        lines.append(
            f"  baseline: CPU seconds per 1000 txs {base.cpu_seconds * 1000 / base.txs:.2f}; on "
            f"CPU time {base.txs / base.cpu_seconds:.1f} tx/s (wall {base.tps:.1f}); blocks "
            f"{base.blocks}"
        )
    return "\n".join(lines), ok


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.erc20",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--txs", type=int, default=2000)
    parser.add_argument("--enclave", choices=["process", "inprocess"], default="process")
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="after the plaintext run, run the same transfers with their call "
        "data sealed in request envelopes (a fresh node each) and print the "
        "ratio encrypted / plaintext",
    )
    parser.add_argument(
        "--encrypted-only",
        action="store_true",
        help="only the encrypted gateway run (with the baseline)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --encrypted: this many plaintext/encrypted pairs, the order "
        "alternating (P E, E P, ...); the ratios pool all runs of a kind",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=POOL_NONCE_WINDOW,
        help="transactions in flight per sender (the pool allows 64 ahead)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.005,
        help="seconds between eth_blockNumber polls when no block is new",
    )
    parser.add_argument(
        "--timeout", type=float, default=110.0, help="give up a gateway run after this many seconds"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        nargs="?",
        const="",
        help="sample the node and enclave processes with py-spy during the "
        "timed part of each run; collapsed stacks go to DIR/LABEL-PROCESS.txt "
        "(default: a temp dir)",
    )
    parser.add_argument("--py-spy", default=None, help="path of the py-spy binary")
    parser.add_argument(
        "--breakdown",
        metavar="SIZES",
        nargs="?",
        const="20,100",
        help="instead of the runs, drive the enclave in-process with blocks of "
        "each size (default 20,100) and print where its CPU time goes, beside "
        "py-evm's mine_all at the same block size (with --encrypted, also the "
        "enveloped transfers)",
    )
    parser.add_argument("--reps", type=int, default=2, help="repetitions per --breakdown run")
    args = parser.parse_args(argv)
    if args.senders < 1 or args.txs < 1 or args.rounds < 1:
        parser.error("--senders, --txs and --rounds must be positive")
    if args.rounds > 1 and not args.encrypted:
        parser.error("--rounds needs --encrypted")
    if args.encrypted_only and args.encrypted:
        parser.error("--encrypted-only and --encrypted exclude each other")
    args.window = max(1, min(args.window, POOL_NONCE_WINDOW))
    args.load_at_start = _loadavg()

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
    print(
        f"signed {len(work.setup)} setup + {work.total} transfer txs in "
        f"{time.perf_counter() - t:.1f} s",
        flush=True,
    )

    if args.breakdown is not None:
        sizes = [int(s) for s in args.breakdown.split(",") if s.strip()]
        print(breakdown(work, sizes, max(1, args.reps), encrypted=args.encrypted))
        return 0

    base = None
    if not args.skip_baseline:
        base = run_baseline(work)
        print(f"baseline: {base.tps:.1f} tx/s ({base.txs} txs in {base.seconds:.2f} s)", flush=True)

    if args.encrypted_only:
        plan = [True]
    elif not args.encrypted:
        plan = [False]
    else:
        plan = []
        for i in range(args.rounds):
            plan += [False, True] if i % 2 == 0 else [True, False]
    runs: list[GatewayResult] = []
    for i, encrypted in enumerate(plan):
        label = "encrypted" if encrypted else "plaintext"
        if args.rounds > 1:
            label += f"#{i // 2 + 1}"
        gw = run_gateway(
            work,
            encrypted=encrypted,
            label=label,
            enclave=args.enclave,
            poll_interval=args.poll_interval,
            window=args.window,
            timeout=args.timeout,
            profile_dir=profile_dir,
            py_spy=py_spy,
        )
        print(
            f"gateway {label}: {gw.tps:.1f} tx/s ({gw.txs} txs in {gw.seconds:.2f} s)", flush=True
        )
        runs.append(gw)
    text, ok = report(args, work, base, runs)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
