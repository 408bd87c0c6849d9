"""Autotune profiles: measured kernel times the planner prefers over static priors."""

from __future__ import annotations

from typing import Any

#: bumped whenever the active profile changes, so cached plans are rebuilt
EPOCH = 0
_CURRENT: Any = None


def current() -> Any:
    """The active profile, or None when nothing was measured."""
    return _CURRENT
