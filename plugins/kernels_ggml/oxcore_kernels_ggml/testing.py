"""Test helpers shared by the kernels' tests: random ggml blocks with valid scales, the float64
reference product through gguf-py, and ggml's normalized mean squared error.

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

__all__ = ["TYPES", "random_blocks", "dequantize_reference", "reference_matmul", "nmse", "SCALE_FIELDS",
           "ggml_matmul_case"]

#: the block types the kernels cover
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")

#: byte offsets of each type's float16 fields inside a block (d, and m/dmin where present)
SCALE_FIELDS: dict[str, tuple[int, ...]] = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}


def random_blocks(ggml_type: str, shape: tuple[int, int], rng: np.random.Generator, *,
                  scale: float = 0.02) -> np.ndarray:
    """Random block bytes of a (N, K) weight: every quant bit random, float16 scales random and
    finite (``|d| ~ scale``, mins of both signs), so no value is zero by construction.

    Returns:
        uint8 (N, K // block_size * type_size), gguf-py's layout.
    """
    from oxcore_io_gguf._types import ggml_type as lookup

    t = lookup(ggml_type)
    n, k = shape
    if k % t.block_size:
        raise ValueError(f"K={k} is not a multiple of the {t.name} block size {t.block_size}")
    nb = n * (k // t.block_size)
    b = rng.integers(0, 256, size=(nb, t.type_size), dtype=np.uint8)
    for at in SCALE_FIELDS[t.name]:
        # NOTE: magnitudes spread over a decade, signs random: catches a dropped or swapped field
        v = (rng.uniform(0.3, 3.0, nb) * scale * rng.choice([-1.0, 1.0], nb)).astype(np.float16)
        b[:, at:at + 2] = v.view(np.uint8).reshape(nb, 2)
    return b.reshape(n, k // t.block_size * t.type_size)


def dequantize_reference(raw: np.ndarray, ggml_type: str, shape: tuple[int, int]) -> np.ndarray:
    """W (N, K) as gguf-py dequantizes it (float32), independent of oxcore's own dequantizer."""
    import gguf

    q = gguf.GGMLQuantizationType[ggml_type]
    return np.asarray(gguf.quants.dequantize(np.ascontiguousarray(raw).reshape(shape[0], -1), q),
                      np.float32).reshape(shape)


def reference_matmul(x: np.ndarray, raw: np.ndarray, ggml_type: str, shape: tuple[int, int]) -> np.ndarray:
    """float64 ``x @ W.T`` with gguf-py's dequantized W: what every kernel is compared with."""
    w = dequantize_reference(raw, ggml_type, shape).astype(np.float64)
    return np.asarray(x, np.float64) @ w.T


def nmse(reference: np.ndarray, got: np.ndarray) -> float:
    """Normalized mean squared error, ``sum((got - ref)^2) / sum(ref^2)``: ggml's test-backend-ops
    metric (0 when equal; the kernels aim at <= 5e-4 with 8-bit activations, <= 1e-6 without)."""
    r = np.asarray(reference, np.float64)
    d = np.asarray(got, np.float64) - r
    den = float(np.sum(r * r))
    return float(np.sum(d * d)) / den if den else float(np.sum(d * d))


def ggml_matmul_case(ggml_type: str):
    """A conformance-kit ``Case`` of ``ggml_matmul`` on random ``ggml_type`` blocks (float32 x):
    ``oxcore.testing.suite.check_case(case, oxcore.float32, backend)`` runs it pinned to a
    backend, checks the placement and compares with the float64 gguf-py reference.

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
    # NOTE: the kit compares element by element; a float32 sum of K products whose terms are
    # ~10x larger than the result (random K-type scales reach 63 * d) rounds at ~1e-4 relative.
    # The NMSE tests (``nmse`` <= 1e-6) are the tight check.
    return Case("ggml_matmul", build, ref, (float32,), params, lambda dt: example, inputs, name=ggml_type, tol=100.0)
