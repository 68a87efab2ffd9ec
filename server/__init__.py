"""Realtime queue server for a military medical committee."""

__version__ = "0.1.0"
