"""Entry point of the enclave process: frames in on stdin, frames out on stdout."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
from typing import Any

from gateway.enclave import codec
from gateway.enclave.messages import Close, GenesisOf, MakeIdentity, Open
from gateway.errors import InternalError, RpcError


def main() -> int:
    # stdout carries frames only: keep a private handle on it and send everything else
    # that might print (libraries, stray prints) to stderr, which is the node's log.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = sys.stdin.buffer
    # Ctrl-C in the terminal reaches the whole process group; the host decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("COCO_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s enclave %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gateway.enclave.runtime import BUILD_THREAD, serve

    enclave = None
    while enclave is None:
        header = stdin.read(4)
        if len(header) < 4:
            return 0
        enclave = _open(stdin.read(codec.frame_length(header)), out)
        if enclave is None:
            return 1
        if enclave is _ANSWERED:
            enclave = None  # an identity was made: another first message may follow
        elif enclave is _CLOSED:
            return 0

    # Two serving threads: one builds blocks, one answers everything else (admissions,
    # reads) meanwhile. Replies are written whole, under a lock, in completion order.
    write_lock = threading.Lock()
    requests: queue.Queue[tuple[int, Any] | None] = queue.Queue()
    builds: queue.Queue[tuple[int, Any] | None] = queue.Queue()

    def worker(inbox: queue.Queue[tuple[int, Any] | None]) -> None:
        while (item := inbox.get()) is not None:
            reply = codec.frame(serve(enclave, *item))
            try:
                with write_lock:
                    _write_all(out, reply)
            except BrokenPipeError:
                return  # the host is gone; the main loop reads the end of stdin and closes

    threads = [
        threading.Thread(target=worker, args=(requests,), name="enclave-requests"),
        threading.Thread(target=worker, args=(builds,), name="enclave-build"),
    ]
    for thread in threads:
        thread.start()
    closing: tuple[int, Any] | None = None
    # The end of stdin means the host has gone (even killed with SIGKILL): finish the
    # requests in hand, close the ledger and exit, so that the data directory's lock,
    # which this process inherited, is released soon after the host's death.
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            break
        body = stdin.read(codec.frame_length(header))
        try:
            request_id, message = codec.decode_request(body)
        except codec.CodecError as exc:
            logging.getLogger("gateway.enclave").warning("malformed enclave request: %s", exc)
            with write_lock:
                _write_all(
                    out, codec.frame(codec.encode_error(0, InternalError("malformed request")))
                )
            continue
        if isinstance(message, Close):
            closing = (request_id, message)
            break
        (builds if isinstance(message, BUILD_THREAD) else requests).put((request_id, message))
    # finish what was asked, then close the ledger and answer Close last
    requests.put(None)
    builds.put(None)
    for thread in threads:
        thread.join()
    enclave.close()
    if closing is not None:
        with write_lock:
            _write_all(out, codec.frame(codec.encode_response(closing[0], True, None)))
    return 0


def _write_all(out: Any, data: bytes) -> None:
    """Write a whole frame to the unbuffered stdout handle. A raw write to a pipe may write
    only part of a large frame (a signal, or a debugger or profiler stopping the process, can
    interrupt it once some bytes are in); the rest must follow, or the host's frame stream
    stops in the middle of a frame and every later reply is lost with it."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


_ANSWERED = object()
_CLOSED = object()


def _open(body: bytes, out: Any) -> Any:
    """Serve a first request: Open (answers the enclave), MakeIdentity or GenesisOf (answers
    _ANSWERED once the answer is sent) or Close (_CLOSED); None when the enclave cannot
    start."""
    from gateway.enclave.core import Enclave, answer_first

    request_id = 0
    try:
        request_id, message = codec.decode_request(body)
        if isinstance(message, MakeIdentity | GenesisOf):
            answer = answer_first(message)
            _write_all(out, codec.frame(codec.encode_response(request_id, True, answer)))
            return _ANSWERED
        if isinstance(message, Close):
            _write_all(out, codec.frame(codec.encode_response(request_id, True, None)))
            return _CLOSED
        if not isinstance(message, Open):
            raise codec.CodecError(
                "the first enclave message must be Open, MakeIdentity or GenesisOf"
            )
        enclave = Enclave(message)
    except RpcError as exc:
        _write_all(out, codec.frame(codec.encode_error(request_id, exc)))
        return None
    except Exception as exc:
        logging.getLogger("gateway.enclave").exception("could not open the enclave")
        error = InternalError(f"the enclave could not start: {type(exc).__name__}")
        _write_all(out, codec.frame(codec.encode_error(request_id, error)))
        return None
    _write_all(out, codec.frame(codec.encode_response(request_id, True, None)))
    return enclave


if __name__ == "__main__":
    sys.exit(main())
