"""The ``ggml_dequantize`` op: declaration (shape rule, decomposition) and the cpu_numpy kernel."""

from __future__ import annotations

from typing import Any

from . import _types as T

OP = "ggml_dequantize"
ATTRS = ("ggml_type", "shape", "dtype")
#: what keys the ggml ops' autotune profile entries beyond dtypes and shape buckets
TUNE_ATTRS = ("ggml_type",)
DOC = "ggml block bytes (uint8) -> values; attrs: ggml_type name, logical shape, out dtype"


def check_blocks(op: str, raw: Any, attrs: dict[str, Any], what: str = "shape") -> tuple[Any, tuple[int, ...]]:
    """The ggml type and logical shape of an op's block-bytes input, checked: a known type, uint8
    bytes, a last axis of whole blocks and exactly the bytes that shape takes (``what`` names the
    tensor in messages). Shared by ``ggml_dequantize`` and ``ggml_matmul``."""
    from oxcore import DTypeError, ShapeError, uint8

    try:
        t = T.ggml_type(attrs["ggml_type"])
    except ValueError as e:
        raise DTypeError(str(e)) from None
    shape = tuple(int(s) for s in attrs["shape"])
    if raw.dtype is not uint8:
        raise DTypeError(f"{op} takes {what}'s stored bytes as uint8, got {raw.dtype.name}")
    if shape and shape[-1] % t.block_size:
        raise ShapeError(f"{op}: last axis {shape[-1]} of {what} {shape} is not a multiple of the {t.name} "
                         f"block size {t.block_size}")
    n = 1
    for s in raw.shape:
        n *= s
    if n != T.nbytes(t, shape):
        raise ShapeError(f"{op}: {what} {shape} of {t.name} takes {T.nbytes(t, shape)} bytes, got {n}")
    return t, shape


def infer(inputs: tuple[Any, ...], attrs: dict[str, Any]) -> tuple[tuple[int, ...], Any]:
    from oxcore import DTypeError, dtype as as_dtype

    from .quants import supported

    (raw,) = inputs
    t, shape = check_blocks(OP, raw, attrs)
    out = as_dtype(attrs["dtype"])
    if not out.is_floating:
        raise DTypeError(f"{OP} produces a floating dtype, got {out.name}; valid: float16, bfloat16, float32, float64")
    if not supported(t.name):
        raise DTypeError(f"ggml type {t.name} cannot be dequantized (neither oxcore_io_gguf nor gguf-py "
                         "implements it); read its bytes with TensorFile.raw(name)")
    return shape, out


def numpy_kernel(raw: Any, *, ggml_type: str, shape: tuple[int, ...], dtype: Any) -> Any:
    from .quants import dequantize

    out = dequantize(raw, ggml_type, shape)
    return out if out.dtype == dtype.numpy else out.astype(dtype.numpy)


def register_op(register: Any) -> None:
    from oxcore.extend import Attr, Category, DType

    from ._decompose import decompose
    from ._tune import dequantize_cases

    attrs = (Attr("ggml_type", str, note="a ggml type name: Q4_0, Q8_0, Q4_K, ..."),
             Attr("shape", tuple[int, ...], note="the tensor's logical shape (NumPy order)"),
             Attr("dtype", DType, note="the floating dtype produced"))
    assert tuple(a.name for a in attrs) == ATTRS
    # NOTE: tune_attrs: the bytes are uint8 whatever the type; each type is measured on its own
    register(OP, Category.QUANT, infer, attrs=attrs, decompose=decompose, doc=DOC, sample=sample,
             tune=dequantize_cases, tune_attrs=TUNE_ATTRS)


def sample(ox: Any) -> Any:
    """One Q8_0 block (an f16 scale and 32 int8 values) dequantized: for ``oxcore ops list``."""
    import numpy as np

    block = np.concatenate([np.array([0.5], np.float16).view(np.uint8),
                            np.arange(-16, 16, dtype=np.int8).view(np.uint8)])
    return ox.build(OP, ox.asarray(block), ggml_type="Q8_0", shape=(32,), dtype=ox.float32)


def kernels() -> list[Any]:
    from oxcore.extend import Kernel

    return [Kernel(OP, "cpu_numpy", numpy_kernel, name="gguf")]
