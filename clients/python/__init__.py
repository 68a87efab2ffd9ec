"""Python client for the queue server's WebSocket protocol (docs/protocol.md)."""

from clients.python.client import Client, ClientError, Disconnected

__all__ = ["Client", "ClientError", "Disconnected"]
