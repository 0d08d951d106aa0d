"""How the host reaches the enclave: one async ``request`` method, two runtimes.

``ProcessEnclave`` (the default) runs the enclave in a child process and talks to it over
its standard input and output with length-prefixed msgpack frames; execution then runs on
the second core while the host serves RPC. ``InProcessEnclave`` runs the same enclave
object on a worker thread, through the same codec, for tests and debugging.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from gateway.enclave import codec
from gateway.enclave.messages import (
    BuildBlock,
    Close,
    ConsensusStep,
    GenesisOf,
    ImportBlocks,
    MakeIdentity,
    Open,
)
from gateway.errors import InternalError, RpcError

log = logging.getLogger("gateway.enclave.runtime")

# The enclave's own code, named and not imported: the host links only against the interface
# (messages, codec, this module), as the process runtime names its worker module
WORKER_MODULE = "gateway.enclave.worker"
ENCLAVE_MODULE = "gateway.enclave.core"


# block operations (one at a time, beside reads and admissions) run on the build thread
BUILD_THREAD = (BuildBlock, ConsensusStep, ImportBlocks)


class EnclaveClient(Protocol):
    async def start(self, opened: Open) -> None: ...

    async def start_identity(self, message: MakeIdentity | GenesisOf) -> dict[str, Any]:
        """Instead of ``start``: make or open a data directory's node identity in the
        enclave (``coco-gateway init``; answers {"address", "measurement", "platform",
        "consortiumSecret"}), or compute the genesis hash of consortium terms (GenesisOf,
        for an observer). ``close`` afterwards."""
        ...

    async def request(self, message: Any) -> Any: ...

    async def close(self) -> None: ...


class EnclaveUnavailable(InternalError):
    def __init__(self) -> None:
        super().__init__("the node's enclave is not running; see the node's log")


class InProcessEnclave:
    """The enclave on a dedicated thread of this process (py-evm never runs on the loop)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enclave")
        # block building runs beside the other requests, as in the enclave process
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enclave-build")
        self._enclave: Any = None
        self._next_id = 0

    async def start(self, opened: Open) -> None:
        loop = asyncio.get_running_loop()
        self._enclave = await loop.run_in_executor(self._executor, _open_in_process, opened)

    async def start_identity(self, message: MakeIdentity | GenesisOf) -> dict[str, Any]:
        frame = codec.encode_request(1, message)
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self._executor, _identity_in_process, frame)
        _, ok, payload = codec.decode_response(reply)
        if not ok:
            raise codec.error_from(payload)
        return payload  # type: ignore[no-any-return]

    async def request(self, message: Any) -> Any:
        if self._enclave is None:
            raise EnclaveUnavailable()
        self._next_id += 1
        frame = codec.encode_request(self._next_id, message)
        loop = asyncio.get_running_loop()
        executor = self._builder if isinstance(message, BUILD_THREAD) else self._executor
        reply = await loop.run_in_executor(executor, _serve_frame, self._enclave, frame)
        _, ok, payload = codec.decode_response(reply)
        if not ok:
            raise codec.error_from(payload)
        return payload

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._builder.shutdown, True)  # a block in progress
        if self._enclave is not None:
            enclave, self._enclave = self._enclave, None
            await loop.run_in_executor(self._executor, enclave.close)
        self._executor.shutdown(wait=True)


def _open_in_process(opened: Open) -> Any:
    """Load the enclave's code by name (on the enclave thread) and open it."""
    return importlib.import_module(ENCLAVE_MODULE).Enclave(opened)


def _identity_in_process(frame: bytes) -> bytes:
    """MakeIdentity or GenesisOf through the codec, as the enclave process serves it."""
    request_id, message = codec.decode_request(frame)
    try:
        identity = importlib.import_module(ENCLAVE_MODULE).answer_first(message)
    except RpcError as exc:
        return codec.encode_error(request_id, exc)
    return codec.encode_response(request_id, True, identity)


def _serve_frame(enclave: Any, frame: bytes) -> bytes:
    """Decode, handle and encode one request; shared by both runtimes."""
    try:
        request_id, message = codec.decode_request(frame)
    except codec.CodecError as exc:
        log.warning("rejected a malformed enclave request: %s", exc)
        return codec.encode_error(0, InternalError("malformed enclave request"))
    return serve(enclave, request_id, message)


def serve(enclave: Any, request_id: int, message: Any) -> bytes:
    """Handle one decoded request and encode the reply; never raises."""
    try:
        result = enclave.handle(message)
        return codec.encode_response(request_id, True, result)
    except RpcError as exc:
        return codec.encode_error(request_id, exc)
    except Exception:
        log.exception("enclave request %s failed", type(message).__name__)
        return codec.encode_error(request_id, InternalError("internal error"))


class ProcessEnclave:
    """The enclave in a child process: ``python -m gateway.enclave.worker``."""

    def __init__(self, keep_fds: tuple[int, ...] = ()) -> None:
        self._keep_fds = keep_fds  # descriptors the child inherits (the data directory's lock)
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._closing = False
        self._started = False
        self.on_lost: Callable[[int | None], None] | None = None

    async def start(self, opened: Open) -> None:
        await self._spawn()
        await self.request(opened)
        self._started = True

    async def start_identity(self, message: MakeIdentity | GenesisOf) -> dict[str, Any]:
        """Spawn the enclave process for ``MakeIdentity`` or ``GenesisOf`` only; ``close``
        it afterwards."""
        await self._spawn()
        return await self.request(message)  # type: ignore[no-any-return]

    async def _spawn(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER_MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=codec.MAX_FRAME,
            pass_fds=self._keep_fds,
        )
        self._reader_task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while True:
                header = await stdout.readexactly(4)
                body = await stdout.readexactly(codec.frame_length(header))
                request_id, ok, payload = codec.decode_response(body)
                future = self._pending.pop(request_id, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(payload)
                else:
                    future.set_exception(codec.error_from(payload))
        except (asyncio.IncompleteReadError, ConnectionError, codec.CodecError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                log.error("enclave link broken: %s", exc)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(EnclaveUnavailable())
            self._pending.clear()
            if self._started and not self._closing and self._proc is not None:
                code = await self._proc.wait()
                log.error("the enclave process exited unexpectedly (exit code %s)", code)
                if self.on_lost is not None:
                    self.on_lost(code)

    async def request(self, message: Any) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise EnclaveUnavailable()
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        payload = codec.frame(codec.encode_request(request_id, message))
        async with self._write_lock:
            try:
                proc.stdin.write(payload)
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError):
                self._pending.pop(request_id, None)
                raise EnclaveUnavailable() from None
        return await future

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._closing = True
        if proc.returncode is None:
            try:
                await asyncio.wait_for(self.request(Close()), timeout=10)
            except (TimeoutError, RpcError):
                pass
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                log.warning("enclave did not stop within 10 s; killing it")
                proc.kill()
                await proc.wait()
        if self._reader_task is not None:
            await self._reader_task
        self._proc = None
