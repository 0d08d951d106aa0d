"""The aiohttp application: HTTP and WebSocket JSON-RPC, CORS, limits."""
