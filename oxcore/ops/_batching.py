"""Batching rules of the core ops for ``oxcore.vmap``, attached to the registry as data.

A rule is ``batch(inputs, batched, **attrs) -> Array | None``: ``batched[i]`` says whether
input i carries the batch as its axis 0; the result carries it as axis 0. ``None`` means "not
this case": vmap then goes through the op's decomposition, or runs it per example.
"""

from __future__ import annotations

from typing import Any

from .._array import Array, build
from .._registry import REGISTRY
from .elementwise import BINARY_OPS, UNARY_OPS


def _lift(x: Array, per_example_rank: int) -> Array:
    """A batched input of lower per-example rank gets size-1 axes after the batch axis, so
    broadcasting lines its per-example axes up with the others' (right-aligned)."""
    have = x.ndim - 1
    if have >= per_example_rank:
        return x
    return build("reshape", x, shape=(x.shape[0],) + (1,) * (per_example_rank - have) + x.shape[1:])


def _rank(ins: list[Array], batched: tuple[bool, ...]) -> int:
    return max(x.ndim - b for x, b in zip(ins, batched))


def _elementwise(name: str):
    def batch(ins: list[Array], batched: tuple[bool, ...], **attrs: Any) -> Array:
        r = _rank(ins, batched)
        return build(name, *[_lift(x, r) if b else x for x, b in zip(ins, batched)], **attrs)
    return batch


for _name in UNARY_OPS + BINARY_OPS + ("where", "astype", "clip", "relu", "sigmoid", "silu", "gelu"):
    REGISTRY.set_rules(_name, batch=_elementwise(_name))


def _shift(axis: Any) -> Any:
    return tuple(a + 1 for a in axis) if isinstance(axis, tuple) else axis + 1


def _along_axis(name: str):
    """Ops of one input with an ``axis`` attribute (an int or a tuple, normalized non-negative)."""
    def batch(ins: list[Array], batched: tuple[bool, ...], *, axis: Any, **attrs: Any) -> Array | None:
        if axis is None:
            return None
        return build(name, ins[0], axis=_shift(axis), **attrs)
    return batch


for _name in ("sum", "prod", "max", "min", "all", "any", "mean", "var", "std", "logsumexp", "cumulative_sum",
              "cumulative_prod", "softmax", "log_softmax", "argmax", "argmin"):
    REGISTRY.set_rules(_name, batch=_along_axis(_name))


def _reshape(ins, batched, *, shape):
    return build("reshape", ins[0], shape=(ins[0].shape[0],) + tuple(shape))


def _permute(ins, batched, *, axes):
    return build("permute_dims", ins[0], axes=(0,) + tuple(a + 1 for a in axes))


def _broadcast(ins, batched, *, shape):
    x = _lift(ins[0], len(shape))
    return build("broadcast_to", x, shape=(x.shape[0],) + tuple(shape))


def _slice(ins, batched, *, starts, stops, steps):
    b = ins[0].shape[0]
    return build("slice", ins[0], starts=(0,) + tuple(starts), stops=(b,) + tuple(stops), steps=(1,) + tuple(steps))


def _concat(ins, batched, *, axis):
    size = next(x.shape[0] for x, f in zip(ins, batched) if f)
    full = [x if f else build("broadcast_to", x, shape=(size,) + x.shape) for x, f in zip(ins, batched)]
    return build("concat", *full, axis=axis + 1)


def _matmul(ins, batched, **attrs):
    (a, b), (fa, fb) = ins, batched
    pa, pb = a.ndim - fa, b.ndim - fb
    # NOTE: 1-D operands become matrices (a row, a column) and lose that axis again at the end
    if pa == 1:
        a = build("reshape", a, shape=a.shape[:fa] + (1,) + a.shape[fa:])
    if pb == 1:
        b = build("reshape", b, shape=b.shape + (1,))
    # NOTE: batched operands are lifted to the deepest per-example rank r, so broadcasting keeps
    # the batch as the result's axis 0 (rank r + 1)
    r = max(a.ndim - fa, b.ndim - fb)
    out = build("matmul", _lift(a, r) if fa else a, _lift(b, r) if fb else b)
    keep = list(out.shape)
    if pb == 1:
        keep.pop(-1)
    if pa == 1:
        keep.pop(-2 if pb != 1 else -1)
    return build("reshape", out, shape=tuple(keep)) if tuple(keep) != out.shape else out


def _take(ins, batched, *, axis):
    x, idx = ins
    fx, fi = batched
    if fx and not fi:
        return build("take", x, idx, axis=axis + 1)
    if fi and not fx:
        out = build("take", x, idx, axis=axis)  # the batch axis lands at position `axis`
        if axis == 0:
            return out
        order = (axis,) + tuple(i for i in range(out.ndim) if i != axis)
        return build("permute_dims", out, axes=order)
    return None


def _take_along(ins, batched, *, axis):
    x, idx = ins
    fx, fi = batched
    x = x if fx else build("reshape", x, shape=(1,) + x.shape)
    idx = idx if fi else build("reshape", idx, shape=(1,) + idx.shape)
    return build("take_along_axis", x, idx, axis=axis + 1)


def _last_axis_only_x(name: str):
    """Norms and linear work on the last axis: a batched x with shared weights is the op itself."""
    def batch(ins, batched, **attrs):
        if batched[0] and not any(batched[1:]):
            return build(name, *ins, **attrs)
        return None
    return batch


def _rope(ins, batched, **attrs):
    # NOTE: rope reads (..., seq, features): a batch in front is one more leading axis
    return build("rope", *ins, **attrs) if batched[0] and not batched[1] else None


def _embedding(ins, batched):
    w, ids = ins
    return build("embedding", w, ids) if batched[1] and not batched[0] else None


for _name, _rule in (("reshape", _reshape), ("permute_dims", _permute), ("broadcast_to", _broadcast),
                     ("slice", _slice), ("concat", _concat), ("matmul", _matmul), ("take", _take),
                     ("take_along_axis", _take_along), ("embedding", _embedding), ("rope", _rope)):
    REGISTRY.set_rules(_name, batch=_rule)
for _name in ("rms_norm", "layer_norm", "linear"):
    REGISTRY.set_rules(_name, batch=_last_axis_only_x(_name))
