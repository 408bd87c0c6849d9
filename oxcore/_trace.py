"""``oxcore.record``: write down what a real workload asks the planner for, so ``oxcore autotune
--from-trace`` can measure exactly those shapes.

Example:
    >>> import oxcore as ox, tempfile, os, json
    >>> f = os.path.join(tempfile.mkdtemp(), "trace.json")
    >>> x = ox.asarray([[1.0, 2.0], [3.0, 4.0]])
    >>> with ox.record(f) as trace:
    ...     y = (x @ x.T).sum().item()
    >>> [n["op"] for n in json.load(open(f))["nodes"]]
    ['permute_dims', 'matmul', 'sum']
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = ["record", "Trace", "load", "encode_attrs", "decode_attrs"]


def encode_attrs(x: Any) -> Any:
    """Attrs as JSON: dtypes become ``{"dtype": name}``, tuples lists."""
    from ._dtypes import DType

    if isinstance(x, DType):
        return {"dtype": x.name}
    if isinstance(x, dict):
        return {k: encode_attrs(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [encode_attrs(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return {"repr": repr(x)}


def decode_attrs(x: Any, top: bool = True) -> Any:
    """The inverse of ``encode_attrs`` (lists come back as tuples, as ops build them)."""
    from ._dtypes import dtype

    if isinstance(x, dict):
        if top:  # NOTE: the attrs dict itself (its one key may well be "dtype")
            return {k: decode_attrs(v, False) for k, v in x.items()}
        if set(x) == {"dtype"}:
            return dtype(x["dtype"])
        if set(x) == {"repr"}:
            raise ValueError(f"attribute {x['repr']} cannot be rebuilt from a trace")
        return {k: decode_attrs(v, False) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(decode_attrs(v, False) for v in x)
    return x


class Trace:
    """The nodes seen while recording: ``nodes`` is a list of dicts with ``op``, ``attrs``,
    ``inputs`` (``[[shape], dtype]`` pairs), ``shape``, ``dtype``, ``backend`` and ``count``."""

    def __init__(self) -> None:
        self._by_key: dict[str, dict] = {}
        self._plans: dict[int, tuple[Any, list[str]]] = {}

    @property
    def nodes(self) -> list[dict]:
        return list(self._by_key.values())

    def __call__(self, plan: Any) -> None:
        seen = self._plans.get(id(plan))
        if seen is None:  # NOTE: plans are cached; describe each one once, then only count
            keys = []
            for p in plan.nodes:
                if p.op is None:
                    continue
                n = {"op": p.op, "attrs": encode_attrs(p.attrs),
                     "inputs": [[list(i.shape), i.dtype.name] for i in p.inputs],
                     "shape": list(p.shape), "dtype": p.dtype.name, "backend": p.backend.name, "count": 0}
                k = json.dumps([n["op"], n["attrs"], n["inputs"]], sort_keys=True, default=str)
                self._by_key.setdefault(k, n)
                keys.append(k)
            seen = self._plans[id(plan)] = (plan, keys)
        for k in seen[1]:
            self._by_key[k]["count"] += 1

    def save(self, file: str | os.PathLike) -> Path:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(file.name + ".tmp")
        tmp.write_text(json.dumps({"oxcore_trace": 1, "nodes": self.nodes}, indent=1))
        os.replace(tmp, file)
        return file


@contextlib.contextmanager
def record(file: str | os.PathLike | None = None) -> Iterator[Trace]:
    """Record every planned node (op, attrs, input shapes and dtypes) evaluated in the block.

    The trace is written to ``file`` (JSON) when the block ends; feed it to
    ``oxcore autotune --from-trace FILE`` to measure the kernels at your workload's shapes.
    """
    from ._plan import RECORDERS

    trace = Trace()
    RECORDERS.append(trace)
    try:
        yield trace
    finally:
        RECORDERS.remove(trace)
        if file is not None:
            trace.save(file)


def load(file: str | os.PathLike) -> list[dict]:
    """The nodes of a trace file written by ``record``."""
    doc = json.loads(Path(file).read_text())
    if not isinstance(doc, dict) or "nodes" not in doc:
        raise ValueError(f"{file}: not an oxcore trace (expected a JSON object with 'nodes')")
    return doc["nodes"]
