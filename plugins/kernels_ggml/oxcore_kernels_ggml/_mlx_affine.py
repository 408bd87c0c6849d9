"""ggml blocks -> MLX's affine layout (or, for Q6_K, a dense matrix), on the device with MLX ops,
cached per source buffer.

The affine mapping is ``oxcore_io_gguf.affine``'s (see its table: exact for Q4_0, Q4_1, Q8_0,
Q4_K; Q5_0, Q5_1, Q5_K widened to 8 bits), run by the same block decoders with ``mlx.core`` as
their array module, so the bytes never leave the device and the conversion can run inside an
``mx.compile``d segment. Q6_K has no affine form (its scales change every 16 values; MLX's
groups are 32, 64 or 128): ``to_dense`` decodes it into a dense matrix in x's dtype, as the
hand-written MLX Gemma does.

Memory: a converted weight is kept next to its raw bytes while the raw ``mx.array`` lives
(weakref). Per 32 values it holds the packed values (16 bytes at 4 bits, 32 at 8) plus a float32
scale and bias (8 bytes): 0.75 bytes a value for the 4-bit types (Q4_0's raw blocks take 0.5625,
Q4_K's 0.5625), 1.25 for the 8-bit ones (Q8_0 raw: 1.0625, Q5_0: 0.6875). Float32 scales keep
the K types exact (``d * sc`` needs 17 significant bits). A dense Q6_K weight takes x's itemsize
a value (raw: 0.82 bytes).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import mlx.core as mx

from oxcore_io_gguf import _types as T
from oxcore_io_gguf.affine import AFFINE, GROUP, _f16, _groups, _pack

#: id(raw mx.array) -> (weakref to it, {(kind, ggml_type, shape[, dtype]): converted arrays})
_CACHE: dict[int, tuple[Any, dict[tuple, tuple]]] = {}
#: ggml types ``to_dense`` decodes on the device
DENSE = ("Q6_K",)


def to_affine(raw: mx.array, ggml_type: str, shape: tuple[int, int]) -> tuple[mx.array, mx.array, mx.array]:
    """Raw block bytes of W (N, K) -> ``(w_q, scales, biases)`` for ``mx.quantized_matmul``
    (group size 32, ``bits=AFFINE[ggml_type]``), as lazy MLX arrays."""
    t = T.BY_NAME[ggml_type]
    n, k = shape
    q, s, b = _groups(raw.reshape(-1, t.type_size), ggml_type, mx)
    bits = AFFINE[ggml_type]
    return (_pack(q, bits, mx).reshape(n, k * bits // 32), s.reshape(n, k // GROUP), b.reshape(n, k // GROUP))


def to_dense(raw: mx.array, ggml_type: str, shape: tuple[int, int], dtype: Any = mx.float32) -> mx.array:
    """Raw Q6_K bytes of W (N, K) -> W as a lazy ``dtype`` array; in float32 equal value for value
    to gguf-py's ``dequantize`` (the same products in the same order: ``(d * scale) * q``)."""
    if ggml_type not in DENSE:
        raise ValueError(f"to_dense decodes {', '.join(DENSE)}, not {ggml_type}")
    b = raw.reshape(-1, T.BY_NAME[ggml_type].type_size)
    nb = b.shape[0]
    # NOTE: ggml's order: value 128 h + 64 s + j takes nibble s of ql[64 h + j] and, from
    # qh[32 h + j % 32], the two bits at 2 (2 s + j // 32)
    lo = (b[:, :128].reshape(nb, 2, 1, 64) >> mx.array([0, 4], mx.uint8).reshape(1, 1, 2, 1)) & 0x0F
    hi = (b[:, 128:192].reshape(nb, 2, 1, 32) >> mx.array([0, 2, 4, 6], mx.uint8).reshape(1, 1, 4, 1)) & 3
    q = (lo.reshape(nb, 256) | (hi.reshape(nb, 256) << 4)).astype(mx.float32) - 32
    d = _f16(b, 208, mx) * b[:, 192:208].view(mx.int8).astype(mx.float32)
    w = (d.reshape(nb, 16, 1) * q.reshape(nb, 16, 16)).reshape(shape)
    return w if dtype == mx.float32 else w.astype(dtype)


def _tracing(raw: mx.array) -> bool:
    try:
        mx.eval(raw)
    except ValueError:  # NOTE: inside mx.compile the inputs are placeholders that cannot be evaluated
        return True
    return False


def _cached(raw: mx.array, sig: tuple, make: Callable[[], tuple]) -> tuple:
    """``make()`` evaluated once per raw buffer and ``sig``, kept while that buffer lives; inside
    an ``mx.compile`` trace (a placeholder ``raw``) the lazy arrays, part of the compiled graph."""
    key = id(raw)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is raw and sig in hit[1]:
        return hit[1][sig]
    out = make()
    if _tracing(raw):
        return out
    mx.eval(*out)
    if hit is None or hit[0]() is not raw:
        def forget(ref: Any, key: int = key) -> None:
            entry = _CACHE.get(key)
            if entry is not None and entry[0] is ref:
                del _CACHE[key]
        hit = _CACHE[key] = (weakref.ref(raw, forget), {})
    hit[1][sig] = out
    return out


def converted(raw: mx.array, ggml_type: str, shape: tuple[int, int]) -> tuple[mx.array, mx.array, mx.array]:
    """``to_affine``, evaluated once per raw buffer and kept while that buffer lives.

    Inside an ``mx.compile`` trace the raw input is a placeholder and the conversion becomes part
    of the compiled graph (it would run on every call); metal_fused therefore prepares the
    weights of its compiled segments outside the trace (``prepare`` in ``_mlx``)."""
    return _cached(raw, ("affine", ggml_type, tuple(shape)), lambda: to_affine(raw, ggml_type, tuple(shape)))


def dense(raw: mx.array, ggml_type: str, shape: tuple[int, int], dtype: Any) -> tuple[mx.array]:
    """``(to_dense(...),)``, evaluated once per raw buffer and dtype, like ``converted``."""
    return _cached(raw, ("dense", ggml_type, tuple(shape), dtype),
                   lambda: (to_dense(raw, ggml_type, tuple(shape), dtype),))


def affine_matmul(x: mx.array, wq: mx.array, s: mx.array, b: mx.array, *, ggml_type: str) -> mx.array:
    """``x @ W.T`` on converted weights (the result cast back to x's dtype: float32 scales)."""
    y = mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=GROUP, bits=AFFINE[ggml_type])
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def matmul(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int]) -> mx.array:
    """``x @ W.T`` through ``mx.quantized_matmul`` on the converted weight (float32 scales; the
    result is cast back to x's dtype)."""
    return affine_matmul(x, *converted(raw, ggml_type, shape), ggml_type=ggml_type)


def dense_matmul(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int]) -> mx.array:
    """``x @ W.T`` on the dense copy of W in x's dtype."""
    return x @ dense(raw, ggml_type, shape, x.dtype)[0].T
