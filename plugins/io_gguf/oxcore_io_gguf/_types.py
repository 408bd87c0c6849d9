"""ggml tensor types and GGUF metadata value types (ids are the file format's, fixed forever).

Kept here rather than imported from gguf-py so that opening a file does not pay for importing
gguf (~150 ms); a test checks this table against ``gguf.constants.GGML_QUANT_SIZES``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

QK_K = 256


class GGMLType(NamedTuple):
    id: int
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block


_TABLE = [
    (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20), (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 40), (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110), (12, "Q4_K", 256, 144), (13, "Q5_K", 256, 176), (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292), (16, "IQ2_XXS", 256, 66), (17, "IQ2_XS", 256, 74), (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50), (20, "IQ4_NL", 32, 18), (21, "IQ3_S", 256, 110), (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136), (24, "I8", 1, 1), (25, "I16", 1, 2), (26, "I32", 1, 4), (27, "I64", 1, 8),
    (28, "F64", 1, 8), (29, "IQ1_M", 256, 56), (30, "BF16", 1, 2), (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66), (39, "MXFP4", 32, 17), (40, "NVFP4", 64, 36), (41, "Q1_0", 128, 18),
]
BY_ID: dict[int, GGMLType] = {t[0]: GGMLType(*t) for t in _TABLE}
BY_NAME: dict[str, GGMLType] = {t.name: t for t in BY_ID.values()}

class _PlainDTypes(Mapping):
    """ggml name -> NumPy dtype; BF16's (ml_dtypes) is made on first use: importing ml_dtypes
    costs ~0.5 s and ~6 MiB, which a file without BF16 tensors should not pay."""

    _EAGER = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "I8": np.dtype("<i1"),
              "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8")}

    def __getitem__(self, name: str) -> np.dtype:
        if name == "BF16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return self._EAGER[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._EAGER
        yield "BF16"

    def __len__(self) -> int:
        return len(self._EAGER) + 1


#: types whose bytes are usable as-is: ggml name -> little-endian NumPy dtype (zero-copy views)
PLAIN: Mapping[str, np.dtype] = _PlainDTypes()

#: block types with our own vectorized NumPy kernel and an oxcore-op decomposition
NATIVE = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def ggml_type(t: int | str) -> GGMLType:
    """Look up a ggml type by id or name (``"Q4_K"``, ``12``)."""
    got = BY_NAME.get(t.upper()) if isinstance(t, str) else BY_ID.get(t)
    if got is None:
        raise ValueError(f"Unknown ggml type {t!r}. Valid types are: {', '.join(BY_NAME)}")
    return got


def nbytes(t: GGMLType, shape: tuple[int, ...]) -> int:
    """Stored bytes of a tensor of logical ``shape`` (row-major); the last axis is the block axis."""
    n = 1
    for d in shape:
        n *= d
    return n // t.block_size * t.type_size


# --- metadata value types ---------------------------------------------------------------------
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
VALUE_NAMES = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
               "UINT64", "INT64", "FLOAT64")
#: fixed-size value types: id -> little-endian NumPy dtype
SCALAR: dict[int, np.dtype] = {
    UINT8: np.dtype("<u1"), INT8: np.dtype("<i1"), UINT16: np.dtype("<u2"), INT16: np.dtype("<i2"),
    UINT32: np.dtype("<u4"), INT32: np.dtype("<i4"), FLOAT32: np.dtype("<f4"), BOOL: np.dtype("<u1"),
    UINT64: np.dtype("<u8"), INT64: np.dtype("<i8"), FLOAT64: np.dtype("<f8"),
}
