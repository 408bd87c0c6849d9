"""``oxcore.fft``: the Array API FFT extension (2024.12), NumPy's conventions.

Transforms are registry ops (``oxcore.ops.fft``) with kernels on cpu_numpy (``numpy.fft``) and
the MLX backends (``mx.fft``, complex64; MLX has no hfft/ihfft nor complex128, so those run on
cpu_numpy). Real inputs of the complex transforms are cast to the matching complex dtype.

Example:
    >>> import oxcore as ox
    >>> ox.fft.rfft(ox.asarray([1.0, 0.0, -1.0, 0.0])).tolist()
    [0j, (2+0j), 0j]
    >>> ox.fft.fftfreq(4).tolist()
    [0.0, 0.25, -0.5, -0.25]
"""

from __future__ import annotations

from typing import Any, Sequence

from . import _dtypes as D
from ._array import Array, build
from ._errors import AttributeValueError, DTypeError
from .ops import fft as _ops
from .ops._rules import as_array, norm_axes, norm_axis

__all__ = ["fft", "ifft", "fftn", "ifftn", "rfft", "irfft", "rfftn", "irfftn", "hfft", "ihfft", "fftfreq", "rfftfreq",
           "fftshift", "ifftshift"]


def _input(op: str, x: Any) -> Array:
    x = as_array(x)
    want = _ops.KINDS[op][0]
    if want == "c" and not x.dtype.is_complex:
        if not x.dtype.is_floating and not x.dtype.is_integer:
            raise DTypeError(f"fft.{op} expects a numeric dtype, got {x.dtype.name}")
        x = build("astype", x, dtype=D.complex_dtype(x.dtype if x.dtype.is_floating else D.default_float))
    if want == "r" and x.dtype not in (D.float32, D.float64):
        if x.dtype.is_complex:
            raise DTypeError(f"fft.{op} expects a real floating-point dtype, got {x.dtype.name}")
        x = build("astype", x, dtype=D.float64 if x.dtype is D.float64 else D.float32)
    return x


def _one(op: str, x: Any, n: int | None, axis: int, norm: str) -> Array:
    x = _input(op, x)
    ax = norm_axis(axis, x.ndim)
    if n is None:
        n = 2 * (x.shape[ax] - 1) if op in ("irfft", "hfft") else x.shape[ax]
    return build(op, x, s=(int(n),), axes=(ax,), norm=norm)


def _many(op: str, x: Any, s: Sequence[int] | None, axes: Sequence[int] | None, norm: str) -> Array:
    x = _input(op, x)
    if axes is None:
        axes = tuple(range(x.ndim)) if s is None else tuple(range(x.ndim - len(s), x.ndim))
    ax = tuple(norm_axis(a, x.ndim) for a in axes)
    if len(set(ax)) != len(ax):
        raise AttributeValueError(f"fft.{op}: repeated axes {tuple(axes)}")
    if s is None:
        s = [x.shape[a] for a in ax]
        if op == "irfftn":
            s[-1] = 2 * (s[-1] - 1)
    if len(s) != len(ax):
        raise AttributeValueError(f"fft.{op}: {len(s)} lengths in s for {len(ax)} axes")
    return build(op, x, s=tuple(int(v) for v in s), axes=ax, norm=norm)


def fft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: str = "backward") -> Array:
    """One-dimensional discrete Fourier transform along ``axis`` (length ``n``: cropped or
    zero-padded)."""
    return _one("fft", x, n, axis, norm)


def ifft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: str = "backward") -> Array:
    """Inverse of ``fft``."""
    return _one("ifft", x, n, axis, norm)


def rfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: str = "backward") -> Array:
    """FFT of real input: the ``n // 2 + 1`` non-negative frequencies."""
    return _one("rfft", x, n, axis, norm)


def irfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: str = "backward") -> Array:
    """Inverse of ``rfft``: a real result of length ``n`` (default ``2 * (m - 1)``).

    Example:
        >>> import oxcore as ox
        >>> x = ox.asarray([1.0, 2.0, 3.0, 4.0])
        >>> [round(v, 5) for v in ox.fft.irfft(ox.fft.rfft(x), n=4).tolist()]
        [1.0, 2.0, 3.0, 4.0]
    """
    return _one("irfft", x, n, axis, norm)


def hfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: str = "backward") -> Array:
    """FFT of a Hermitian-symmetric signal given by its first half: a real result."""
    return _one("hfft", x, n, axis, norm)


def ihfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: str = "backward") -> Array:
    """Inverse of ``hfft``."""
    return _one("ihfft", x, n, axis, norm)


def fftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
         norm: str = "backward") -> Array:
    """N-dimensional FFT over ``axes`` (all, or the last ``len(s)``), lengths ``s``."""
    return _many("fftn", x, s, axes, norm)


def ifftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          norm: str = "backward") -> Array:
    """Inverse of ``fftn``."""
    return _many("ifftn", x, s, axes, norm)


def rfftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          norm: str = "backward") -> Array:
    """N-dimensional FFT of real input (the last axis keeps ``s[-1] // 2 + 1`` frequencies)."""
    return _many("rfftn", x, s, axes, norm)


def irfftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
           norm: str = "backward") -> Array:
    """Inverse of ``rfftn``: a real result."""
    return _many("irfftn", x, s, axes, norm)


def fftfreq(n: int, /, *, d: float = 1.0, dtype: Any = None, device: Any = None) -> Array:
    """Sample frequencies of an ``n``-point FFT with sample spacing ``d``."""
    from .ops.creation import arange
    from .ops.manipulation import concat

    dt = D.dtype(dtype) if dtype is not None else D.default_float
    pos = arange(0, (n - 1) // 2 + 1, dtype=dt)
    neg = arange(-(n // 2), 0, dtype=dt)
    out = concat([pos, neg]) * (1.0 / (n * d))
    return out.to_device(device) if device is not None else out


def rfftfreq(n: int, /, *, d: float = 1.0, dtype: Any = None, device: Any = None) -> Array:
    """Sample frequencies of ``rfft``: ``0 .. n // 2`` over ``n * d``."""
    from .ops.creation import arange

    dt = D.dtype(dtype) if dtype is not None else D.default_float
    out = arange(0, n // 2 + 1, dtype=dt) * (1.0 / (n * d))
    return out.to_device(device) if device is not None else out


def _shift(x: Any, axes: Any, sign: int) -> Array:
    from .ops.manipulation import roll

    x = as_array(x)
    ax = norm_axes(axes, x.ndim)
    return roll(x, tuple(sign * (x.shape[a] // 2) for a in ax), axis=ax) if ax else x


def fftshift(x: Any, /, *, axes: Any = None) -> Array:
    """Move the zero frequency to the center.

    Example:
        >>> import oxcore as ox
        >>> ox.fft.fftshift(ox.fft.fftfreq(4)).tolist()
        [-0.5, -0.25, 0.0, 0.25]
    """
    return _shift(x, axes, 1)


def ifftshift(x: Any, /, *, axes: Any = None) -> Array:
    """Inverse of ``fftshift``."""
    return _shift(x, axes, -1)
