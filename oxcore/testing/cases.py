"""Sample invocations of every registry op (used by coverage and the conformance suite)."""

from __future__ import annotations

from typing import Any, Callable

_SAMPLES: dict[str, Callable[[], Any]] = {}


def sample_for(op: str) -> Any:
    """A small lazy Array whose output node is ``op``, or None when no sample is known."""
    import oxcore as ox

    f = _SAMPLES.get(op)
    if f is None:
        return None
    out = f(ox)
    return out if out._node.op == op else None
