"""Which ops a backend runs natively, which through decomposition, which not at all.

An op counts as *decomposed* on a backend when a sample of it (from the conformance cases)
plans entirely onto that backend, with the op itself replaced by its decomposition. This is a
real planning run, not a guess from the op table.
"""

from __future__ import annotations

import functools
from typing import Any

from ._errors import OpNotSupportedError
from ._registry import REGISTRY


@functools.lru_cache(maxsize=None)
def _coverage(backend: str, epoch: int) -> dict[str, list[str]]:
    from ._plugins import manager
    from ._plan import plan_only_on
    from .testing.cases import sample_for

    b = manager().backend(backend)
    native, decomposed, missing = [], [], []
    for op in REGISTRY:
        if b.kernels_for(op) and _native_for_sample(b, op):
            native.append(op)
            continue
        sample = sample_for(op)
        if sample is None:
            missing.append(op)
            continue
        try:
            plan_only_on(backend, [sample._node])
            decomposed.append(op)
        except OpNotSupportedError:
            missing.append(op)
    return {"native": native, "decomposed": decomposed, "missing": missing}


def _native_for_sample(b: Any, op: str) -> bool:
    from .testing.cases import sample_for

    sample = sample_for(op)
    if sample is None:
        return True
    from ._plan import PlanNode

    n = sample._node
    p = PlanNode(n.op, n.attrs, (), list(n.inputs), n.shape, n.dtype)
    return any(k.check(p) is None for k in b.kernels_for(op))


def coverage(backend: str) -> dict[str, list[str]]:
    """``{"native": [...], "decomposed": [...], "missing": [...]}`` op names for ``backend``.

    Example:
        >>> from oxcore.coverage import coverage
        >>> "add" in coverage("cpu_numpy")["native"]
        True
    """
    from ._plugins import manager

    return _coverage(backend, manager().epoch)
