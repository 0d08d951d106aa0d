"""Read throughput: eth_blockNumber, eth_getBalance and eth_call (Token.balanceOf).

    python -m bench.reads [--clients 16] [--seconds 10] [--enclave process|inprocess]

Each method gets its own phase of ``--seconds``: ``--clients`` concurrent asyncio tasks call
it back to back against a fresh node with the token deployed and ``--blocks`` empty blocks on
top (a chain longer than the 256 hashes BLOCKHASH can reach, as any real chain is). The
baseline makes the same reads directly against py-evm in this process, on a chain of the same
height (no HTTP, no enclave boundary): the head header, a state balance, and the balanceOf
message run with ``VM.execute_bytecode``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    NodeProcess,
    Rpc,
    apply_setup,
    balance_of_data,
    cpu_seconds,
    evm_chain,
    evm_mine,
    make_workload,
    percentile,
    table,
)

METHODS = ("eth_blockNumber", "eth_getBalance", "eth_call")
CALL_GAS = 50_000_000


@dataclass
class Phase:
    method: str
    requests: int
    seconds: float
    latencies: list[float]
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _params(method: str, token: bytes, holder: bytes) -> list[Any]:
    if method == "eth_blockNumber":
        return []
    if method == "eth_getBalance":
        return ["0x" + holder.hex(), "latest"]
    call = {"to": "0x" + token.hex(), "data": "0x" + balance_of_data(holder).hex()}
    return [call, "latest"]


def _check(method: str, result: Any, expected: Any) -> None:
    if result != expected:
        raise RuntimeError(f"{method} returned {result!r}, expected {expected!r}")


async def _phase(
    rpc: Rpc,
    method: str,
    params: list[Any],
    clients: int,
    seconds: float,
    pids: dict[str, int | None],
) -> Phase:
    expected = await rpc.call(method, params)  # warm up, and the answer every call must give
    latencies: list[float] = []
    stop_at = 0.0

    async def client() -> None:
        while True:
            t = time.perf_counter()
            if t >= stop_at:
                return
            result = await rpc.call(method, params)
            latencies.append(time.perf_counter() - t)
            _check(method, result, expected)

    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    client0 = time.process_time()
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items() if pid}
    cpu["client"] = time.process_time() - client0
    return Phase(method, len(latencies), elapsed, latencies, cpu)


def run_gateway(args: argparse.Namespace) -> tuple[list[Phase], dict[str, Any]]:
    work = make_workload(senders=4, txs=0)
    holder = work.senders[0].address
    info: dict[str, Any] = {"token": work.token, "holder": holder, "work": work}
    with NodeProcess(enclave=args.enclave) as node:

        async def main() -> list[Phase]:
            async with Rpc(node.url, connections=args.clients + 4) as rpc:
                await apply_setup(rpc, work.setup)
                for _ in range(args.blocks):
                    await rpc.call("evm_mine")
                info["height"] = int(await rpc.call("eth_blockNumber"), 16)
                pids = {"node": node.proc.pid if node.proc else None, "enclave": node.enclave_pid()}
                phases = []
                for method in METHODS:
                    params = _params(method, work.token, holder)
                    phase = await _phase(rpc, method, params, args.clients, args.seconds, pids)
                    print(f"gateway {method}: {phase.rps:.0f} req/s", flush=True)
                    phases.append(phase)
                return phases

        return asyncio.run(main()), info


# ---------------------------------------------------------------------------- baseline
def baseline_reads(work: Any, seconds: float, height: int) -> tuple[dict[str, Phase], int]:
    """The same three reads straight against py-evm, one after another in this thread."""
    from eth import constants

    chain = evm_chain()
    evm_mine(chain, [work.setup[0].raw])
    evm_mine(chain, [tx.raw for tx in work.setup[1:]])
    while chain.get_canonical_head().block_number < height:  # the gateway chain's height
        evm_mine(chain, [])
    token, holder = work.token, work.senders[0].address
    data = balance_of_data(holder)

    def block_number() -> int:
        return int(chain.get_canonical_head().block_number)

    def balance() -> int:
        return int(chain.get_vm(chain.get_canonical_head()).state.get_balance(holder))

    def call() -> bytes:
        vm = chain.get_vm(chain.get_canonical_head())
        state = vm.state
        computation = vm.execute_bytecode(
            origin=constants.ZERO_ADDRESS,
            gas_price=0,
            gas=CALL_GAS,
            to=token,
            sender=constants.ZERO_ADDRESS,
            value=0,
            data=data,
            code=state.get_code(token),
        )
        if computation.is_error:
            raise RuntimeError(f"baseline balanceOf failed: {computation.error!r}")
        return bytes(computation.output)

    fns: dict[str, Callable[[], Any]] = {
        "eth_blockNumber": block_number,
        "eth_getBalance": balance,
        "eth_call": call,
    }
    out = {}
    for method, fn in fns.items():
        fn()
        latencies = []
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        while True:
            t = time.perf_counter()
            if t - t0 >= seconds:
                break
            fn()
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        out[method] = Phase(
            method, len(latencies), elapsed, latencies, {"baseline": time.process_time() - cpu0}
        )
    return out, int(chain.get_canonical_head().block_number)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each method's phase"
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=3.0,
        help="duration of each in-process baseline loop",
    )
    parser.add_argument("--enclave", choices=["process", "inprocess"], default="process")
    parser.add_argument(
        "--blocks",
        type=int,
        default=300,
        help="empty blocks to mine after the setup, so that the chain is longer "
        "than the 256 block hashes an EVM call may ask for (default 300)",
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients and --seconds must be positive")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    phases, info = run_gateway(args)
    base, base_height = baseline_reads(info["work"], args.baseline_seconds, info["height"])
    ms = 1000.0
    rows = []
    for phase in phases:
        b = base[phase.method]
        rows.append(
            [
                phase.method,
                f"{phase.rps:.0f}",
                f"{percentile(phase.latencies, 50) * ms:.2f}",
                f"{percentile(phase.latencies, 99) * ms:.2f}",
                f"{b.rps:.0f}",
                f"{percentile(b.latencies, 50) * ms:.3f}",
                f"{phase.rps / b.rps:.2f}",
            ]
        )
    print()
    print(
        f"reads: {args.clients} clients, {args.seconds:g} s per method, {args.enclave} enclave, "
        f"chain height {info['height']} (baseline {base_height}), {os.cpu_count()} CPUs, "
        f"load average at start {load}"
    )
    print()
    print(
        table(
            rows,
            [
                "method",
                "gateway req/s",
                "p50 ms",
                "p99 ms",
                "baseline calls/s",
                "baseline p50 ms",
                "ratio",
            ],
        )
    )
    print()
    print("CPU milliseconds per request (gateway processes and this client; baseline):")
    for phase in phases:
        per = ", ".join(f"{k} {v * ms / phase.requests:.3f}" for k, v in phase.cpu_seconds.items())
        b = base[phase.method]
        own = b.cpu_seconds["baseline"] * ms / b.requests
        print(f"  {phase.method}: {per}; baseline {own:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
