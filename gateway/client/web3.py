"""web3.py integration of the confidential client: a middleware and ready-made Web3s.

    from gateway.client.web3 import confidential, confidential_web3

    w3 = confidential_web3("http://127.0.0.1:8545", account, allow_virtual=True)
    # or, on a Web3 of your own:
    w3.middleware_onion.add(confidential(allow_virtual=True, query_signers=[account]))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)

With a local account, calls and gas estimates from it are signed queries (msg.sender
proven, docs/PROTOCOL.md "Signed query"); ``sign_queries=False`` sends them anonymous.

The logic lives in ``gateway.client.sdk`` (sans-I/O); this module only connects it to
web3's sync and async request functions. docs/sdk.md has the details.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from web3 import AsyncWeb3, Web3
from web3.exceptions import Web3RPCError
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.middleware.base import Web3Middleware
from web3.providers.rpc import AsyncHTTPProvider, HTTPProvider

from gateway.client.sdk import (
    AttestationError,
    ConfidentialityError,
    ConfidentialSession,
    Policy,
    QuerySigner,
    ResponseKeys,
    SignedQueryError,
    drive,
    drive_async,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.providers.async_base import AsyncBaseProvider
    from web3.providers.base import BaseProvider
    from web3.types import (
        AsyncMakeBatchRequestFn,
        AsyncMakeRequestFn,
        MakeBatchRequestFn,
        MakeRequestFn,
        RPCEndpoint,
        RPCResponse,
    )

__all__ = [
    "AttestationError",
    "ConfidentialMiddleware",
    "ConfidentialSession",
    "ConfidentialityError",
    "Policy",
    "QuerySigner",
    "RefusedError",
    "ResponseKeys",
    "SignedQueryError",
    "async_confidential_web3",
    "confidential",
    "confidential_web3",
    "session_of",
]

MIDDLEWARE_NAME = "confidential"

# sessions of Web3 objects given the bare class (no builder): one per Web3, strict policy
_DEFAULT_SESSIONS: weakref.WeakKeyDictionary[Any, ConfidentialSession] = weakref.WeakKeyDictionary()


class RefusedError(Web3RPCError):
    """The node refused the request with a machine-readable reason (the JSON-RPC error's
    ``data.reason``, docs/PROTOCOL.md): ``reason`` is that code, ``fields`` the rest of
    ``data`` (for ``wrong-sender``: ``sealedFor``, ``runAs``). Raised by the middleware for
    such errors, so web3 does not take them for contract reverts (it reads any ``data``
    object of an eth_call error as one)."""

    def __init__(self, response: Any) -> None:
        error = response["error"]
        data = dict(error["data"])
        super().__init__(str(error.get("message", "")), rpc_response=response)
        self.reason: str = str(data.pop("reason"))
        self.fields: dict[str, Any] = data


def _checked(response: Any) -> Any:
    """The response, unless it is an error carrying a reason code: RefusedError."""
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("code") != 3:
        data = error.get("data")
        if isinstance(data, dict) and isinstance(data.get("reason"), str):
            raise RefusedError(response)
    return response


class ConfidentialMiddleware(Web3Middleware):
    """Seals call data, opens results, reverts and log data (gateway.client.sdk).

    web3 instantiates middleware again whenever the onion changes, so the state lives in a
    ``ConfidentialSession`` shared by the instances: build the middleware with
    ``confidential(...)`` (or ``ConfidentialMiddleware.build(...)``). Added as the bare
    class, each Web3 gets a session with the default policy, which refuses virtual
    (development) enclaves.
    """

    session: ConfidentialSession

    def __init__(
        self, w3: Web3 | AsyncWeb3[Any] | None, session: ConfidentialSession | None = None
    ) -> None:
        # web3 also instantiates a bare middleware class with w3=None, to name it
        super().__init__(cast("Web3", w3))
        if session is None:
            session = (
                ConfidentialSession()
                if w3 is None
                else _DEFAULT_SESSIONS.setdefault(w3, ConfidentialSession())
            )
        self.session = session

    @staticmethod
    def build(
        *,
        allow_virtual: bool = False,
        expected_measurement: bytes | str | None = None,
        expected_chain_id: int | None = None,
        allow_plaintext: bool = False,
        query_signers: Iterable[QuerySigner | bytes | str] = (),
        session: ConfidentialSession | None = None,
    ) -> ConfidentialBuilder:
        return confidential(
            allow_virtual=allow_virtual,
            expected_measurement=expected_measurement,
            expected_chain_id=expected_chain_id,
            allow_plaintext=allow_plaintext,
            query_signers=query_signers,
            session=session,
        )

    # -- single requests: the same exchange, driven blocking or awaited -- #

    def wrap_make_request(self, make_request: MakeRequestFn) -> MakeRequestFn:
        session = self.session

        def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
            response = drive(session.exchange(method, params), make_request)
            return cast("RPCResponse", _checked(response))

        return middleware

    async def async_wrap_make_request(self, make_request: AsyncMakeRequestFn) -> AsyncMakeRequestFn:
        session = self.session

        async def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
            exchange = session.exchange(method, params)
            return cast("RPCResponse", _checked(await drive_async(exchange, make_request)))

        return middleware

    # -- batches: passed on whole unless a request needs the session; then one by one -- #

    def wrap_make_batch_request(self, make_batch_request: MakeBatchRequestFn) -> MakeBatchRequestFn:
        session = self.session

        def one(method: RPCEndpoint, params: Any) -> RPCResponse:
            response = make_batch_request([(method, params)])
            return response[0] if isinstance(response, list) else response

        def middleware(
            requests: list[tuple[RPCEndpoint, Any]],
        ) -> list[RPCResponse] | RPCResponse:
            if not any(session.handles(method) for method, _ in requests):
                return make_batch_request(requests)
            return [
                cast("RPCResponse", drive(session.exchange(method, params), one))
                for method, params in requests
            ]

        return middleware

    async def async_wrap_make_batch_request(
        self, make_batch_request: AsyncMakeBatchRequestFn
    ) -> AsyncMakeBatchRequestFn:
        session = self.session

        async def one(method: RPCEndpoint, params: Any) -> RPCResponse:
            response = await make_batch_request([(method, params)])
            return response[0] if isinstance(response, list) else response

        async def middleware(
            requests: list[tuple[RPCEndpoint, Any]],
        ) -> list[RPCResponse] | RPCResponse:
            if not any(session.handles(method) for method, _ in requests):
                return await make_batch_request(requests)
            return [
                cast("RPCResponse", await drive_async(session.exchange(method, params), one))
                for method, params in requests
            ]

        return middleware


class ConfidentialBuilder:
    """What goes into ``w3.middleware_onion``: makes middleware bound to one session."""

    def __init__(self, session: ConfidentialSession) -> None:
        self.session = session

    def __call__(self, w3: Web3 | AsyncWeb3[Any]) -> ConfidentialMiddleware:
        return ConfidentialMiddleware(w3, self.session)

    def __repr__(self) -> str:
        return f"ConfidentialBuilder({self.session.policy!r})"


def confidential(
    *,
    allow_virtual: bool = False,
    expected_measurement: bytes | str | None = None,
    expected_chain_id: int | None = None,
    allow_plaintext: bool = False,
    query_signers: Iterable[QuerySigner | bytes | str] = (),
    session: ConfidentialSession | None = None,
) -> ConfidentialBuilder:
    """The confidential middleware, for ``w3.middleware_onion.add(...)``.

    Add it as the outermost layer (``add``), and a signing middleware as the innermost
    (``inject(..., layer=0)``), so call data is sealed before it is signed.
    ``query_signers`` (LocalAccounts or private keys): the accounts whose eth_call and
    eth_estimateGas go out as signed queries (added to ``session`` when one is given).
    """
    if session is None:
        session = ConfidentialSession(
            Policy(
                allow_virtual=allow_virtual,
                expected_measurement=expected_measurement,
                expected_chain_id=expected_chain_id,
                allow_plaintext=allow_plaintext,
            )
        )
    for signer in query_signers:
        session.add_query_signer(signer)
    return ConfidentialBuilder(session)


def session_of(w3: Web3 | AsyncWeb3[Any]) -> ConfidentialSession:
    """The session of the confidential middleware in ``w3``'s onion."""
    for layer in w3.middleware_onion.as_tuple_of_middleware():
        element: Any = layer
        if isinstance(element, ConfidentialBuilder):
            return element.session
        if element is ConfidentialMiddleware and w3 in _DEFAULT_SESSIONS:
            return _DEFAULT_SESSIONS[w3]
    raise LookupError("this Web3 has no confidential middleware")


def _install(
    w3: Web3 | AsyncWeb3[Any],
    account: LocalAccount | None,
    sign_queries: bool | None,
    **policy: Any,
) -> None:
    """Add the confidential layer (outermost) and, with an account, the signer (innermost)."""
    builder = confidential(**policy)
    if sign_queries is None:
        sign_queries = account is not None
    if sign_queries:
        if account is None:
            raise ValueError("sign_queries=True needs the local account that signs them")
        builder.session.add_query_signer(account)
    onion: Any = w3.middleware_onion
    if account is not None:
        # innermost: signs what the confidential layer (outermost) has already sealed
        onion.inject(SignAndSendRawMiddlewareBuilder.build(account), name="signer", layer=0)
        w3.eth.default_account = account.address
    onion.add(builder, name=MIDDLEWARE_NAME)


def confidential_web3(
    url_or_provider: str | BaseProvider,
    account: LocalAccount | None = None,
    *,
    allow_virtual: bool = False,
    expected_measurement: bytes | str | None = None,
    expected_chain_id: int | None = None,
    request_kwargs: dict[str, Any] | None = None,
    sign_queries: bool | None = None,
) -> Web3:
    """A Web3 that seals to the node's attested key; with ``account`` (an eth-account
    LocalAccount), transactions from it are signed locally, after sealing, it is the
    default account, and its eth_call and eth_estimateGas are signed queries (the node
    runs them with msg.sender = the account). ``sign_queries``: None (default) signs them
    when there is an account; False sends them unsigned."""
    provider = (
        HTTPProvider(url_or_provider, request_kwargs=request_kwargs)
        if isinstance(url_or_provider, str)
        else url_or_provider
    )
    w3 = Web3(provider)
    _install(
        w3,
        account,
        sign_queries,
        allow_virtual=allow_virtual,
        expected_measurement=expected_measurement,
        expected_chain_id=expected_chain_id,
    )
    return w3


def async_confidential_web3(
    url_or_provider: str | AsyncBaseProvider,
    account: LocalAccount | None = None,
    *,
    allow_virtual: bool = False,
    expected_measurement: bytes | str | None = None,
    expected_chain_id: int | None = None,
    request_kwargs: dict[str, Any] | None = None,
    sign_queries: bool | None = None,
) -> AsyncWeb3[Any]:
    """The AsyncWeb3 counterpart of ``confidential_web3``."""
    provider = (
        AsyncHTTPProvider(url_or_provider, request_kwargs=request_kwargs)
        if isinstance(url_or_provider, str)
        else url_or_provider
    )
    w3: AsyncWeb3[Any] = AsyncWeb3(provider)
    _install(
        w3,
        account,
        sign_queries,
        allow_virtual=allow_virtual,
        expected_measurement=expected_measurement,
        expected_chain_id=expected_chain_id,
    )
    return w3
