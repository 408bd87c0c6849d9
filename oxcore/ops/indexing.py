"""Indexing: ``x[key]``, ``x[key] = v``, take, take_along_axis.

Keys follow NumPy/Array API semantics: ints, slices, ``...``, ``None``, integer arrays
(broadcast together; their result dims go where the first one was if they are adjacent,
else first) and boolean masks (evaluated eagerly: the result shape depends on the data).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .. import _dtypes as D
from .._array import Array, build
from .._errors import DTypeError, ShapeError
from .._registry import Category, register_op
from ._attrs import SPEC, axis
from ._rules import as_array, broadcast_shapes, norm_axis

__all__ = ["take", "take_along_axis", "scatter_add", "getitem", "setitem"]


def _take_infer(inputs, attrs):
    x, idx = inputs
    if not idx.dtype.is_integer:
        raise DTypeError(f"take indices must be integers, got {idx.dtype.name}")
    a = attrs["axis"]
    return x.shape[:a] + idx.shape + x.shape[a + 1:], x.dtype


def _take_along_infer(inputs, attrs):
    x, idx = inputs
    if not idx.dtype.is_integer:
        raise DTypeError(f"take_along_axis indices must be integers, got {idx.dtype.name}")
    if idx.ndim != x.ndim:
        raise ShapeError(f"take_along_axis: indices have {idx.ndim} dims, array has {x.ndim}")
    a = attrs["axis"]
    shape = broadcast_shapes(x.shape[:a] + (1,) + x.shape[a + 1:], idx.shape[:a] + (1,) + idx.shape[a + 1:])
    return shape[:a] + (idx.shape[a],) + shape[a + 1:], x.dtype


register_op("take", Category.INDEXING, _take_infer, attrs=(axis(None, "non-negative; the public None flattens first (axis 0)"),), doc="gather along one axis")
register_op("take_along_axis", Category.INDEXING, _take_along_infer, attrs=(axis(),),
            doc="gather with an index array of the same rank")


def take(x: Any, indices: Any, /, *, axis: int | None = None) -> Array:
    """Gather ``x`` at ``indices`` along ``axis`` (flattened when None). Negative indices wrap.

    Example:
        >>> import oxcore as ox
        >>> ox.take(ox.asarray([10, 20, 30]), ox.asarray([2, 0])).tolist()
        [30, 10]
    """
    x, idx = as_array(x), as_array(indices)
    if axis is None:
        from .manipulation import reshape

        x, axis = reshape(x, (-1,)), 0
    return build("take", x, idx, axis=norm_axis(axis, x.ndim))


def take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Array:
    """Pick values along ``axis`` with an index array of the same rank (as argsort/argmax give).

    Example:
        >>> import oxcore as ox
        >>> x = ox.asarray([[1, 9], [8, 2]])
        >>> ox.take_along_axis(x, ox.asarray([[1], [0]]), axis=1).tolist()
        [[9], [8]]
    """
    x, idx = as_array(x), as_array(indices)
    return build("take_along_axis", x, idx, axis=norm_axis(axis, x.ndim))


def _scatter_add_infer(inputs, attrs):
    x, idx, v = inputs
    if not idx.dtype.is_integer:
        raise DTypeError(f"scatter_add indices must be integers, got {idx.dtype.name}")
    a = attrs["axis"]
    want = x.shape[:a] + idx.shape + x.shape[a + 1:]
    if v.shape != want:
        raise ShapeError(f"scatter_add along axis {a} of {x.shape} with indices {idx.shape} needs values of shape "
                         f"{want}, got {v.shape}")
    if v.dtype is not x.dtype:
        raise DTypeError(f"scatter_add values must have the array's dtype {x.dtype.name}, got {v.dtype.name}")
    return x.shape, x.dtype


def _scatter_add(x, idx, v, *, axis):
    # NOTE: as a one-hot product, so every backend runs it: (rows x m) values @ (m x n) one-hot
    from .elementwise import equal
    from .linalg import matmul

    n, m = x.shape[axis], idx.size
    flat = build("reshape", idx, shape=(m, 1)) if idx.shape != (m, 1) else idx
    onehot = build("astype", equal(flat, build("arange", start=0, stop=n, step=1, dtype=idx.dtype)), dtype=x.dtype)
    pre, post = x.shape[:axis], x.shape[axis + 1:]
    vm = build("reshape", v, shape=pre + (m,) + post)
    order = tuple(i for i in range(vm.ndim) if i != axis) + (axis,)
    moved = build("permute_dims", vm, axes=order) if order != tuple(range(vm.ndim)) else vm
    back = tuple(range(axis)) + (vm.ndim - 1,) + tuple(range(axis, vm.ndim - 1))
    contrib = matmul(moved, onehot)
    return x + (build("permute_dims", contrib, axes=back) if back != tuple(range(vm.ndim)) else contrib)


register_op("scatter_add", Category.INDEXING, _scatter_add_infer, attrs=(axis(0),), decompose=_scatter_add,
            doc="x with values added at indices along one axis (repeats accumulate); take's transpose")


def scatter_add(x: Any, indices: Any, values: Any, /, *, axis: int = 0) -> Array:
    """``x`` with ``values`` added at ``indices`` along ``axis``; repeated indices accumulate.
    The transpose of ``take``: ``values`` has the shape ``take(x, indices, axis=axis)`` has.
    Indices must lie in ``[0, x.shape[axis])``.

    Example:
        >>> import oxcore as ox
        >>> ox.scatter_add(ox.zeros(3), ox.asarray([0, 2, 0]), ox.asarray([1.0, 2.0, 3.0])).tolist()
        [4.0, 0.0, 2.0]
    """
    x, idx, v = as_array(x), as_array(indices), as_array(values)
    if v.dtype is not x.dtype:
        v = v.astype(x.dtype)
    return build("scatter_add", x, idx, v, axis=norm_axis(axis, x.ndim))


# --- advanced indexing primitive -------------------------------------------------------------
# spec entries: ("s", start, stop, step) for a slice, ("a", k) for index array input k.
def _index_shape(x_shape, spec, arrays):
    bshape = broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    pos = [i for i, e in enumerate(spec) if e[0] == "a"]
    adjacent = bool(pos) and pos == list(range(pos[0], pos[-1] + 1))
    out: list[int] = []
    placed = False
    for d, e in zip(x_shape, spec):
        if e[0] == "s":
            out.append(len(range(*slice(e[1], e[2], e[3]).indices(d))))
        elif adjacent and not placed:
            out.extend(bshape)
            placed = True
    return tuple(out) if (adjacent or not pos) else tuple(bshape) + tuple(out)


def _index_infer(inputs, attrs):
    x, *arrays = inputs
    for a in arrays:
        if not a.dtype.is_integer:
            raise DTypeError(f"index arrays must be integers, got {a.dtype.name}")
    return _index_shape(x.shape, attrs["spec"], arrays), x.dtype


def _index_update_infer(inputs, attrs):
    x, v, *arrays = inputs
    region = _index_shape(x.shape, attrs["spec"], arrays)
    if v.shape != region:
        raise ShapeError(f"cannot assign a value of shape {v.shape} to a region of shape {region}")
    return x.shape, x.dtype


register_op("index", Category.INDEXING, _index_infer, attrs=(SPEC,), variadic=True,
            doc="NumPy-style indexing with slices and integer arrays")
register_op("index_update", Category.INDEXING, _index_update_infer, attrs=(SPEC,), variadic=True,
            doc="functional x[key] = value")


def _parse(x: Array, key: Any) -> tuple[list, list[Array], list[tuple[int, int]], list[int]]:
    """Return (spec, index arrays, int-dim positions to drop, newaxis positions in the output)."""
    key = key if isinstance(key, tuple) else (key,)
    items = []
    for k in key:
        if isinstance(k, (list, np.ndarray)) or (isinstance(k, Array)):
            k = as_array(k)
            if k.dtype is D.bool_:
                items.extend(_mask_to_indices(k))
                continue
        items.append(k)
    n_ell = sum(1 for k in items if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in items if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"too many indices: array is {x.ndim}-dimensional, but {n_real} were indexed")
    if n_ell:
        i = items.index(Ellipsis)
        items[i:i + 1] = [slice(None)] * (x.ndim - n_real)
    else:
        items += [slice(None)] * (x.ndim - n_real)
    has_arrays = any(isinstance(k, Array) for k in items)
    spec, arrays, drops, newaxes = [], [], [], []
    dim = 0
    for k in items:
        if k is None:
            if has_arrays:
                raise IndexError("None (newaxis) cannot be combined with integer-array indices; "
                                 "index first, then use expand_dims")
            newaxes.append(len(spec) - len(drops) + len(newaxes))
            continue
        size = x.shape[dim]
        if isinstance(k, slice):
            spec.append(("s", *k.indices(size)) if k.step is None or k.step > 0 else ("s", k.start, k.stop, k.step))
        elif isinstance(k, Array):
            spec.append(("a", len(arrays)))
            arrays.append(k)
        else:
            try:
                i = operator.index(k)
            except TypeError:
                raise IndexError(f"invalid index {k!r}: use ints, slices, ..., None, integer or bool arrays") from None
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {dim} with size {size}")
            i %= size
            if has_arrays:
                from .creation import asarray

                spec.append(("a", len(arrays)))
                arrays.append(asarray(i, dtype=D.int64))
            else:
                spec.append(("s", i, i + 1, 1))
                drops.append(dim)
        dim += 1
    return spec, arrays, drops, newaxes


def _mask_to_indices(mask: Array) -> list[Array]:
    # NOTE: data-dependent shape; the Array API allows evaluating here.
    from .creation import asarray

    return [asarray(i.astype(np.int64)) for i in np.nonzero(mask.numpy())]


def _basic_shape(x_shape, spec, drops, newaxes):
    shape = [len(range(*slice(e[1], e[2], e[3]).indices(d))) for d, e in zip(x_shape, spec)]
    out = [d for i, d in enumerate(shape) if i not in drops]
    for p in newaxes:
        out.insert(p, 1)
    return tuple(out)


def getitem(x: Array, key: Any) -> Array:
    """``x[key]`` (see the module docstring for the key forms)."""
    spec, arrays, drops, newaxes = _parse(x, key)
    if arrays:
        return build("index", x, *arrays, spec=tuple(spec))
    out = x
    if any(e[1:] != (0, d, 1) for e, d in zip(spec, x.shape)):
        out = build("slice", x, starts=tuple(e[1] for e in spec), stops=tuple(e[2] for e in spec),
                    steps=tuple(e[3] for e in spec))
    shape = _basic_shape(x.shape, spec, drops, newaxes)
    if shape != out.shape:
        out = build("reshape", out, shape=shape)
    return out if out is not x else Array._wrap(x._node)


def setitem(x: Array, key: Any, value: Any) -> Array:
    """Return the array that ``x[key] = value`` makes (``Array.__setitem__`` rebinds to it)."""
    from .elementwise import astype
    from .manipulation import broadcast_to, reshape
    from ._rules import operands

    spec, arrays, drops, newaxes = _parse(x, key)
    _, v = operands(x, value)
    if v.dtype is not x.dtype:
        v = astype(v, x.dtype)
    if arrays:
        region = _index_shape(x.shape, spec, arrays)
        v = broadcast_to(v, region)
    else:
        v = broadcast_to(v, _basic_shape(x.shape, spec, drops, newaxes))
        region = _index_shape(x.shape, spec, [])
        v = reshape(v, region)
    return build("index_update", x, v, *arrays, spec=tuple(spec))
