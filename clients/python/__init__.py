"""Python client for the queue server's WebSocket protocol (PROTOCOL.md)."""
