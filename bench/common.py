"""Shared pieces of the benchmarks: the signed workload (plaintext or with its call data
sealed in request envelopes), a node process, a JSON-RPC client, the in-process py-evm chain
used as baseline, and small statistics helpers.

Nothing here imports the gateway's execution or enclave code: the baseline talks to py-evm
directly, so that it measures py-evm's own fast path and not the gateway's engine. Sealing
uses what a client uses: ``gateway.protocol.envelope`` and ``gateway.client.attest``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from gateway.devaccounts import DEV_BALANCE_WEI, derive

REPO = Path(__file__).resolve().parent.parent
TOKEN_ARTIFACT = REPO / "contracts" / "build" / "Token.json"

CHAIN_ID = 31337
GENESIS_BASE_FEE = 10**9
GAS_LIMIT = 30_000_000
MAX_FEE = 20 * 10**9  # well above the base fee, which only falls in these runs
TIP = 10**9
TRANSFER_GAS = 100_000  # an ERC-20 transfer uses ~35-52k
CALLDATA_NONZERO_GAS = 16  # per non-zero byte of call data
DEPLOY_GAS = 3_000_000
SENDER_ETH = 10**18  # enough for 100+ transfers at MAX_FEE * TRANSFER_GAS each
SENDER_TOKENS = 10**24
POOL_NONCE_WINDOW = 64  # the gateway's pool refuses nonces more than 64 ahead of state

# py-evm's genesis for the chain the gateway creates: the same fork, gas limit, base fee.
CREATE2_DEPLOYER = bytes.fromhex("4e59b44847b379578588920ca78fbf26c0b4956c")
CREATE2_DEPLOYER_CODE = bytes.fromhex(
    "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035"
    "828234f58015156039578182fd5b8082525050506014600cf3"
)


# ---------------------------------------------------------------------------- contract
def token_artifact() -> dict[str, Any]:
    return json.loads(TOKEN_ARTIFACT.read_text())


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def deploy_data(name: str = "Bench", symbol: str = "BNC", supply: int = 10**30) -> bytes:
    code = token_artifact()["bytecode"]
    code = bytes.fromhex(code[2:] if code.startswith("0x") else code)
    return code + abi_encode(["string", "string", "uint256"], [name, symbol, supply])


def transfer_data(to: bytes, amount: int) -> bytes:
    return _selector("transfer(address,uint256)") + abi_encode(["address", "uint256"], [to, amount])


def balance_of_data(owner: bytes) -> bytes:
    return _selector("balanceOf(address)") + abi_encode(["address"], [owner])


def contract_address(sender: bytes, nonce: int) -> bytes:
    import rlp

    return keccak(rlp.encode([sender, nonce]))[12:]


# ---------------------------------------------------------------------------- signing
@dataclass(frozen=True)
class Key:
    private_key: bytes
    address: bytes  # 20 bytes

    @classmethod
    def from_private(cls, private_key: bytes) -> Key:
        return cls(private_key, bytes.fromhex(Account.from_key(private_key).address[2:]))

    @property
    def checksum(self) -> str:
        return to_checksum_address(self.address)


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    hash: bytes
    sender: bytes
    nonce: int


def sign(
    key: Key, nonce: int, to: bytes | None, data: bytes = b"", value: int = 0, gas: int = 21_000
) -> SignedTx:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "maxFeePerGas": MAX_FEE,
        "maxPriorityFeePerGas": TIP,
        "gas": gas,
        "value": value,
        "data": data,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    signed = Account.sign_transaction(tx, key.private_key)
    raw = bytes(signed.raw_transaction)
    return SignedTx(raw, keccak(raw), key.address, nonce)


def dev_keys(count: int = 10) -> list[Key]:
    return [Key(a.private_key, bytes.fromhex(a.address[2:])) for a in derive(count=count)]


def bench_keys(count: int) -> list[Key]:
    """Deterministic sender keys that are not dev accounts (they start with nothing)."""
    return [Key.from_private(keccak(b"coco-bench-sender-%d" % i)) for i in range(count)]


Sealer = Callable[[bytes, bytes, bytes], bytes]
"""``seal(sender, to, plaintext) -> data``: what goes into a transfer's ``data``."""


@dataclass
class Workload:
    """Every transaction of a run, signed before anything is timed.

    ``setup``: deploy the token from dev account 0, then give each sender ETH and tokens.
    ``transfers[i]``: sender i's ERC-20 transfers, in nonce order, each to the next sender
    in a ring (so every transfer updates two existing balances of the token).
    ``encrypted``: the transfers' data are request envelopes (see ``Workload.sealed``).
    """

    deployer: Key
    senders: list[Key]
    token: bytes
    setup: list[SignedTx]
    transfers: list[list[SignedTx]]
    encrypted: bool = False

    @property
    def total(self) -> int:
        return sum(len(q) for q in self.transfers)

    def interleaved(self) -> list[SignedTx]:
        """All transfers round-robin over senders (each sender's stay in nonce order)."""
        out: list[SignedTx] = []
        depth = max((len(q) for q in self.transfers), default=0)
        for j in range(depth):
            out.extend(q[j] for q in self.transfers if j < len(q))
        return out

    def sealed(self, seal: Sealer) -> Workload:
        """The same transfers (senders, nonces, recipients, amounts), signed again with their
        call data sealed by ``seal``; the setup stays as it is (plaintext, untimed)."""
        counts = [len(q) for q in self.transfers]
        transfers = make_transfers(self.senders, self.token, counts, seal)
        return Workload(self.deployer, self.senders, self.token, self.setup, transfers, True)


def make_transfers(
    keys: Sequence[Key], token: bytes, counts: Sequence[int], seal: Sealer | None = None
) -> list[list[SignedTx]]:
    """Sender i's ``counts[i]`` transfers to sender i+1 (mod n), amounts 1, 2, 3, ...

    Sealed data pays calldata gas on every envelope byte, and its ciphertext has no zero
    bytes where the plaintext had many: an enveloped transfer gets ``TRANSFER_GAS`` plus
    16 gas per envelope byte (an upper bound on what the envelope adds to intrinsic gas).
    """
    transfers: list[list[SignedTx]] = []
    for i, (k, count) in enumerate(zip(keys, counts, strict=True)):
        to = keys[(i + 1) % len(keys)].address
        queue = []
        for n in range(count):
            data = transfer_data(to, 1 + n)
            gas = TRANSFER_GAS
            if seal is not None:
                data = seal(k.address, token, data)
                gas += CALLDATA_NONZERO_GAS * len(data)
            queue.append(sign(k, n, token, data, gas=gas))
        transfers.append(queue)
    return transfers


def make_workload(senders: int, txs: int) -> Workload:
    deployer = dev_keys(1)[0]
    keys = bench_keys(senders)
    token = contract_address(deployer.address, 0)
    setup = [sign(deployer, 0, None, deploy_data(), gas=DEPLOY_GAS)]
    nonce = 1
    for k in keys:
        setup.append(sign(deployer, nonce, k.address, value=SENDER_ETH))
        fund = transfer_data(k.address, SENDER_TOKENS)
        setup.append(sign(deployer, nonce + 1, token, fund, gas=TRANSFER_GAS))
        nonce += 2
    counts = [txs // senders + (1 if i < txs % senders else 0) for i in range(senders)]
    return Workload(deployer, keys, token, setup, make_transfers(keys, token, counts))


# ---------------------------------------------------------------------------- envelopes
@dataclass(frozen=True)
class TxKey:
    """The enclave transaction key the encrypted workload is sealed to."""

    epoch: int
    public_key: bytes
    platform: str
    measurement: bytes


def fetch_tx_key(url: str) -> TxKey:
    """The node's attested transaction key of the current epoch (``coco_getAttestation``,
    signature checked; a virtual enclave is accepted, as on a dev node)."""
    from gateway.client.attest import fetch_and_verify
    from gateway.protocol.envelope import epoch_at

    report = fetch_and_verify(url, expected_chain_id=CHAIN_ID, allow_virtual=True)
    current = epoch_at(int(time.time()), report.epoch_period)
    keys = [k for k in report.tx_keys if k.epoch == current] or list(report.tx_keys[:1])
    if not keys:
        raise RuntimeError(f"{url}: the attestation lists no transaction key")
    return TxKey(keys[0].epoch, keys[0].public_key, report.platform, report.measurement)


def envelope_sealer(key: TxKey, chain_id: int = CHAIN_ID) -> Sealer:
    """Seal call data as ``gateway/client`` does: envelope v1, kind CALL, bound to the
    transaction's sender and recipient, a fresh ephemeral key and nonce per envelope."""
    from gateway.protocol.envelope import Kind, seal_request

    def seal(sender: bytes, to: bytes, plaintext: bytes) -> bytes:
        return seal_request(
            plaintext,
            kind=Kind.CALL,
            chain_id=chain_id,
            epoch=key.epoch,
            enclave_public=key.public_key,
            sender=sender,
            to=to,
        ).envelope

    return seal


# ---------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least 1
    return ordered[int(rank) - 1]


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# ---------------------------------------------------------------------------- node process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProcess:
    """A fresh ``coco-gateway dev`` in its own temporary data directory."""

    enclave: str = "process"
    accounts: int = 10
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    data_dir: Path | None = None
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _tmp: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self._tmp = tempfile.mkdtemp(prefix="coco-bench-")
        self.data_dir = Path(self._tmp) / "data"
        self.log_path = Path(self._tmp) / "node.log"
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "dev",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--accounts",
            str(self.accounts),
            "--enclave",
            self.enclave,
        ]
        env = {**os.environ, **self.extra_env}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the node exited early; see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.1)
                continue
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the node did not start within {timeout:g} s")

    def _answers(self) -> bool:
        import urllib.request

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        req = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return "result" in json.loads(resp.read())
        except OSError:
            return False

    def enclave_pid(self) -> int | None:
        """The enclave worker's pid (a child of the node), when it runs as a process."""
        if self.proc is None:
            return None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        pids = [int(p) for p in children.split()]
        return pids[0] if pids else None

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> NodeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_seconds(pid: int | None) -> float:
    """user + system CPU time of ``pid`` (all its threads) so far."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- JSON-RPC client
class RpcError(Exception):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('code')} {error.get('message')}")
        self.error = error


class Rpc:
    """A minimal JSON-RPC over HTTP client on one aiohttp session (keep-alive pool)."""

    def __init__(self, url: str, connections: int = 100) -> None:
        self.url = url
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._id = 0

    async def __aenter__(self) -> Rpc:
        connector = aiohttp.TCPConnector(limit=self._connections)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        assert self._session is not None
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []}
        async with self._session.post(self.url, json=body) as resp:
            document = await resp.json(content_type=None)
        if "error" in document:
            raise RpcError(method, document["error"])
        return document["result"]

    async def send_raw(self, tx: SignedTx) -> None:
        result = await self.call("eth_sendRawTransaction", ["0x" + tx.raw.hex()])
        if result != "0x" + tx.hash.hex():
            raise RuntimeError(f"the node returned hash {result}, expected 0x{tx.hash.hex()}")

    async def wait_receipt(self, tx_hash: bytes, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = await self.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
            if receipt is not None:
                return dict(receipt)
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no receipt for 0x{tx_hash.hex()} within {timeout:g} s")


async def apply_setup(rpc: Rpc, txs: Sequence[SignedTx]) -> None:
    """Send the untimed setup transactions (one sender) in windows the pool accepts."""
    for start in range(0, len(txs), POOL_NONCE_WINDOW):
        chunk = txs[start : start + POOL_NONCE_WINDOW]
        for tx in chunk:
            await rpc.send_raw(tx)
        for tx in chunk:
            receipt = await rpc.wait_receipt(tx.hash)
            if receipt.get("status") != "0x1":
                raise RuntimeError(f"setup transaction 0x{tx.hash.hex()} failed: {receipt}")


# ---------------------------------------------------------------------------- py-evm baseline
def evm_chain(accounts: int = 10) -> Any:
    """A fresh in-memory py-evm chain: Prague, chain 31337, the dev accounts funded."""
    from eth import constants
    from eth.chains.base import MiningChain
    from eth.db.atomic import AtomicDB
    from eth.vm.forks import PragueVM

    class BenchChain(MiningChain):
        vm_configuration = ((0, PragueVM),)
        chain_id = CHAIN_ID

    params = {
        "difficulty": 0,
        "gas_limit": GAS_LIMIT,
        "timestamp": int(time.time()) - 100_000,
        "extra_data": b"coco-bench",
        "coinbase": constants.ZERO_ADDRESS,
        "nonce": b"\x00" * 8,
        "mix_hash": constants.ZERO_HASH32,
        "base_fee_per_gas": GENESIS_BASE_FEE,
    }
    state: dict[bytes, dict[str, Any]] = {
        CREATE2_DEPLOYER: {"balance": 0, "nonce": 1, "code": CREATE2_DEPLOYER_CODE, "storage": {}}
    }
    for key in dev_keys(accounts):
        state[key.address] = {"balance": DEV_BALANCE_WEI, "nonce": 0, "code": b"", "storage": {}}
    return BenchChain.from_genesis(AtomicDB(), params, state)


def evm_decode(chain: Any, raws: Sequence[bytes]) -> list[Any]:
    builder = chain.get_vm().get_transaction_builder()
    return [builder.decode(raw) for raw in raws]


def evm_mine(chain: Any, raws: Sequence[bytes]) -> Any:
    """Decode ``raws`` and mine them as one block with ``MiningChain.mine_all``: the fast path
    (transactions applied back to back, the state root computed once for the block)."""
    txs = evm_decode(chain, raws)
    last = chain.get_canonical_head()
    result, _receipts, computations = chain.mine_all(
        txs, timestamp=max(int(time.time()), last.timestamp + 1)
    )
    failed = [i for i, c in enumerate(computations) if c.is_error]
    if failed:
        raise RuntimeError(
            f"baseline: {len(failed)} transaction(s) failed, first {failed[0]}: "
            f"{computations[failed[0]].error!r}"
        )
    return result


# ---------------------------------------------------------------------------- profiling
def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return shutil.which("py-spy")


def start_py_spy(py_spy: str, pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Sample ``pid`` until stopped, writing collapsed stacks ("raw" format) to ``out``."""
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _frames(stack: str) -> Iterator[str]:
    for frame in stack.split(";"):
        # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number
        name, _, where = frame.partition(" (")
        path = where.rstrip(")").rsplit(":", 1)[0]
        for marker in ("site-packages/", "/work/main/"):
            if marker in path:
                path = path.split(marker, 1)[1]
        yield f"{path}:{name}" if path else name


def summarize_profile(path: Path, rate: int, seconds: float, top: int = 25) -> str:
    """Inclusive and self time per function from py-spy's collapsed stacks.

    py-spy records only threads that are running (not idle-waiting), so the sample count
    against ``rate * seconds`` tells how busy the process was; the percentages below are
    of all samples, i.e. of the process's busy time.
    """
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = list(_frames(stack))
        total += count
        for f in set(frames):
            inclusive[f] += count
        if frames:
            self_time[frames[-1]] += count
    if not total:
        return f"{path}: no samples"
    busy = 100 * total / max(1.0, rate * seconds)
    out = [f"{path.name}: {total} samples, busy ~{busy:.0f}% of {seconds:.1f} s"]
    out.append("  inclusive %  function")
    out += [f"  {100 * c / total:10.1f}  {f}" for f, c in inclusive.most_common(top)]
    out.append("  self %       function")
    out += [f"  {100 * c / total:10.1f}  {f}" for f, c in self_time.most_common(top)]
    return "\n".join(out)
