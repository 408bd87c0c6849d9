"""The lazy graph: ``Node``, the build-time context (pins, tracing), collecting and signatures.

Below planning and ``Array``: a node knows its op name, inputs, attributes, shape and dtype,
or its realized buffer and device. Nothing here knows backends, plans or plugins.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ._errors import CompileError

Shape = tuple[int, ...]

#: while ``oxcore.compile`` traces a function: the ids of its argument nodes (else None)
TRACING: contextvars.ContextVar[frozenset | None] = contextvars.ContextVar("oxcore_tracing", default=None)
#: while a transform (``grad``, ``vjp``, ``jvp``...) traces a function: realizing a node keeps its
#: op and inputs, so gradients still flow through values the function printed or branched on
KEEP_GRAPH: contextvars.ContextVar[bool] = contextvars.ContextVar("oxcore_keep_graph", default=False)
#: the backends ``oxcore.use(...)`` pins the nodes built in its block to (else None)
PIN: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("oxcore_pin", default=None)


def check_not_traced(nodes: Any) -> None:
    """Raise ``CompileError`` if a function being traced by ``oxcore.compile`` reads values
    that depend on its arguments: the replay would not run the Python that read them."""
    args = TRACING.get()
    if args is not None and any(id(n) in args for n in nodes):
        raise CompileError("a function under oxcore.compile read the value of an array that depends on its "
                           "arguments (bool(), float(), .item(), .numpy(), to_device(), print...). A compiled "
                           "function replays its graph without running its Python again, so it must not branch "
                           "on or read values. Move that code out of the function, or call it uncompiled.")


class Node:
    """One vertex of the lazy graph: a realized buffer, or ``(op, inputs, attrs)``.

    ``Array`` is a handle on a Node; ``x[i] = v`` repoints the handle, so nodes never mutate
    except to become realized (``buf`` set, ``inputs`` dropped).

    Example:
        >>> import numpy as np
        >>> from oxcore._graph import Node
        >>> from oxcore import float32
        >>> leaf = Node(None, (), {}, (2,), float32, np.ones(2, np.float32))
        >>> Node("exp", (leaf,), {}, (2,), float32)
        <Node exp float32[2]>
    """

    # NOTE: slots, no __dict__: a node is built per op on the hot path. `seen`/`pos` belong to
    # the walk at eval (`collect_signed`): which walk last visited the node, and where.
    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "buf", "device", "pin", "seen", "pos", "__weakref__")

    def __init__(self, op: str | None, inputs: tuple[Node, ...], attrs: dict[str, Any],
                 shape: Shape, dtype: Any, buf: Any = None, device: Any = None,
                 pin: tuple[str, ...] | None = None) -> None:
        self.op, self.inputs, self.attrs = op, inputs, attrs
        self.shape, self.dtype = shape, dtype
        self.buf, self.device, self.pin = buf, device, pin
        self.seen = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def realized(self) -> bool:
        return self.buf is not None

    def __repr__(self) -> str:
        state = f"on {self.device}" if self.buf is not None else f"{self.op}"
        return f"<Node {state} {self.dtype.name}{list(self.shape)}>"


def collect(targets: list[Node]) -> tuple[list[Node], dict[int, int], list[int]]:
    """Iterative post-order over unrealized nodes (no recursion limit: graphs can be 100k nodes
    deep); realized nodes are leaves. Returns (order, id -> position, uses of each position
    inside the graph)."""
    order: list[Node] = []
    pos: dict[int, int] = {}
    uses: list[int] = []
    stack = list(targets)
    stack.reverse()
    while stack:
        n = stack[-1]
        if id(n) in pos:
            stack.pop()
            continue
        if n.buf is None:
            pending = False
            for i in n.inputs:
                if id(i) not in pos:
                    stack.append(i)
                    pending = True
            if pending:
                continue
            for i in n.inputs:
                uses[pos[id(i)]] += 1
        stack.pop()
        pos[id(n)] = len(order)
        order.append(n)
        uses.append(0)
    return order, pos, uses


def collect_signed(targets: list[Node]) -> tuple[list[Node], list[Any], list[int]]:
    """``collect`` and the graph's signature in one walk (the eval path's): (order, signature
    entries, uses of each position inside the graph).

    A node's entry is its dtype, shape and device (leaves) or op, pin, input positions and
    attributes. The positions come from the node itself (``pos``, written by this walk), so
    no id-keyed dictionary is built; ``position_map(order)`` gives one where planning needs it.
    """
    walk = object()  # NOTE: marks the nodes this walk visited; a fresh object never matches old marks
    order: list[Node] = []
    sig: list[Any] = []
    uses: list[int] = []
    stack = list(targets)
    stack.reverse()
    while stack:
        n = stack[-1]
        if n.seen is walk:
            stack.pop()
            continue
        if n.buf is None:
            pending = False
            for i in n.inputs:
                if i.seen is not walk:
                    stack.append(i)
                    pending = True
            if pending:
                continue
            args = tuple([i.pos for i in n.inputs])
            for a in args:
                uses[a] += 1
            sig.append((n.op, n.pin, args, tuple(n.attrs.items())) if n.attrs else (n.op, n.pin, args))
        else:
            sig.append((n.dtype, n.shape, n.device.name))
        stack.pop()
        n.seen, n.pos = walk, len(order)
        order.append(n)
        uses.append(0)
    return order, sig, uses


def position_map(order: list[Node]) -> dict[int, int]:
    """id(node) -> position, for a collected order."""
    return {id(n): i for i, n in enumerate(order)}
