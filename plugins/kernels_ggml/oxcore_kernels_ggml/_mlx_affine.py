"""ggml blocks -> MLX's affine layout, on the device with MLX ops, cached per source buffer.

The same mapping as ``oxcore_io_gguf.affine`` (see its table: exact for Q4_0, Q4_1, Q8_0, Q4_K;
Q5_0, Q5_1, Q5_K widened to 8 bits), run by the same block decoders with ``mlx.core`` as their
array module, so the bytes never leave the device and the conversion can run inside an
``mx.compile``d segment.

Memory: a converted weight is kept next to its raw bytes while the raw ``mx.array`` lives
(weakref). Per 32 values it holds the packed values (16 bytes at 4 bits, 32 at 8) plus a float32
scale and bias (8 bytes): 0.75 bytes a value for the 4-bit types (Q4_0's raw blocks take 0.5625,
Q4_K's 0.5625), 1.25 for the 8-bit ones (Q8_0 raw: 1.0625, Q5_0: 0.6875). Float32 scales keep
the K types exact (``d * sc`` needs 17 significant bits).
"""

from __future__ import annotations

import weakref
from typing import Any

import mlx.core as mx

from oxcore_io_gguf import _types as T
from oxcore_io_gguf.affine import AFFINE, GROUP, _groups, _pack

#: id(raw mx.array) -> (weakref to it, (ggml_type, shape), (w_q, scales, biases))
_CACHE: dict[int, tuple[Any, tuple, tuple]] = {}


def to_affine(raw: mx.array, ggml_type: str, shape: tuple[int, int]) -> tuple[mx.array, mx.array, mx.array]:
    """Raw block bytes of W (N, K) -> ``(w_q, scales, biases)`` for ``mx.quantized_matmul``
    (group size 32, ``bits=AFFINE[ggml_type]``), as lazy MLX arrays."""
    t = T.BY_NAME[ggml_type]
    n, k = shape
    q, s, b = _groups(raw.reshape(-1, t.type_size), ggml_type, mx)
    bits = AFFINE[ggml_type]
    return (_pack(q, bits, mx).reshape(n, k * bits // 32), s.reshape(n, k // GROUP), b.reshape(n, k // GROUP))


def _tracing(raw: mx.array) -> bool:
    try:
        mx.eval(raw)
    except ValueError:  # NOTE: inside mx.compile the inputs are placeholders that cannot be evaluated
        return True
    return False


def converted(raw: mx.array, ggml_type: str, shape: tuple[int, int]) -> tuple[mx.array, mx.array, mx.array]:
    """``to_affine``, evaluated once per raw buffer and kept while that buffer lives.

    Inside an ``mx.compile`` trace (metal_fused's compiled segments) the raw input is a
    placeholder, so the conversion becomes part of the compiled graph and runs on every call.
    """
    key, sig = id(raw), (ggml_type, tuple(shape))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is raw and hit[1] == sig:
        return hit[2]
    out = to_affine(raw, ggml_type, sig[1])
    if _tracing(raw):
        return out
    mx.eval(*out)

    def forget(ref: Any, key: int = key) -> None:
        entry = _CACHE.get(key)
        if entry is not None and entry[0] is ref:
            del _CACHE[key]
    _CACHE[key] = (weakref.ref(raw, forget), sig, out)
    return out


def matmul(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int]) -> mx.array:
    """``x @ W.T`` through ``mx.quantized_matmul`` on the converted weight (float32 scales; the
    result is cast back to x's dtype)."""
    wq, s, b = converted(raw, ggml_type, shape)
    y = mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=GROUP, bits=AFFINE[ggml_type])
    return y if y.dtype == x.dtype else y.astype(x.dtype)
