"""Capability checks: ``supports(node) -> True | "reason"`` for the MLX kernels.

They look only at dtypes, shapes and attributes (never at data) and import nothing from mlx,
so a refusal can be explained even while planning. The scheduler runs refused nodes on
another backend (or through the op's decomposition) and records why.
"""

from __future__ import annotations

import math
from typing import Any, Callable

# NOTE: an integer matmul multiplies-and-sums through a (..., M, K, N) temporary; above this
# many elements NumPy's BLAS-free integer matmul on the host is the better place for it.
INT_MATMUL_LIMIT = 1 << 26

_FLOAT_ONLY = {"linear", "tensordot", "dequantize", "quantized_matmul"}

#: Ops whose float64 results MLX's CPU kernels compute with float32 accuracy (exp, sin, cos and
#: erf use float32 approximations; measured errors ~1e-7 relative), and the ops built on them.
#: tests/test_basic_support.py re-measures this, so the list shrinks when MLX improves.
F64_INEXACT = frozenset({"exp", "sin", "cos", "erf", "sigmoid", "silu", "gelu", "logaddexp", "softmax",
                         "log_softmax", "logsumexp", "rope", "scaled_dot_product_attention"})


#: ops MLX has no function for: op -> the reason every node of it is refused (it runs elsewhere)
MISSING: dict[str, str] = {
    "nextafter": "MLX has no nextafter",
    "hfft": "MLX has no hfft",
    "ihfft": "MLX has no ihfft",
}


#: elementwise ops whose MLX function refuses complex64 (measured, MLX 0.32): op -> reason
NO_COMPLEX: dict[str, str] = {
    "expm1": "MLX's expm1 has no complex64 ([expm1] Not supported for complex64)",
}


def _dtypes(node: Any) -> list[str]:
    return [node.dtype.name] + [i.dtype.name for i in node.inputs]


def _int_matmul(node: Any) -> "bool | str":
    a, b = node.inputs
    if a.dtype.is_floating:
        return True
    k = a.shape[-1]
    temp = math.prod(node.shape) * k
    if temp > INT_MATMUL_LIMIT:
        return (f"MLX matmul is floating-point only; this {a.dtype.name} product would need a temporary of "
                f"{temp} elements (limit {INT_MATMUL_LIMIT})")
    return True


_LINALG = ("inv", "det", "slogdet", "solve", "cholesky", "qr", "svd", "svdvals", "eigh", "eigvalsh")


#: measured: MLX's CPU det/slogdet round float64 to float32 internally (errors ~1e-7 relative)
_LINALG_F32 = frozenset({"det", "slogdet"})


def _linalg(node: Any) -> "bool | str":
    dt = node.inputs[0].dtype.name
    if dt not in ("float32", "float64"):
        return f"MLX's linalg kernels take float32 or float64, got {dt}"
    if dt == "float64" and node.op in _LINALG_F32:
        return f"MLX computes float64 {node.op} with float32 accuracy"
    if node.op == "qr" and node.attrs["mode"] == "complete" and node.inputs[0].shape[-2] > node.inputs[0].shape[-1]:
        return "MLX's qr computes the reduced factorization only (mode='complete' of a tall matrix)"
    return True


_FFT = ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn")


def _fft(node: Any) -> "bool | str":
    if node.inputs[0].dtype.name == "float64":
        return "MLX's FFT computes in complex64 only (float64 input asked for complex128)"
    return True


def _quantized(node: Any) -> "bool | str":
    if "float64" in _dtypes(node):
        return "MLX's quantized kernels have no float64"
    if any(math.prod(i.shape) == 0 for i in node.inputs) or math.prod(node.shape) == 0:
        return "MLX's quantized kernels fail on empty arrays"
    return True


#: ops that MLX runs as a scatter (`x.at[...].add`): on the GPU, no 64-bit integer values
_GPU_SCATTER = frozenset({"scatter_add", "index_update"})


_OP_CHECKS: dict[str, Callable[[Any], "bool | str"]] = {
    "matmul": _int_matmul,
    "dequantize": _quantized,
    "quantized_matmul": _quantized,
    **{op: _linalg for op in _LINALG},
    **{op: _fft for op in _FFT},
}


def make_supports(device: Any, op: str, extra: Callable[[Any], "bool | str"] | None = None) -> Callable:
    """The ``supports`` function of ``op``'s kernel on ``device`` (an MLXDevice or a stand-in
    with ``.kind`` and ``.platform``); ``extra`` adds a kernel-specific check."""
    gpu = device.kind == "gpu"
    check = _OP_CHECKS.get(op)
    if op in MISSING:
        reason = MISSING[op]
        return lambda node: reason
    float_only = op in _FLOAT_ONLY

    def supports(node: Any) -> "bool | str":
        names = _dtypes(node)
        if "complex128" in names:
            return f"MLX has no complex128; {op} was asked for it"
        if op in NO_COMPLEX and "complex64" in names:
            return NO_COMPLEX[op]
        if "float64" in names:
            if gpu:
                return f"MLX has no float64 kernels on the GPU ({device.platform}); {op} was asked for float64"
            if op in F64_INEXACT:
                return f"MLX computes float64 {op} with float32 accuracy"
        if gpu and op in _GPU_SCATTER and node.dtype.name in ("int64", "uint64"):
            # NOTE: seen on an H200 (MLX 0.32.4 CUDA): "GPU scatter does not yet support int64"
            # (scatter_add and index_update of int64/uint64 failed the conformance suite there)
            return f"MLX's GPU scatter has no 64-bit integer values; {op} was asked for {node.dtype.name}"
        if float_only and not node.inputs[0].dtype.is_floating:
            return f"MLX's {op} is floating-point only, got {node.inputs[0].dtype.name}"
        for c in (check, extra):
            if c is not None:
                r = c(node)
                if r is not True:
                    return r
        return True
    return supports
