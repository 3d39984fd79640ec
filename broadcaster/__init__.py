"""The fan-out: the in-process hub, the WebSocket and SSE protocols and their connections."""
