"""``oxcore.vmap``: run a function written for one example over a batch, as one graph.

The function is called once on placeholders of the per-example shapes (nothing is computed);
the graph it records is then rebuilt batched, node by node, with the registry's ``batch`` rules
(the batch always travels as axis 0). An op without a rule is batched through its
decomposition, and an op without either (rare: a primitive whose batched form is not a single
op) runs once per example and the results are stacked, so every function can be vmapped.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ._array import Array, build
from ._autodiff import THROUGH_DECOMPOSITION, _topo
from ._errors import CompileError, DifferentiationError
from ._graph import TRACING, Node
from ._registry import REGISTRY
from .tree import tree_flatten, tree_unflatten

__all__ = ["vmap"]

_PLACEHOLDER = "__vmap_input__"


def _axes_for(axes: Any, value: Any, path: str) -> list:
    """One axis (int or None) per leaf of ``value``: ``axes`` is a prefix of its tree (an int or
    None applies to everything under it)."""
    if axes is None or isinstance(axes, int):
        return [axes] * len(tree_flatten(value)[0])
    if isinstance(axes, (tuple, list)) and isinstance(value, (tuple, list)) and len(axes) == len(value):
        return [a for i, (ax, v) in enumerate(zip(axes, value)) for a in _axes_for(ax, v, f"{path}[{i}]")]
    if isinstance(axes, dict) and isinstance(value, dict) and set(axes) == set(value):
        return [a for k in sorted(value) for a in _axes_for(axes[k], value[k], f"{path}[{k!r}]")]
    raise DifferentiationError(f"vmap: in_axes{path} is {axes!r}, which does not match the argument's structure "
                               f"({type(value).__name__}{' of ' + str(len(value)) if hasattr(value, '__len__') else ''}); "
                               f"give an int or None, or a tuple/list/dict shaped like the arguments")


def vmap(fn: Callable, in_axes: Any = 0, out_axes: Any = 0) -> Callable:
    """Vectorize ``fn`` over a batch axis of its arguments.

    Args:
        fn: a function of arrays (and nested lists/tuples/dicts of them) for one example.
        in_axes: the batch axis of each argument: an int, None (not batched: passed to every
            example as is), or a tuple with one entry per positional argument (nested like it).
        out_axes: where the batch axis goes in each output (an int, or a tree like the output).

    Example:
        >>> import oxcore as ox
        >>> dot = lambda a, b: (a * b).sum()
        >>> ox.vmap(dot)(ox.ones((3, 4)), ox.ones((3, 4))).tolist()
        [4.0, 4.0, 4.0]
        >>> ox.vmap(dot, in_axes=(0, None))(ox.ones((3, 4)), ox.ones(4)).shape
        (3,)
        >>> per_example_grads = ox.vmap(ox.grad(lambda w, x: ((x * w).sum()) ** 2), in_axes=(None, 0))
    """
    @functools.wraps(fn)
    def batched(*args: Any) -> Any:
        axes = _axes_for(in_axes, args, "")
        flat, in_def = tree_flatten(args)
        size, placeholders, per_example = None, {}, []
        for i, (x, ax) in enumerate(zip(flat, axes)):
            if ax is None:
                per_example.append(x)
                continue
            if isinstance(x, np.ndarray) or isinstance(x, (float, int, bool)):
                from .ops.creation import asarray

                x = asarray(x)
            if not isinstance(x, Array):
                raise DifferentiationError(f"vmap: argument leaf {i} is a {type(x).__name__} with in_axes {ax}; only "
                                           f"arrays can be batched (give it in_axes None)")
            if not -x.ndim <= ax < x.ndim:
                raise DifferentiationError(f"vmap: in_axes {ax} is out of range for an argument of shape {x.shape} "
                                           f"(valid: {-x.ndim}..{x.ndim - 1}, or None)")
            ax %= x.ndim
            if size is not None and x.shape[ax] != size:
                raise DifferentiationError(f"vmap: batch sizes differ: {size} and {x.shape[ax]} (an argument of shape "
                                           f"{x.shape}, axis {ax})")
            size = x.shape[ax]
            xb = _moveaxis(x, ax, 0)
            p = Array._wrap(Node(_PLACEHOLDER, (), {}, xb.shape[1:], xb.dtype))
            placeholders[id(p._node)] = xb
            per_example.append(p)
        if size is None:
            raise DifferentiationError("vmap: no argument is batched (every in_axes is None)")
        token = TRACING.set((TRACING.get() or frozenset()) | frozenset(placeholders))
        try:
            out = fn(*tree_unflatten(in_def, per_example))
        except CompileError:
            raise DifferentiationError("vmap: the function read the value of an array that depends on a batched "
                                       "argument (bool(), float(), .item(), .numpy()...). Under vmap there is no "
                                       "single value to read; express the choice with oxcore.where") from None
        finally:
            TRACING.reset(token)
        leaves, out_def = tree_flatten(out)
        for o in leaves:
            if not isinstance(o, Array):
                raise DifferentiationError(f"vmap: the function returned a {type(o).__name__}; it must return arrays")
        results = batch_graph([o._node for o in leaves], placeholders, size)
        oax = _axes_for(out_axes, out, "")
        final = []
        for r, ax in zip(results, oax):
            if ax is None:
                raise DifferentiationError("vmap: out_axes None is only valid for outputs that do not depend on the "
                                           "batch; give an int")
            final.append(_moveaxis(r, 0, ax % r.ndim))
        return tree_unflatten(out_def, final)
    return batched


def _moveaxis(x: Array, src: int, dst: int) -> Array:
    if src == dst:
        return x
    order = [i for i in range(x.ndim) if i != src]
    order.insert(dst, src)
    return build("permute_dims", x, axes=tuple(order))


def batch_graph(outs: list[Node], placeholders: dict[int, Array], size: int) -> list[Array]:
    """The batched (axis 0) versions of ``outs``, whose graph reads the placeholder nodes."""
    order = _topo(outs, set(placeholders))
    memo: dict[int, Array] = dict(placeholders)
    for n in order:
        if id(n) in memo or not any(id(i) in memo for i in n.inputs):
            continue
        flags = [id(i) in memo for i in n.inputs]
        ins = [memo[id(i)] if f else Array._wrap(i) for i, f in zip(n.inputs, flags)]
        out = _batch_node(n, ins, flags, memo, size)
        if out.shape != (size,) + n.shape:
            raise DifferentiationError(f"vmap: the batching rule of {n.op!r} gave shape {out.shape}, expected "
                                       f"{(size,) + n.shape} (a bug in that rule)")
        memo[id(n)] = out
    return [memo[id(o)] if id(o) in memo else build("broadcast_to", Array._wrap(o), shape=(size,) + o.shape)
            for o in outs]


def _batch_node(n: Node, ins: list[Array], flags: list[bool], memo: dict[int, Array], size: int) -> Array:
    op = REGISTRY[n.op]
    if callable(op.batch):
        out = op.batch(ins, tuple(flags), **n.attrs)
        if out is not None:
            return out
    if op.decompose is not None and (op.source == "oxcore" or op.batch == THROUGH_DECOMPOSITION):
        d = op.decompose(*[Array._wrap(i) for i in n.inputs], **n.attrs)
        sub = {id(i): memo[id(i)] for i, f in zip(n.inputs, flags) if f}
        if id(d._node) in sub:
            return sub[id(d._node)]
        return batch_graph([d._node], sub, size)[0]
    # NOTE: the loop of last resort: correct for any op, one node per example
    rows = []
    for b in range(size):
        per = [_row(x, b) if f else x for x, f in zip(ins, flags)]
        rows.append(build("reshape", build(n.op, *per, **n.attrs), shape=(1,) + n.shape))
    return build("concat", *rows, axis=0) if size > 1 else rows[0]


def _row(x: Array, b: int) -> Array:
    s = build("slice", x, starts=(b,) + (0,) * (x.ndim - 1), stops=(b + 1,) + x.shape[1:], steps=(1,) * x.ndim)
    return build("reshape", s, shape=x.shape[1:])
