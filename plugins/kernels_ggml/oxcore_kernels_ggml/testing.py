"""Test helpers shared by the kernels' tests: random ggml blocks with valid scales and gguf-py's
dequantization (from ``oxcore_io_gguf.blocks``), the float64 reference product, ggml's
normalized mean squared error (``oxcore.testing.nmse``), and the conformance-kit cases this
plugin registers (hook ``oxcore_register_test_cases``: ``pytest --oxcore-backend NAME`` checks
every backend's ``ggml_matmul`` kernels with them).

Example:
    >>> import numpy as np
    >>> from oxcore_kernels_ggml.testing import random_blocks, reference_matmul, nmse
    >>> rng = np.random.default_rng(0)
    >>> raw = random_blocks("Q4_0", (3, 64), rng)
    >>> raw.shape, raw.dtype
    ((3, 36), dtype('uint8'))
    >>> x = rng.standard_normal((2, 64)).astype(np.float32)
    >>> y = reference_matmul(x, raw, "Q4_0", (3, 64))
    >>> y.shape, y.dtype, nmse(y, y)
    ((2, 3), dtype('float64'), 0.0)
"""

from __future__ import annotations

import numpy as np

from oxcore_io_gguf.blocks import SCALE_FIELDS, dequantize_reference, random_blocks

__all__ = ["TYPES", "random_blocks", "dequantize_reference", "reference_matmul", "nmse", "SCALE_FIELDS",
           "ggml_matmul_case", "MAX_NMSE"]

#: the block types the kernels cover
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
#: the kit's bound: float accumulation without 8-bit activation quantization (ggml's bound for
#: kernels that quantize x to 8 bits is 5e-4; none here does)
MAX_NMSE = 1e-6


def reference_matmul(x: np.ndarray, raw: np.ndarray, ggml_type: str, shape: tuple[int, int]) -> np.ndarray:
    """float64 ``x @ W.T`` with gguf-py's dequantized W: what every kernel is compared with."""
    w = dequantize_reference(raw, ggml_type, shape).astype(np.float64)
    return np.asarray(x, np.float64) @ w.T


def nmse(reference: np.ndarray, got: np.ndarray) -> float:
    """ggml's normalized mean squared error, ``oxcore.testing.nmse`` (0 when equal; the kernels
    aim at <= 5e-4 with 8-bit activations, <= 1e-6 without)."""
    # NOTE: imported here: _cpu imports this module at kernel registration, the kit is heavier
    from oxcore.testing.check import nmse as of

    return of(reference, got)


def ggml_matmul_case(ggml_type: str):
    """A conformance-kit ``Case`` of ``ggml_matmul`` on random ``ggml_type`` blocks (float32 x),
    compared by NMSE (at most ``MAX_NMSE``) with the float64 gguf-py reference:
    ``oxcore.testing.suite.check_case(case, oxcore.float32, backend)`` runs it pinned to a
    backend; the plugin registers one per type in ``TYPES`` for the kit.

    Example:
        >>> ggml_matmul_case("Q4_K").id
        'ggml_matmul[Q4_K]'
    """
    from oxcore import float32
    from oxcore.testing.cases import Case
    from oxcore_io_gguf._types import ggml_type as lookup

    bs = lookup(ggml_type).block_size

    def params(dt):
        from hypothesis import strategies as st

        return st.tuples(st.integers(1, 9), st.integers(1, 40), st.integers(1, 2)).map(
            lambda p: (((p[0], p[2] * bs),), {"ggml_type": ggml_type, "shape": (p[1], p[2] * bs)}))

    def inputs(rng, dt, shapes, kw):
        return [rng.standard_normal(shapes[0]).astype(dt.numpy), random_blocks(ggml_type, kw["shape"], rng)]

    def build(ox, x, raw, **kw):
        return ox.build("ggml_matmul", ox.asarray(x), ox.asarray(raw), **kw)

    def ref(x, raw, *, ggml_type, shape):
        return reference_matmul(x, raw, ggml_type, shape)

    example = ((((3, bs),), {"ggml_type": ggml_type, "shape": (13, bs)}))
    # NOTE: NMSE, not element by element: a float32 sum of K products whose terms are ~10x larger
    # than the result (random K-type scales reach 63 * d) rounds at ~1e-4 relative per element
    return Case("ggml_matmul", build, ref, (float32,), params, lambda dt: example, inputs, name=ggml_type,
                nmse=MAX_NMSE)
