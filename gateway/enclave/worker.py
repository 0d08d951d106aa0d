"""Entry point of the enclave process: frames in on stdin, frames out on stdout."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from gateway.enclave import codec
from gateway.enclave.messages import Close, Open
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
    from gateway.enclave.runtime import _serve_frame

    enclave = None
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            break
        body = stdin.read(codec.frame_length(header))
        if enclave is None:
            enclave = _open(body, out)
            if enclave is None:
                return 1
            continue
        reply = _serve_frame(enclave, body)
        out.write(codec.frame(reply))
        try:
            _, message = codec.decode_request(body)
        except codec.CodecError:
            continue
        if isinstance(message, Close):
            break
    if enclave is not None:
        enclave.close()
    return 0


def _open(body: bytes, out: Any) -> Any:
    """Serve the first request, which must be Open; None when the enclave cannot start."""
    from gateway.enclave.core import Enclave

    request_id = 0
    try:
        request_id, message = codec.decode_request(body)
        if not isinstance(message, Open):
            raise codec.CodecError("the first enclave message must be Open")
        enclave = Enclave(message)
    except RpcError as exc:
        out.write(codec.frame(codec.encode_error(request_id, exc)))
        return None
    except Exception as exc:
        logging.getLogger("gateway.enclave").exception("could not open the enclave")
        error = InternalError(f"the enclave could not start: {type(exc).__name__}")
        out.write(codec.frame(codec.encode_error(request_id, error)))
        return None
    out.write(codec.frame(codec.encode_response(request_id, True, None)))
    return enclave


if __name__ == "__main__":
    sys.exit(main())
