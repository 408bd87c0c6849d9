"""Random ggml weight blocks and gguf-py's reference dequantization: what the ggml ops are
timed on (``oxcore autotune``) and checked against (the conformance kit, kernel tests).

Example:
    >>> import numpy as np
    >>> from oxcore_io_gguf.blocks import random_blocks, dequantize_reference
    >>> raw = random_blocks("Q4_0", (3, 64), np.random.default_rng(0))
    >>> raw.shape, raw.dtype
    ((3, 36), dtype('uint8'))
    >>> w = dequantize_reference(raw, "Q4_0", (3, 64))
    >>> w.shape, w.dtype, bool(np.isfinite(w).all())
    ((3, 64), dtype('float32'), True)
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCALE_FIELDS", "random_blocks", "dequantize_reference"]

#: byte offsets of each type's float16 fields inside a block (d, and m/dmin where present): the
#: types ``random_blocks`` can make
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
    from ._types import ggml_type as lookup

    t = lookup(ggml_type)
    if t.name not in SCALE_FIELDS:
        raise ValueError(f"random_blocks makes {', '.join(SCALE_FIELDS)}, not {t.name}")
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


def dequantize_reference(raw: np.ndarray, ggml_type: str, shape: tuple[int, ...]) -> np.ndarray:
    """The tensor as gguf-py dequantizes it (float32), independent of oxcore_io_gguf's own
    dequantizer. ``raw``: its bytes in any shape (a file's are 1-D)."""
    import gguf

    q = gguf.GGMLQuantizationType[ggml_type]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return np.asarray(gguf.quants.dequantize(np.ascontiguousarray(raw).reshape(rows, -1), q),
                      np.float32).reshape(shape)
