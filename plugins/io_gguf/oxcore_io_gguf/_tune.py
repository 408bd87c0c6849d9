"""Representative ``oxcore autotune`` cases of the ggml ops (``register_op(..., tune=...)``).

The shapes are Gemma 3 270M's (Q4_K_M file) as its decode and prefill steps build them: x is
(1, rows, K), the weight W (N, K) arrives as the file's 1-D block bytes. ``--quick``: rows 1
(decode) and 32 (prefill) on each of Gemma's seven (type, shape) weights (entries are per type:
a type's other sizes would be scaled from one weight's; the planner scales other row counts and
the LM head by the kernel's own measured exponent); otherwise rows 1, 8, 32 and 128
on every Gemma weight, plus rows 1 and 32 on a 7B-sized layer in Q4_K and Q8_0 (both ops: ~6
minutes on a busy 2-core machine, where the MLX backends' decompositions take seconds a run).
Inputs are random blocks with valid float16 scales (zeros would time a degenerate case).

Both ops declare ``tune_attrs=("ggml_type",)``: profile entries are keyed on the type as well as
dtypes and shape buckets, so Gemma's Q5_0 attn_q and Q4_K attn_output, whose bytes land in one
bucket, are measured (and chosen for) separately.

Example:
    >>> import oxcore as ox
    >>> [(c.attrs["ggml_type"], c.inputs[0][0]) for c in matmul_cases(ox.float32, quick=True)][:2]
    [('Q5_0', (1, 1, 640)), ('Q5_0', (1, 32, 640))]
"""

from __future__ import annotations

from typing import Any

#: (ggml type, W's (N, K)) of Gemma 3 270M Q4_K_M's layer weights
GEMMA = (
    ("Q5_0", (2048, 640)),  # ffn_gate, ffn_up
    ("Q5_0", (1024, 640)),  # attn_q
    ("Q5_0", (256, 640)),  # attn_k, half of attn_v
    ("Q8_0", (256, 640)),  # the other attn_v
    ("Q4_K", (640, 1024)),  # attn_output
    ("Q4_K", (640, 2048)),  # half of ffn_down
    ("Q6_K", (640, 2048)),  # the other ffn_down
)
#: ``--quick``: every Gemma weight (~15 s for both ops on a 2-core machine)
QUICK = GEMMA
#: added outside ``--quick``: a 7B-sized layer (its decomposition on MLX's CPU takes seconds a run)
LARGER = (("Q4_K", (4096, 4096)), ("Q8_0", (4096, 4096)))
ROWS_QUICK = (1, 32)
ROWS_FULL = (1, 8, 32, 128)
ROWS_LARGER = (1, 32)


def _raw_shape(t: str, shape: tuple[int, int]) -> tuple[int]:
    from ._types import ggml_type, nbytes

    return (nbytes(ggml_type(t), shape),)


def _weights(quick: bool) -> tuple:
    return QUICK if quick else GEMMA + LARGER


def _rows(weight: tuple, quick: bool) -> tuple[int, ...]:
    return ROWS_QUICK if quick else ROWS_LARGER if weight in LARGER else ROWS_FULL


def matmul_cases(dtype: Any, quick: bool) -> list:
    """``ggml_matmul`` cases: x (1, rows, K) in ``dtype`` times each weight, decode and prefill rows."""
    from oxcore.extend import TuneCase

    if not dtype.is_floating:
        return []
    out = []
    for t, (n, k) in _weights(quick):
        for rows in _rows((t, (n, k)), quick):
            def make(rng, t=t, n=n, k=k, rows=rows):
                from .blocks import random_blocks

                return [rng.standard_normal((1, rows, k)).astype(dtype.numpy),
                        random_blocks(t, (n, k), rng).reshape(-1)]
            out.append(TuneCase([((1, rows, k), dtype), (_raw_shape(t, (n, k)), "uint8")],
                                {"ggml_type": t, "shape": (n, k)}, make, name=t))
    return out


def dequantize_cases(dtype: Any, quick: bool) -> list:
    """``ggml_dequantize`` cases: each weight's bytes to ``dtype``."""
    from oxcore.extend import TuneCase

    if not dtype.is_floating:
        return []
    out = []
    for t, (n, k) in _weights(quick):
        def make(rng, t=t, n=n, k=k):
            from .blocks import random_blocks

            return [random_blocks(t, (n, k), rng).reshape(-1)]
        out.append(TuneCase([(_raw_shape(t, (n, k)), "uint8")], {"ggml_type": t, "shape": (n, k), "dtype": dtype},
                            make, name=t))
    return out
