"""The node shell: starts the enclave, drives proof-of-authority block production.

The consensus core (``gateway.consensus``) decides *when* to propose; this loop owns the
clock and the enclave link, asks the enclave to build and seal a block when told to, and
announces committed blocks to subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import clock
from gateway.api.base import Method
from gateway.api.eth import Api
from gateway.consensus.poa import (
    BlockInfo,
    PoaState,
    ProposeBlock,
    ValidatorSet,
    Wait,
    min_timestamp,
)
from gateway.devaccounts import DEV_BALANCE_WEI, DEV_MNEMONIC, derive
from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient, InProcessEnclave, ProcessEnclave

log = logging.getLogger("gateway.node")


@dataclass
class NodeConfig:
    host: str = "127.0.0.1"
    port: int = 8545
    chain_id: int = 31337
    data_dir: Path = field(default_factory=lambda: Path("coco-data"))
    block_time: float = 0.0  # 0: a block as soon as transactions arrive (automine)
    dev: bool = True
    dev_accounts: int = 10
    dev_mnemonic: str = DEV_MNEMONIC
    fork: str = m.DEFAULT_FORK
    gas_limit: int = 30_000_000
    enclave_runtime: str = "process"  # or "inprocess"
    max_body_bytes: int = 5 * 1024 * 1024
    max_batch: int = 1000
    durable_fsync: bool = False
    epoch_period: int = 86_400
    require_encryption: bool = False
    privacy: str = "open"  # "strict" enforces who may see what on reads (docs/SECURITY.md)
    public_balances: bool = False  # strict, but balances and nonces open to everyone
    seal_storage: bool = True  # False: --insecure-plaintext-storage
    # the data directory's lock (gateway.startup), held by this process: the enclave process
    # inherits it, so that it stays held while the enclave may still write
    lock_fd: int | None = None

    def open_message(self) -> m.Open:
        alloc: list[list[Any]] = []
        if self.dev:
            alloc = [
                [bytes.fromhex(a.address[2:]), str(DEV_BALANCE_WEI)]
                for a in derive(self.dev_mnemonic, self.dev_accounts)
            ]
        return m.Open(
            data_dir=str(self.data_dir),
            chain_id=self.chain_id,
            fork=self.fork,
            gas_limit=self.gas_limit,
            genesis_alloc=alloc,
            dev_mnemonic=self.dev_mnemonic if self.dev else None,
            dev_accounts=self.dev_accounts if self.dev else 0,
            durable_fsync=self.durable_fsync,
            epoch_period=self.epoch_period,
            require_encryption=self.require_encryption,
            seal_storage=self.seal_storage,
            privacy=self.privacy,
            public_balances=self.public_balances,
        )


COALESCE_TARGET = 100  # transactions an automined block under load waits for...
COALESCE_SECONDS = 0.1  # ...for at most this long

BlockListener = Callable[[dict[str, Any]], Awaitable[None]]
TxListener = Callable[[bytes], Coroutine[Any, Any, None]]


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.enclave: EnclaveClient = self._make_enclave()
        self.api = Api(
            self.enclave, dev=config.dev, on_transaction=self._on_transaction, mine=self.mine
        )
        self.block_listeners: list[BlockListener] = []
        self.tx_listeners: list[TxListener] = []
        self._wake = asyncio.Event()
        self._wanted = 0
        self._producer: asyncio.Task[None] | None = None
        self._poa: PoaState | None = None
        self.validator: bytes = b""
        self.automine = config.block_time <= 0
        self.exit_code = 0
        self._build_lock = asyncio.Lock()
        self._last_build = 0.0  # seconds the last block took to build
        self._last_block_size = 0

    def _make_enclave(self) -> EnclaveClient:
        config = self.config
        if config.enclave_runtime == "inprocess":
            return InProcessEnclave()
        return ProcessEnclave(keep_fds=() if config.lock_fd is None else (config.lock_fd,))

    def rpc_methods(self) -> dict[str, Method]:
        """The JSON-RPC methods this node serves, by name."""
        return dict(self.api.methods())

    async def start(self) -> None:
        await self.enclave.start(self.config.open_message())
        if isinstance(self.enclave, ProcessEnclave):
            # only a running enclave can be lost; a refusal to open is reported by start()
            self.enclave.on_lost = self._enclave_lost
        await self.api.start()
        status = await self.enclave.request(m.GetStatus())
        self.validator = bytes(status["validator"])
        head = status["head"]
        self._poa = PoaState.start(
            ValidatorSet([self.validator]),
            self.config.block_time,
            self.validator,
            [
                BlockInfo(
                    head["number"],
                    bytes(head["hash"]),
                    b"\x00" * 32,
                    head["timestamp"],
                    self.validator if head["number"] else None,
                )
            ],
        )
        self._wanted = int(status["poolSize"])
        self._producer = asyncio.create_task(self._produce(), name="block-producer")
        log.info(
            "node ready: chain %d, head %d, validator 0x%s, %s",
            status["chainId"],
            head["number"],
            self.validator.hex(),
            "automine" if self.automine else f"a block every {self.config.block_time:g} s",
        )

    async def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            try:
                await self._producer
            except asyncio.CancelledError:
                pass
            self._producer = None
        await self.enclave.close()

    def _enclave_lost(self, code: int | None) -> None:
        """Without its enclave the node can serve nothing: stop, so a supervisor restarts it."""
        log.error("stopping the node: its enclave is gone")
        self.exit_code = 1
        os.kill(os.getpid(), signal.SIGTERM)

    def _on_transaction(self, tx_hash: bytes) -> None:
        self.api.filters.record_pending(tx_hash)
        self._wanted += 1
        self._wake.set()
        for listener in self.tx_listeners:
            asyncio.get_running_loop().create_task(listener(tx_hash))

    async def _produce(self) -> None:
        assert self._poa is not None
        while True:
            now = clock.now()
            effects = self._poa.on_tick(now, self._poa.head, self._wanted, self.automine)
            for effect in effects:
                if isinstance(effect, ProposeBlock):
                    await self._coalesce()
                    self._wanted = 0
                    self._wake.clear()
                    started = time.monotonic()
                    try:
                        await self._build(effect)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("building block %d failed; retrying in 1 s", effect.number)
                        await asyncio.sleep(1)
                    else:
                        self._last_build = time.monotonic() - started
                elif isinstance(effect, Wait):
                    timeout = None if effect.until is None else max(0.0, effect.until - now)
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        pass
                    self._wake.clear()

    async def _coalesce(self) -> None:
        """Under load, let a few more transactions join before the next automined block.

        A lone transaction on an idle node is mined at once. When the previous block held
        several transactions (so more are arriving), wait until as many are waiting again
        (and at least COALESCE_TARGET), or COALESCE_SECONDS have passed: per-block work (state
        root, tries, commit, the host round trip) is then shared by more transactions.
        Without a floor, a node under steady load settles into blocks of a handful of
        transactions, where per-block work halves throughput.
        """
        if not self.automine or self._last_block_size < 2:
            return
        deadline = time.monotonic() + COALESCE_SECONDS
        while self._wanted < max(self._last_block_size, COALESCE_TARGET):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def mine(self) -> None:
        """Seal a block now, even an empty one (evm_mine in dev mode)."""
        assert self._poa is not None
        head = self._poa.head
        timestamp = max(int(clock.now()), min_timestamp(head.timestamp, self.config.block_time))
        await self._build(ProposeBlock(head.number + 1, timestamp, head.hash, True), empty=True)

    async def _build(self, proposal: ProposeBlock, *, empty: bool = False) -> None:
        async with self._build_lock:
            assert self._poa is not None
            if proposal.parent_hash != self._poa.head.hash:
                return  # the head moved while this proposal waited
            result = await self.enclave.request(
                m.BuildBlock(proposal.timestamp, allow_empty=empty or not self.automine)
            )
            if result is not None:
                await self._adopt(proposal, result)

    async def _adopt(self, proposal: ProposeBlock, result: dict[str, Any]) -> None:
        assert self._poa is not None
        block = BlockInfo(
            result["number"],
            bytes(result["hash"]),
            proposal.parent_hash,
            result["timestamp"],
            self.validator,
        )
        self._poa = self._poa.with_block(block)
        self.api.view.head_number = block.number
        self.api.view.gas_price = int(result["gasPrice"])
        self._wanted += int(result["executablePending"])
        self._last_block_size = len(result["transactions"])
        if result["transactions"]:
            log.info(
                "sealed block %d with %d transaction(s) 0x%s",
                block.number,
                len(result["transactions"]),
                block.hash.hex(),
            )
        for listener in self.block_listeners:
            try:
                await listener(result)
            except Exception:
                log.exception("a block listener failed")

    @property
    def finalized(self) -> int:
        return 0 if self._poa is None else self._poa.finalized
