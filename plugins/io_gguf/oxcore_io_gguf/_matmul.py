"""The ``ggml_matmul`` op: ``x @ W.T`` where ``W`` (N, K) stays in its ggml block type.

The op is declared here, next to the ggml types, with a decomposition (``ggml_dequantize`` then
``matmul``) so every backend runs it. Kernel plugins (``oxcore-kernels-ggml``) register kernels
that compute on the blocks directly; the scheduler then picks per shape between them and the
decomposition, by capability and autotune profile.
"""

from __future__ import annotations

from typing import Any


OP = "ggml_matmul"
ATTRS = ("ggml_type", "shape")
DOC = "x (..., K) @ W.T with W (N, K) given as ggml block bytes (uint8); attrs: ggml_type, W's shape (N, K)"


def infer(inputs: tuple[Any, ...], attrs: dict[str, Any]) -> tuple[tuple[int, ...], Any]:
    from oxcore import DTypeError, ShapeError

    from ._op import check_blocks

    x, raw = inputs
    if len(attrs["shape"]) != 2:
        raise ShapeError(f"{OP}: W must be 2-D (N, K), got shape {tuple(attrs['shape'])}")
    _, shape = check_blocks(OP, raw, attrs, what="W")
    n, k = shape
    if not x.dtype.is_floating:
        raise DTypeError(f"{OP}: x must be floating, got {x.dtype.name}")
    if x.ndim < 1 or x.shape[-1] != k:
        raise ShapeError(f"{OP}: x {x.shape} does not fit W {shape}: x's last axis must be K={k}")
    return tuple(x.shape[:-1]) + (n,), x.dtype


def decompose(x: Any, raw: Any, *, ggml_type: str, shape: tuple[int, ...]) -> Any:
    """Dequantize W (float32, bit-identical to gguf-py) and multiply: the path every backend has."""
    import oxcore as ox

    w = ox.build("ggml_dequantize", raw, ggml_type=ggml_type, shape=tuple(shape), dtype=ox.float32)
    if x.dtype is not ox.float32:
        w = w.astype(x.dtype)
    return ox.matmul(x, ox.matrix_transpose(w))


def register_op(register: Any) -> None:
    from oxcore.extend import Attr, Category

    attrs = (Attr("ggml_type", str, note="W's ggml type name: Q4_0, Q8_0, Q4_K, ..."),
             Attr("shape", tuple[int, ...], note="W's shape (N, K); x's last axis is K"))
    assert tuple(a.name for a in attrs) == ATTRS
    from ._op import TUNE_ATTRS
    from ._tune import matmul_cases

    register(OP, Category.QUANT, infer, attrs=attrs, decompose=decompose, doc=DOC, sample=sample,
             vjp="decompose", tune=matmul_cases, tune_attrs=TUNE_ATTRS)


def sample(ox: Any) -> Any:
    """x (2, 32) times one Q8_0 row: for ``oxcore ops list``."""
    import numpy as np

    block = np.concatenate([np.array([0.5], np.float16).view(np.uint8),
                            np.arange(-16, 16, dtype=np.int8).view(np.uint8)])
    return ox.build(OP, ox.ones((2, 32)), ox.asarray(block), ggml_type="Q8_0", shape=(1, 32))


def ggml_linear(x: Any, w: Any) -> Any:
    """``x @ w.T`` for a weight read from a GGUF file, computed on its blocks where a kernel can.

    When ``w`` is the file's lazy ``ggml_dequantize`` of a 2-D quantized tensor (what indexing a
    :class:`~oxcore.TensorFile` gives), this builds one ``ggml_matmul`` over the stored bytes, so
    a kernel plugin can compute without dequantizing; any other ``w`` gives ``x @ w.T``.

    Example:
        >>> import oxcore as ox, numpy as np, tempfile, os
        >>> from oxcore_io_gguf import save, ggml_linear
        >>> p = os.path.join(tempfile.mkdtemp(), "w.gguf")
        >>> w = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
        >>> save(p, {"w": w}, quantize="Q8_0")
        >>> x = ox.ones((2, 64))
        >>> wq = ox.load(p)["w"]  # lazy: dequantized only if something asks for it
        >>> y = ggml_linear(x, wq)
        >>> y.shape, y._node.op
        ((2, 3), 'ggml_matmul')
        >>> bool(ox.abs(y - x @ wq.T).max() < 1e-4)
        True
    """
    import oxcore as ox

    node = getattr(w, "_node", None)
    if (node is not None and node.op == "ggml_dequantize" and len(node.attrs["shape"]) == 2
            and node.attrs["dtype"] is ox.float32 and getattr(x, "dtype", None) is not None and x.dtype.is_floating):
        from oxcore.extend import build, wrap

        return build(OP, x, wrap(node.inputs[0]), ggml_type=node.attrs["ggml_type"], shape=tuple(node.attrs["shape"]))
    return ox.matmul(x, ox.matrix_transpose(w))
