"""``ggml_matmul`` kernels for the two MLX backends (metal_basic, metal_fused).

- ``mlx_affine`` (any MLX device: Metal, CUDA, MLX's CPU): the blocks are re-packed on the
  device into MLX's affine layout once per weight buffer (``_mlx_affine``) and multiplied with
  ``mx.quantized_matmul``. Exact for Q4_0, Q4_1, Q8_0, Q4_K, and Q5_0/Q5_1/Q5_K widened to 8 bits.
  Q6_K is refused: its scales change every 16 values and MLX's group sizes are 32, 64, 128.
- ``mlx_dense`` (any MLX device; Q6_K only): the blocks are decoded on the device into a dense
  matrix in x's dtype once per weight buffer, then ``x @ W.T`` (what the hand-written MLX Gemma
  does with Q6_K), so a pinned MLX plan never sends Q6_K to another device.
- ``cuda_gemv`` (MLX's CUDA build only): ``mx.fast.cuda_kernel`` GEMV kernels reading the
  blocks in place for all 8 types (``_mlx_cuda``), for up to 8 rows of x; more rows go to
  ``mlx_affine`` or the op's decomposition (dequantize + matmul), which are matmul-shaped.
- ``cuda_gemv_q8`` (MLX's CUDA build only; the same 8 types): x quantized to 8 bits
  per call, then ``__dp4a`` integer dot products (``_mlx_cuda_q8``, ggml's ``mul_mat_vec_q``).
  Its prior puts it ahead of ``cuda_gemv`` only for float32 x on the types where it measured
  faster (``_mlx_cuda_q8.F32_SPEEDUP``): float16/bfloat16 x keep ``cuda_gemv``, whose products
  are exact in float32; ``oxcore autotune`` measures both.

Both conversions happen once per weight buffer: the kernels carry metal_fused's ``prepare``
attributes, so inside a compiled segment the converted weights arrive as inputs instead of
being converted again on every call (see ``oxcore_metal_fused.FusedBackend``).

mlx is imported only when a kernel runs or a node is checked, never at registration.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from oxcore.extend import Kernel

BACKENDS = ("metal_basic", "metal_fused")
DTYPES = ("float32", "float16", "bfloat16")
#: bytes per value the affine form reads (packed values + float32 scale and bias per 32)
_AFFINE_BYTES = {4: 0.75, 8: 1.25}


def _common(node: Any) -> "str | None":
    x = node.inputs[0]
    if x.dtype.name not in DTYPES:
        return f"x must be one of {', '.join(DTYPES)} (MLX's quantized kernels), got {x.dtype.name}"
    return None


def affine_supports(node: Any) -> "bool | str":
    from oxcore_io_gguf.affine import AFFINE

    t = node.attrs["ggml_type"]
    if t not in AFFINE:
        return (f"{t} has no exact MLX affine form (group sizes 32/64/128; Q6_K scales every 16 values); "
                f"types that map: {', '.join(AFFINE)}")
    return _common(node) or True


def dense_supports(node: Any) -> "bool | str":
    from ._mlx_affine import DENSE

    t = node.attrs["ggml_type"]
    if t not in DENSE:
        return (f"{t}: mlx_dense decodes only {', '.join(DENSE)} (the types with an affine form go to "
                f"mlx_affine, which reads fewer bytes)")
    return _common(node) or True


def _gemv_supports(node: Any, types: Any, max_rows: int, other_type: Callable[[str], str]) -> "bool | str":
    """What both CUDA GEMVs accept: MLX's CUDA build, one of ``types`` (``other_type(t)`` says
    why not), up to ``max_rows`` rows of x, and ``_common``'s checks."""
    from . import _mlx_cuda

    why = _mlx_cuda.available()
    if why:
        return why
    t = node.attrs["ggml_type"]
    if t not in types:
        return other_type(t)
    m = math.prod(node.inputs[0].shape[:-1])
    if m > max_rows:
        return (f"GEMV kernel takes up to {max_rows} rows of x, got {m}: matmul-shaped work goes to "
                f"mlx_affine or dequantize + matmul")
    return _common(node) or True


def cuda_supports(node: Any) -> "bool | str":
    from . import _mlx_cuda

    return _gemv_supports(node, _mlx_cuda.TYPES, _mlx_cuda.MAX_ROWS,
                          lambda t: f"no CUDA GEMV kernel for {t}; types: {', '.join(_mlx_cuda.TYPES)}")


def q8_supports(node: Any) -> "bool | str":
    from . import _mlx_cuda_q8

    return _gemv_supports(node, _mlx_cuda_q8.TYPES, _mlx_cuda_q8.MAX_ROWS,
                          lambda t: f"no CUDA q8 GEMV kernel for {t}; types: {', '.join(_mlx_cuda_q8.TYPES)}")


def _prior(bytes_per_value: Callable[[Any], float], launches: int) -> Callable[[Any], float]:
    def prior_us(node: Any) -> float:
        from oxcore_metal_basic import mlx_device
        from oxcore_metal_basic._backend import PRIORS

        launch, bw = PRIORS.get(mlx_device().platform, PRIORS["cpu"])
        n, k = node.attrs["shape"]
        x = node.inputs[0]
        io = x.dtype.itemsize * (math.prod(x.shape) + math.prod(node.shape))
        return launches * launch + (n * k * bytes_per_value(node) + io) / bw
    return prior_us


def _affine_bytes(node: Any) -> float:
    from oxcore_io_gguf.affine import AFFINE

    return _AFFINE_BYTES[AFFINE.get(node.attrs["ggml_type"], 8)]


def _q8_bytes(node: Any) -> float:
    from . import _mlx_cuda_q8

    # NOTE: the weight bytes at cuda_gemv's speed divided by the measured speed-up over it (float32
    # x); float16/bfloat16 x count at cuda_gemv's speed, so the pre-pass launch keeps them on cuda_gemv
    speedup = _mlx_cuda_q8.F32_SPEEDUP.get(node.attrs["ggml_type"], 1.0) if node.inputs[0].dtype.name == "float32" else 1.0
    return _raw_bytes(node) / speedup


def _dense_bytes(node: Any) -> float:
    return node.inputs[0].dtype.itemsize


def _raw_bytes(node: Any) -> float:
    from oxcore_io_gguf import _types as T

    t = T.ggml_type(node.attrs["ggml_type"])
    return t.type_size / t.block_size


def _affine(x: Any, raw: Any, *, ggml_type: str, shape: tuple[int, int]) -> Any:
    from . import _mlx_affine

    return _mlx_affine.matmul(x, raw, ggml_type=ggml_type, shape=shape)


def _affine_prepare(raw: Any, ins: Any) -> tuple:
    from . import _mlx_affine

    return _mlx_affine.converted(raw, ins.attrs["ggml_type"], ins.attrs["shape"])


def _affine_prepared(x: Any, wq: Any, s: Any, b: Any, *, ggml_type: str, shape: tuple[int, int]) -> Any:
    from . import _mlx_affine

    return _mlx_affine.affine_matmul(x, wq, s, b, ggml_type=ggml_type)


def _dense(x: Any, raw: Any, *, ggml_type: str, shape: tuple[int, int]) -> Any:
    from . import _mlx_affine

    return _mlx_affine.dense_matmul(x, raw, ggml_type=ggml_type, shape=shape)


def _dense_prepare(raw: Any, ins: Any) -> tuple:
    import mlx.core as mx

    from . import _mlx_affine

    # NOTE: the output's dtype is x's (one of DTYPES, all names of mlx.core dtypes)
    return _mlx_affine.dense(raw, ins.attrs["ggml_type"], ins.attrs["shape"], getattr(mx, ins.dtype.name))


def _dense_prepared(x: Any, w: Any, *, ggml_type: str, shape: tuple[int, int]) -> Any:
    return x @ w.T


# NOTE: metal_fused's protocol (oxcore_metal_fused.FusedBackend): argument 1, the raw blocks, is
# converted once per buffer outside its compiled segments and handed in as these arrays
for _fn, _prep, _run in ((_affine, _affine_prepare, _affine_prepared), (_dense, _dense_prepare, _dense_prepared)):
    _fn.prepare_arg, _fn.prepare, _fn.prepared = 1, _prep, _run  # type: ignore[attr-defined]


def _cuda(x: Any, raw: Any, *, ggml_type: str, shape: tuple[int, int]) -> Any:
    from . import _mlx_cuda

    return _mlx_cuda.gemv(x, raw, ggml_type=ggml_type, shape=shape)


def _cuda_q8(x: Any, raw: Any, *, ggml_type: str, shape: tuple[int, int]) -> Any:
    from . import _mlx_cuda_q8

    return _mlx_cuda_q8.gemv_q8(x, raw, ggml_type=ggml_type, shape=shape)


def kernels() -> list[Kernel]:
    """The MLX kernels for ``ggml_matmul``, one of each kind per MLX backend."""
    out = []
    for backend in BACKENDS:
        out.append(Kernel("ggml_matmul", backend, _affine, affine_supports, name="mlx_affine",
                          prior_us=_prior(_affine_bytes, 1)))
        out.append(Kernel("ggml_matmul", backend, _dense, dense_supports, name="mlx_dense",
                          prior_us=_prior(_dense_bytes, 1)))
        out.append(Kernel("ggml_matmul", backend, _cuda, cuda_supports, name="cuda_gemv",
                          prior_us=_prior(_raw_bytes, 1)))
        out.append(Kernel("ggml_matmul", backend, _cuda_q8, q8_supports, name="cuda_gemv_q8",
                          prior_us=_prior(_q8_bytes, 2)))
    return out
