"""The one reference helper: compare an oxcore result with a float64 NumPy reference.

``assert_close(got, expected, dtype, what=...)`` checks, in this order, the **shape**, then
the **dtype** (the node's dtype and the dtype of the buffer the backend handed back), then
the **values**, and raises ``AssertionError`` with ``expected=… got=…`` naming the op, dtype,
shape, the max error and the first offending element.

Tolerances, per result dtype (``|got - expected| <= atol + rtol * |expected|``, elementwise;
NaN must meet NaN and an infinity the same infinity):

============  ========  ========  ==============================================
dtype         rtol      atol      why
============  ========  ========  ==============================================
float16       5e-3      2e-3      ~10 ulp (eps 9.8e-4): one rounding plus a short
                                  decomposition in half precision
bfloat16      3e-2      1.6e-2    ~8 ulp (eps 7.8e-3)
float32       1e-5      1e-6      ~80 ulp: sums of a few hundred terms, decomposed
                                  transcendentals (``log(x + 1)`` near 0)
float64       1e-12     1e-12     the reference itself is float64
complex64     (float32's)         |got - expected| in the complex plane
complex128    (float64's)
bool, ints    exact     exact     integer arithmetic wraps the same everywhere
============  ========  ========  ==============================================

A case may scale both with ``tol`` (long contractions, chained decompositions). The
reference is computed in float64 from the very values the backend received (inputs are made
in the tested dtype first), so the tolerance covers the backend's error only.

Where elementwise bounds do not fit (a long dot product of terms much larger than its result,
quantized kernels), a case compares by normalized mean squared error instead
(``assert_nmse``): ``sum((got - ref)^2) / sum(ref^2)``, ggml's ``test-backend-ops`` metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dtypes import DType

#: dtype name -> (rtol, atol); integer and bool dtypes compare exactly.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float16": (5e-3, 2e-3),
    "bfloat16": (3e-2, 1.6e-2),
    "float32": (1e-5, 1e-6),
    "float64": (1e-12, 1e-12),
}


def _real(name: str) -> DType:
    from .. import _dtypes as D

    return D.dtype(name)


#: complex dtype name -> the dtype of its components (whose tolerance applies)
_REAL = {"complex64": _real("float32"), "complex128": _real("float64")}


def tolerance(dtype: DType, scale: float = 1.0) -> tuple[float, float]:
    """``(rtol, atol)`` for results of ``dtype`` (``(0, 0)`` for exact dtypes)."""
    rtol, atol = TOLERANCES.get(dtype.name, (0.0, 0.0))
    return rtol * scale, atol * scale


def assert_close(got: Any, expected: Any, dtype: DType, *, what: str = "result", tol: float = 1.0) -> None:
    """Assert that oxcore array ``got`` matches NumPy ``expected`` in shape, dtype, then values.

    Args:
        got: an ``oxcore.Array`` (evaluated here) or a NumPy array.
        expected: the reference values (any real dtype; float64 for floating results).
        dtype: the oxcore dtype ``got`` must have.
        what: names the check in messages, e.g. ``"add float16 (3, 4)"``.
        tol: multiplies the dtype's rtol and atol.

    Example:
        >>> import numpy as np, oxcore as ox
        >>> from oxcore.testing import assert_close
        >>> assert_close(ox.asarray([1.0, 2.0]) * 2, np.array([2.0, 4.0]), ox.float32)
    """
    expected = np.asarray(expected)
    shape = tuple(got.shape)
    if shape != expected.shape:
        raise AssertionError(f"{what}: wrong shape: expected={expected.shape} got={shape} (dtype {dtype.name})")
    got_dtype = getattr(got, "dtype", None)
    if hasattr(got, "_node") and got_dtype is not dtype:
        raise AssertionError(f"{what}: wrong dtype: expected={dtype.name} got={got_dtype} (shape {shape})")
    values = np.asarray(got.numpy() if hasattr(got, "_node") else got)
    if values.dtype != dtype.numpy:
        raise AssertionError(f"{what}: the backend returned a buffer of the wrong dtype: expected={dtype.numpy} "
                             f"got={values.dtype} (shape {shape})")
    if values.shape != shape:
        raise AssertionError(f"{what}: the backend returned a buffer of the wrong shape: expected={shape} "
                             f"got={values.shape} ({dtype.name})")
    if not dtype.is_floating and not dtype.is_complex:
        want = expected.astype(dtype.numpy) if expected.dtype != dtype.numpy else expected
        bad = values != want
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
            raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} values differ ({dtype.name} {shape}, "
                                 f"exact): at index {idx} expected={want[idx]!r} got={values[idx]!r}")
        return
    if dtype.is_complex:  # NOTE: |got - expected| in the complex plane, the components' tolerance
        g, e = values.astype(np.complex128), expected.astype(np.complex128)
        rtol, atol = tolerance(_REAL[dtype.name], tol)
        both_nan = np.isnan(g) & np.isnan(e)
        same_inf = np.isinf(e) & (g == e)
    else:
        g, e = values.astype(np.float64), expected.astype(np.float64)
        rtol, atol = tolerance(dtype, tol)
        both_nan = np.isnan(g) & np.isnan(e)
        same_inf = np.isinf(e) & (g == e)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e)
        ok = (err <= atol + rtol * np.abs(e)) | both_nan | same_inf
    if not ok.all():
        bad = ~ok
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
        finite = err[np.isfinite(err)]
        max_err = float(finite.max()) if finite.size else float("nan")
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} values differ ({dtype.name} {shape}, "
                             f"rtol={rtol:g} atol={atol:g}, max abs error {max_err:.3g}): at index {idx} "
                             f"expected={e[idx]!r} got={g[idx]!r}")


def nmse(reference: Any, got: Any) -> float:
    """Normalized mean squared error ``sum((got - ref)^2) / sum(ref^2)`` in float64 (0 when
    equal; the plain sum of squares when the reference is all zeros).

    Example:
        >>> import numpy as np
        >>> from oxcore.testing import nmse
        >>> nmse(np.array([1.0, 2.0]), np.array([1.0, 2.1])) < 3e-3
        True
    """
    r = np.asarray(reference, np.float64)
    d = np.asarray(got, np.float64) - r
    den = float(np.sum(r * r))
    return float(np.sum(d * d)) / den if den else float(np.sum(d * d))


def assert_nmse(got: Any, expected: Any, dtype: DType, *, what: str = "result", max_nmse: float) -> None:
    """Assert that oxcore array ``got`` matches ``expected`` in shape and dtype, then that their
    NMSE (``nmse``) is at most ``max_nmse``; a NaN or infinity where the reference is finite fails.

    Example:
        >>> import numpy as np, oxcore as ox
        >>> from oxcore.testing import assert_nmse
        >>> assert_nmse(ox.asarray([1.0, 2.0]) * 2, np.array([2.0, 4.0]), ox.float32, max_nmse=1e-12)
    """
    expected = np.asarray(expected)
    shape = tuple(got.shape)
    if shape != expected.shape:
        raise AssertionError(f"{what}: wrong shape: expected={expected.shape} got={shape} (dtype {dtype.name})")
    if hasattr(got, "_node") and got.dtype is not dtype:
        raise AssertionError(f"{what}: wrong dtype: expected={dtype.name} got={got.dtype} (shape {shape})")
    values = np.asarray(got.numpy() if hasattr(got, "_node") else got)
    if values.dtype != dtype.numpy or values.shape != shape:
        raise AssertionError(f"{what}: the backend returned a buffer of {values.dtype}{list(values.shape)}, "
                             f"expected {dtype.numpy}{list(shape)}")
    g, e = values.astype(np.float64), expected.astype(np.float64)
    bad = ~np.isfinite(g) & np.isfinite(e)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} values are not finite where the reference "
                             f"is: at index {idx} expected={e[idx]!r} got={g[idx]!r}")
    err = nmse(e, g)
    if not err <= max_nmse:
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g - e)), g.shape)) if g.ndim else ()
        raise AssertionError(f"{what}: NMSE {err:.3g} > {max_nmse:g} ({dtype.name} {shape}); largest error at "
                             f"index {worst}: expected={e[worst]!r} got={g[worst]!r}")


def run_in_threads(work: Any, n: int) -> None:
    """Call ``work(i)`` for ``i in range(n)`` in ``n`` threads started together (a barrier);
    re-raise the first failure in the caller's thread.

    Example:
        >>> from oxcore.testing import run_in_threads
        >>> seen = set(); run_in_threads(seen.add, 3); sorted(seen)
        [0, 1, 2]
    """
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as e:  # NOTE: re-raised below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
