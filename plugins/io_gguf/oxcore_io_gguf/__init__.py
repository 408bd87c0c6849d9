"""oxcore-io-gguf: read and write GGUF (llama.cpp) files with oxcore.

Installing the package is all it takes: ``oxcore.load("model.gguf")`` then opens GGUF v2/v3
files lazily. Plain tensors (F32, F16, BF16, F64, I8..I64) are zero-copy views on the mapped
file; block-quantized ones (Q4_0 ... Q6_K, and whatever else gguf-py can decode) are lazy
``ggml_dequantize`` nodes that stay quantized until evaluated. ``to_mlx_affine`` turns
Q4_0/Q4_1/Q8_0/Q4_K (and Q5_0/Q5_1/Q5_K, widened to 8 bits) into oxcore's affine layout for
``oxcore.quantized_matmul`` without dequantizing.

Example:
    >>> import oxcore as ox, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.gguf")
    >>> w = ox.linspace(-1, 1, 2 * 64).reshape((2, 64))
    >>> from oxcore_io_gguf import save
    >>> save(p, {"w": w}, quantize="Q8_0")
    >>> f = ox.load(p)
    >>> f.info("w").type, f["w"].dtype
    ('Q8_0', oxcore.float32)
    >>> float(ox.abs(f["w"] - w).max()) < 0.01
    True

This module is the plugin (entry point group ``oxcore``); its hooks import nothing heavy.
"""

from __future__ import annotations

import importlib.metadata

from typing import Any, Callable, Mapping

from oxcore import hookimpl

OXCORE_PLUGIN_API = 1
__version__ = importlib.metadata.version("oxcore-io-gguf")  # NOTE: written once, in oxcore/VERSION

__all__ = ["GGUF", "save", "dequantize", "quantize", "to_mlx_affine", "ggml_linear", "OXCORE_PLUGIN_API", "__version__"]


@hookimpl
def oxcore_register_formats(register: Callable[[Any], None]) -> None:
    from ._format import GGUF

    register(GGUF())


@hookimpl
def oxcore_register_ops(register: Callable[..., Any]) -> None:
    from . import _matmul, _op

    _op.register_op(register)
    _matmul.register_op(register)


@hookimpl
def oxcore_register_kernels(register: Callable[[Any], None]) -> None:
    from ._op import kernels

    for k in kernels():
        register(k)


@hookimpl
def oxcore_register_test_cases(register: Callable[[Any], None]) -> None:
    """``ggml_dequantize`` cases for the conformance kit, one per block type (gguf-py's reference)."""
    from .blocks import SCALE_FIELDS
    from .testing import ggml_dequantize_case

    for t in SCALE_FIELDS:
        register(ggml_dequantize_case(t))


@hookimpl
def oxcore_register_commands(cli: Any) -> None:
    from ._bench import register

    register(cli)


def save(path: Any, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None, *,
         quantize: str | None = None, progress: Callable[[str, int], None] | None = None) -> None:
    """Write a GGUF file atomically, optionally quantizing float matrices to ``"Q8_0"``/``"Q4_0"``.

    Args:
        path: target ``.gguf`` file.
        tensors: name -> Array or NumPy array (float16/bfloat16/float32/float64, int8..int64).
        metadata: GGUF metadata (a loaded file's metadata keeps its value types).
        quantize: ``None`` (store as is), ``"Q8_0"`` or ``"Q4_0"`` (gguf-py's quantizers).
        progress: called as ``progress(name, nbytes)`` after each tensor is written.
    """
    from oxcore.extend import atomic_write

    from ._format import save_gguf

    with atomic_write(path) as tmp:
        save_gguf(tmp, tensors, metadata, quantize=quantize, progress=progress)


def __getattr__(name: str) -> Any:  # NOTE: lazy, so loading the plugin stays cheap
    if name == "GGUF":
        from ._format import GGUF

        return GGUF
    if name in ("dequantize", "quantize"):
        from . import quants

        return getattr(quants, name)
    if name == "ggml_linear":
        from ._matmul import ggml_linear

        return ggml_linear
    if name == "to_mlx_affine":
        from .affine import to_mlx_affine

        return to_mlx_affine
    raise AttributeError(f"module 'oxcore_io_gguf' has no attribute {name!r}")
