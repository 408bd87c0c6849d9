"""Neural-network helpers. ``oxcore.nn.functional`` holds the ML ops (also at top level)."""

from . import functional

__all__ = ["functional"]
