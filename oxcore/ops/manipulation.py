"""Shape manipulation: reshape, permute, broadcast, concat/stack/split, slicing, flip, roll, tile, pad."""

from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import numpy as np

from .. import _dtypes as D
from .._array import Array, scalar, build
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._registry import Attr, Category, register_op
from ._attrs import AXES, axis
from ._rules import as_array, norm_axes, norm_axis, norm_shape
from ._rules import broadcast_shapes as _broadcast_shapes

__all__ = ["reshape", "permute_dims", "matrix_transpose", "broadcast_to", "broadcast_arrays",
           "expand_dims", "squeeze", "concat", "stack", "split", "unstack", "flip", "roll", "tile",
           "pad", "moveaxis", "repeat", "diff", "broadcast_shapes"]


# --- primitives ----------------------------------------------------------------------------------
def _reshape_infer(inputs, attrs):
    (x,) = inputs
    shape = attrs["shape"]
    if math.prod(shape) != math.prod(x.shape):
        raise ShapeError(f"cannot reshape array of shape {x.shape} ({math.prod(x.shape)} elements) "
                         f"into shape {shape} ({math.prod(shape)} elements)")
    return shape, x.dtype


def _permute_infer(inputs, attrs):
    (x,) = inputs
    axes = attrs["axes"]
    if sorted(axes) != list(range(x.ndim)):
        raise AttributeValueError(f"axes {axes} is not a permutation of {tuple(range(x.ndim))}")
    return tuple(x.shape[a] for a in axes), x.dtype


def _broadcast_infer(inputs, attrs):
    (x,) = inputs
    shape = attrs["shape"]
    if len(shape) < x.ndim or _broadcast_shapes(x.shape, shape) != shape:
        raise ShapeError(f"cannot broadcast shape {x.shape} to {shape}")
    return shape, x.dtype


def _concat_infer(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0]
    dt = first.dtype
    for x in inputs[1:]:
        if x.dtype is not dt:
            raise DTypeError(f"concat needs equal dtypes after promotion, got {dt.name} and {x.dtype.name}")
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis):
            raise ShapeError(f"concat along axis {axis}: shapes {first.shape} and {x.shape} differ elsewhere")
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in inputs)
    return tuple(shape), dt


def _slice_infer(inputs, attrs):
    (x,) = inputs
    shape = tuple(len(range(*slice(a, b, c).indices(d)))
                  for d, a, b, c in zip(x.shape, attrs["starts"], attrs["stops"], attrs["steps"]))
    return shape, x.dtype


register_op("reshape", Category.MANIPULATION, _reshape_infer, attrs=(Attr("shape", tuple[int, ...], note="ints >= 0, no -1 left: the public -1 is resolved"),),
            doc="same data, new shape")
register_op("permute_dims", Category.MANIPULATION, _permute_infer, attrs=(Attr("axes", tuple[int, ...], note="a permutation of range(ndim), non-negative, never the identity; the public None reverses"),),
            doc="reorder axes")
register_op("broadcast_to", Category.MANIPULATION, _broadcast_infer, attrs=(Attr("shape", tuple[int, ...], note="ints >= 0, never equal to the input's shape"),),
            doc="broadcast to a shape")
register_op("concat", Category.MANIPULATION, _concat_infer, attrs=(axis(0, "non-negative; the public None (flatten first) is resolved"),), variadic=True,
            doc="join arrays along an axis")
register_op("slice", Category.INDEXING, _slice_infer,
            attrs=(Attr("starts", tuple[int | None, ...], note="one per axis, Python slice semantics (may be negative or None)"),
                   Attr("stops", tuple[int | None, ...], note="one per axis; None: to the end (or the start, stepping back)"),
                   Attr("steps", tuple[int, ...], note="one per axis, nonzero, may be negative")),
            doc="strided slice: per axis start/stop/step with Python slice semantics (stop may be None)")


def reshape(x: Any, /, shape: Sequence[int], *, copy: bool | None = None) -> Array:
    """Give the data a new shape; one dimension may be -1.

    Example:
        >>> import oxcore as ox
        >>> ox.reshape(ox.arange(6), (2, -1)).shape
        (2, 3)
    """
    x = as_array(x)
    shape = tuple(operator.index(s) for s in ((shape,) if isinstance(shape, int) else shape))
    if shape.count(-1) > 1:
        raise AttributeValueError(f"reshape: only one -1 allowed, got {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or x.size % known:
            raise ShapeError(f"cannot reshape array of shape {x.shape} into shape {shape}")
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    if shape == x.shape:
        return x
    return build("reshape", x, shape=norm_shape(shape))


def permute_dims(x: Any, /, axes: Sequence[int] | None = None) -> Array:
    """Reorder the axes (reverse them when ``axes`` is None).

    Example:
        >>> import oxcore as ox
        >>> ox.permute_dims(ox.zeros((2, 3, 4)), (2, 0, 1)).shape
        (4, 2, 3)
    """
    x = as_array(x)
    axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(norm_axis(a, x.ndim) for a in axes)
    if axes == tuple(range(x.ndim)):
        return x
    return build("permute_dims", x, axes=axes)


def matrix_transpose(x: Any, /) -> Array:
    """Swap the last two axes.

    Example:
        >>> import oxcore as ox
        >>> ox.matrix_transpose(ox.zeros((5, 2, 3))).shape
        (5, 3, 2)
    """
    x = as_array(x)
    if x.ndim < 2:
        raise ShapeError(f"matrix_transpose needs at least 2 dimensions, got shape {x.shape}")
    return permute_dims(x, tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


def moveaxis(x: Any, source: int | Sequence[int], destination: int | Sequence[int], /) -> Array:
    """Move axes to new positions (ints, or sequences of equal length; others keep their order).

    Example:
        >>> import oxcore as ox
        >>> ox.moveaxis(ox.zeros((2, 3, 4)), (0, 1), (-1, -2)).shape
        (4, 3, 2)
    """
    x = as_array(x)
    src = tuple(source) if isinstance(source, (tuple, list)) else (source,)
    dst = tuple(destination) if isinstance(destination, (tuple, list)) else (destination,)
    if len(src) != len(dst):
        raise AttributeValueError(f"moveaxis: {len(src)} source axes for {len(dst)} destinations")
    s = [norm_axis(a, x.ndim, "source") for a in src]
    d = [norm_axis(a, x.ndim, "destination") for a in dst]
    if len(set(s)) != len(s) or len(set(d)) != len(d):
        raise AttributeValueError(f"moveaxis: repeated axes in source {src} or destination {dst}")
    rest = iter(i for i in range(x.ndim) if i not in s)
    placed = dict(zip(d, s))
    return permute_dims(x, [placed[i] if i in placed else next(rest) for i in range(x.ndim)])


def broadcast_to(x: Any, /, shape: Sequence[int]) -> Array:
    """Broadcast to ``shape`` (Array API rules).

    Example:
        >>> import oxcore as ox
        >>> ox.broadcast_to(ox.asarray([1, 2]), (3, 2)).shape
        (3, 2)
    """
    x = as_array(x)
    shape = norm_shape(shape)
    return x if shape == x.shape else build("broadcast_to", x, shape=shape)


def broadcast_arrays(*arrays: Any) -> list[Array]:
    """Broadcast all arrays against each other."""
    arrays = [as_array(a) for a in arrays]
    shape = _broadcast_shapes(*(a.shape for a in arrays))
    return [broadcast_to(a, shape) for a in arrays]


def expand_dims(x: Any, /, axis: int | Sequence[int] = 0) -> Array:
    """Insert size-1 axes at ``axis`` (positions in the result).

    Example:
        >>> import oxcore as ox
        >>> ox.expand_dims(ox.zeros((2, 3)), axis=-1).shape
        (2, 3, 1)
    """
    x = as_array(x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    n = x.ndim + len(axes)
    axes = sorted(norm_axis(a, n) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def squeeze(x: Any, /, axis: int | Sequence[int] | None = None) -> Array:
    """Remove size-1 axes (those named, or all when None).

    Example:
        >>> import oxcore as ox
        >>> ox.squeeze(ox.zeros((1, 3, 1)), axis=0).shape
        (3, 1)
    """
    x = as_array(x)
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else norm_axes(axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of shape {x.shape}: its size is {x.shape[a]}, not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def concat(arrays: Sequence[Any], /, *, axis: int | None = 0) -> Array:
    """Join arrays along ``axis`` (flattened first when None); dtypes are promoted.

    Example:
        >>> import oxcore as ox
        >>> ox.concat([ox.zeros((2, 3)), ox.ones((1, 3))]).shape
        (3, 3)
    """
    arrays = [as_array(a) for a in arrays]
    if not arrays:
        raise AttributeValueError("concat needs at least one array")
    if axis is None:
        arrays, axis = [reshape(a, (-1,)) for a in arrays], 0
    dt = arrays[0].dtype
    for a in arrays[1:]:
        dt = D.result_type_pair(dt, a.dtype)
    from .elementwise import astype

    arrays = [a if a.dtype is dt else astype(a, dt) for a in arrays]
    if len(arrays) == 1:
        return arrays[0]
    return build("concat", *arrays, axis=norm_axis(axis, arrays[0].ndim))


def stack(arrays: Sequence[Any], /, *, axis: int = 0) -> Array:
    """Join arrays of equal shape along a new axis.

    Example:
        >>> import oxcore as ox
        >>> ox.stack([ox.zeros(3), ox.ones(3)], axis=1).shape
        (3, 2)
    """
    arrays = [as_array(a) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ShapeError(f"stack needs arrays of one shape, got {sorted(shapes)}")
    ax = norm_axis(axis, arrays[0].ndim + 1)
    return concat([expand_dims(a, ax) for a in arrays], axis=ax)


def slice_axis(x: Array, axis: int, start: int, stop: int, step: int = 1) -> Array:
    n = x.ndim
    starts, stops, steps = [0] * n, list(x.shape), [1] * n
    starts[axis], stops[axis], steps[axis] = start, stop, step
    return build("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))


def split(x: Any, indices_or_sections: int | Sequence[int], /, *, axis: int = 0) -> list[Array]:
    """Split into equal sections (an int) or at the given indices.

    Example:
        >>> import oxcore as ox
        >>> [p.shape for p in ox.split(ox.zeros((6, 2)), 3)]
        [(2, 2), (2, 2), (2, 2)]
    """
    x = as_array(x)
    ax = norm_axis(axis, x.ndim)
    n = x.shape[ax]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0 or n % k:
            raise ShapeError(f"cannot split axis of size {n} into {k} equal sections")
        cuts = [n // k * i for i in range(1, k)]
    else:
        # NOTE: negative indices count from the end, as in NumPy (SciPy's overlap-add relies on it)
        cuts = [i + n if i < 0 else i for i in (operator.index(i) for i in indices_or_sections)]
    bounds = [0, *cuts, n]
    return [slice_axis(x, ax, max(0, min(a, n)), max(0, min(b, n))) for a, b in zip(bounds, bounds[1:])]


def unstack(x: Any, /, *, axis: int = 0) -> tuple[Array, ...]:
    """Split along ``axis`` into arrays with that axis removed."""
    x = as_array(x)
    ax = norm_axis(axis, x.ndim)
    return tuple(squeeze(p, ax) for p in split(x, x.shape[ax], axis=ax)) if x.shape[ax] else ()


def _flip(x, *, axis):
    n = x.ndim
    starts = tuple(x.shape[i] - 1 if i in axis else 0 for i in range(n))
    stops = tuple(None if i in axis else x.shape[i] for i in range(n))  # None: run past index 0
    steps = tuple(-1 if i in axis else 1 for i in range(n))
    return build("slice", x, starts=starts, stops=stops, steps=steps)


register_op("flip", Category.MANIPULATION, lambda i, a: (i[0].shape, i[0].dtype), attrs=(AXES,),
            decompose=_flip, doc="reverse along axes")


def flip(x: Any, /, *, axis: int | Sequence[int] | None = None) -> Array:
    """Reverse the order of elements along ``axis`` (all axes when None).

    Example:
        >>> import oxcore as ox
        >>> ox.flip(ox.asarray([1, 2, 3])).tolist()
        [3, 2, 1]
    """
    x = as_array(x)
    return build("flip", x, axis=norm_axes(axis, x.ndim))


def _roll(x, *, shift, axis):
    if axis is None:
        flat = build("reshape", x, shape=(x.size,))
        return build("reshape", _roll(flat, shift=shift, axis=(0,)), shape=x.shape)
    out = x
    for s, a in zip(shift, axis):
        n = x.shape[a]
        if n == 0:
            continue
        s %= n
        if s:
            out = concat([slice_axis(out, a, n - s, n), slice_axis(out, a, 0, n - s)], axis=a)
    return out


register_op("roll", Category.MANIPULATION, lambda i, a: (i[0].shape, i[0].dtype),
            attrs=(Attr("shift", tuple[int, ...], note="one per axis (any int, may be 0); one total shift when axis is None"),
                   Attr("axis", tuple[int, ...] | None, default=None, note="non-negative, in the caller's order; None: the flattened array")),
            decompose=_roll, doc="circular shift")


def roll(x: Any, /, shift: int | Sequence[int], *, axis: int | Sequence[int] | None = None) -> Array:
    """Shift elements circularly along ``axis`` (the flattened array when None).

    Example:
        >>> import oxcore as ox
        >>> ox.roll(ox.asarray([1, 2, 3, 4]), 1).tolist()
        [4, 1, 2, 3]
    """
    x = as_array(x)
    shifts = tuple(shift) if isinstance(shift, (list, tuple)) else (int(shift),)
    if axis is None:
        return build("roll", x, shift=(sum(shifts),), axis=None)
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if len(shifts) == 1 and len(axes) > 1:
        shifts = shifts * len(axes)
    if len(shifts) != len(axes):
        raise AttributeValueError(f"roll: {len(shifts)} shifts for {len(axes)} axes")
    return build("roll", x, shift=shifts, axis=tuple(norm_axis(a, x.ndim) for a in axes))


def _tile_infer(inputs, attrs):
    (x,) = inputs
    reps = attrs["reps"]
    shape = (1,) * (len(reps) - x.ndim) + x.shape
    reps = (1,) * (len(shape) - len(reps)) + reps
    return tuple(s * r for s, r in zip(shape, reps)), x.dtype


def _tile(x, *, reps):
    shape = (1,) * (len(reps) - x.ndim) + x.shape
    reps = (1,) * (len(shape) - len(reps)) + reps
    x = build("reshape", x, shape=tuple(d for s in shape for d in (1, s)))
    big = tuple(d for r, s in zip(reps, shape) for d in (r, s))
    return build("reshape", build("broadcast_to", x, shape=big), shape=tuple(r * s for r, s in zip(reps, shape)))


register_op("tile", Category.MANIPULATION, _tile_infer, attrs=(Attr("reps", tuple[int, ...], note="ints >= 0, any length"),), decompose=_tile,
            doc="repeat the whole array along each axis")


def tile(x: Any, /, repetitions: Sequence[int]) -> Array:
    """Repeat the array ``repetitions[i]`` times along axis i.

    Example:
        >>> import oxcore as ox
        >>> ox.tile(ox.asarray([1, 2]), (2,)).tolist()
        [1, 2, 1, 2]
    """
    return build("tile", as_array(x), reps=tuple(operator.index(r) for r in repetitions))


def repeat(x: Any, repeats: Any, /, *, axis: int | None = None) -> Array:
    """Repeat each element ``repeats`` times along ``axis`` (the flattened array when None).
    ``repeats`` is an int, or one count per element along the axis (an integer array or
    sequence); counts fix the result's size, so an array of counts is evaluated here.

    Example:
        >>> import oxcore as ox
        >>> ox.repeat(ox.asarray([1, 2]), 2).tolist()
        [1, 1, 2, 2]
        >>> ox.repeat(ox.asarray([[1, 2], [3, 4]]), ox.asarray([1, 2]), axis=0).tolist()
        [[1, 2], [3, 4], [3, 4]]
    """
    x = as_array(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    ax = norm_axis(axis, x.ndim)
    if not isinstance(repeats, int):
        counts = np.asarray(repeats.numpy() if isinstance(repeats, Array) else repeats)
        if counts.dtype.kind not in "iu" or counts.ndim > 1 or counts.size not in (1, x.shape[ax]):
            raise AttributeValueError(f"repeat: repeats must be an int or a 1-D integer array of size 1 or "
                                      f"{x.shape[ax]} (the axis length); got {counts.dtype} of shape {counts.shape}")
        if counts.size != 1:
            if (counts < 0).any():
                raise AttributeValueError(f"repeat: counts must be >= 0, got {counts.tolist()}")
            from .creation import asarray
            from .indexing import take

            return take(x, asarray(np.repeat(np.arange(x.shape[ax]), counts)), axis=ax)
        repeats = int(counts.reshape(()))
    if repeats < 0:
        raise AttributeValueError(f"repeat: repeats must be >= 0, got {repeats}")
    y = expand_dims(x, ax + 1)
    shape = list(y.shape)
    shape[ax + 1] = repeats
    out = list(x.shape)
    out[ax] *= repeats
    return reshape(broadcast_to(y, shape), out)


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """The shape that arrays of ``shapes`` broadcast to (``ShapeError`` when they do not).

    Example:
        >>> import oxcore as ox
        >>> ox.broadcast_shapes((3, 1), (4,))
        (3, 4)
    """
    return _broadcast_shapes(*(norm_shape(s) for s in shapes)) if shapes else ()


def _pad_infer(inputs, attrs):
    (x,) = inputs
    w = attrs["pad_width"]
    if len(w) != x.ndim or any(a < 0 or b < 0 for a, b in w):
        raise AttributeValueError(f"pad_width {w} must give (before, after) >= 0 for each of {x.ndim} axes")
    return tuple(d + a + b for d, (a, b) in zip(x.shape, w)), x.dtype


def _pad(x, *, pad_width, value):
    from .creation import full

    out = x
    for ax, (a, b) in enumerate(pad_width):
        parts = []
        if a:
            s = list(out.shape); s[ax] = a
            parts.append(full(tuple(s), value, dtype=x.dtype))
        parts.append(out)
        if b:
            s = list(out.shape); s[ax] = b
            parts.append(full(tuple(s), value, dtype=x.dtype))
        if len(parts) > 1:
            out = build("concat", *parts, axis=ax)
    return out


register_op("pad", Category.MANIPULATION, _pad_infer,
            attrs=(Attr("pad_width", tuple[tuple[int, int], ...], note="one (before, after) pair per axis; the public int or pair is repeated"),
                   Attr("value", int | float | bool, default=0, note="a Python scalar, cast to the input's dtype")), decompose=_pad,
            doc="constant padding")


def pad(x: Any, /, pad_width: Any, *, value: float = 0) -> Array:
    """Pad with a constant; ``pad_width`` is an int, a (before, after) pair, or one pair per axis.

    Example:
        >>> import oxcore as ox
        >>> ox.pad(ox.asarray([1, 2]), 1).tolist()
        [0, 1, 2, 0]
    """
    x = as_array(x)
    if isinstance(pad_width, int):
        w = ((pad_width, pad_width),) * x.ndim
    elif len(pad_width) == 2 and all(isinstance(v, int) for v in pad_width):
        w = (tuple(pad_width),) * x.ndim
    else:
        w = tuple(tuple(p) for p in pad_width)
    return build("pad", x, pad_width=w, value=value)


def _diff_infer(inputs, attrs):
    (x,) = inputs
    if not x.dtype.is_numeric:
        raise DTypeError(f"diff expects a numeric dtype, got {x.dtype.name}")
    shape = list(x.shape)
    shape[attrs["axis"]] = max(0, shape[attrs["axis"]] - attrs["n"])
    return tuple(shape), x.dtype


def _diff(x, *, axis, n):
    for _ in range(n):
        m = x.shape[axis]
        if m == 0:
            break
        x = slice_axis(x, axis, 1, m) - slice_axis(x, axis, 0, m - 1)
    return x


register_op("diff", Category.MANIPULATION, _diff_infer, attrs=(axis(), Attr("n", int, default=1, note=">= 1 (n=0 builds no node)")), decompose=_diff,
            doc="n-th forward difference along an axis")


def diff(x: Any, /, *, axis: int = -1, n: int = 1, prepend: Any = None, append: Any = None) -> Array:
    """The ``n``-th forward difference ``x[i + 1] - x[i]`` along ``axis``, after joining
    ``prepend`` and ``append`` (arrays, or scalars broadcast to one slice) to ``x`` there.

    Example:
        >>> import oxcore as ox
        >>> ox.diff(ox.asarray([1, 4, 9, 16])).tolist()
        [3, 5, 7]
        >>> ox.diff(ox.asarray([1.0, 4.0, 9.0]), n=2, prepend=0.0).tolist()
        [2.0, 2.0]
    """
    x = as_array(x)
    if x.ndim == 0:
        raise ShapeError("diff needs an array of at least 1 dimension, got a 0-d array")
    ax = norm_axis(axis, x.ndim)
    n = operator.index(n)
    if n < 0:
        raise AttributeValueError(f"diff: n must be >= 0, got {n}")
    parts = []
    for extra in (prepend, None, append):
        if extra is None and parts and parts[-1] is x:
            continue
        if extra is None:
            parts.append(x)
            continue
        e = as_array(extra) if isinstance(extra, Array) else scalar(extra, x.dtype) \
            if isinstance(extra, (bool, int, float)) else as_array(extra)
        if e.ndim == 0:
            s = list(x.shape)
            s[ax] = 1
            e = broadcast_to(e, tuple(s))
        parts.append(e)
    if len(parts) > 1:
        x = concat(parts, axis=ax)
    return build("diff", x, axis=ax, n=n) if n else x
