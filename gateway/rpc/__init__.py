"""JSON-RPC 2.0: parse, validate, dispatch, error objects, batches. No I/O."""

from gateway.rpc.dispatch import Dispatcher, Handler, Limits

__all__ = ["Dispatcher", "Handler", "Limits"]
