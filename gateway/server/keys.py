"""Typed application state: every key the aiohttp application stores, in one place."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.node import Node, NodeConfig
from gateway.rpc import Dispatcher
from gateway.server.ws import SubscriptionHub

CONFIG = web.AppKey("config", NodeConfig)
NODE = web.AppKey("node", Node)
NODE_FACTORY: web.AppKey[Callable[[NodeConfig], Node]] = web.AppKey("node_factory")
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
HUB = web.AppKey("hub", SubscriptionHub)
