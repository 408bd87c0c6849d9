"""``ggml_dequantize`` written with existing oxcore ops, so every backend can run it.

Only bitwise ops, shifts, slices, reshapes, ``concat``, ``take`` and float32 arithmetic are used.
oxcore has no bitcast op, so the float16 scales are decoded through a 65536-entry float32 table
(``take``; exact, including NaN payloads) and signed bytes through ``(x ^ 0x80) - 128``. The
float32 arithmetic repeats gguf-py's operation order, so on a backend that rounds each op
(cpu_numpy) the result is bit-identical; a backend that fuses multiply-add may differ in the
last bit for the types with a ``- dmin * m`` term.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _types as T

_F16_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def _ox():
    import oxcore as ox

    return ox


def _const(a: np.ndarray) -> Any:
    return _ox().asarray(a)


def _f16(b: Any, at: int) -> Any:
    """float16 at byte ``at`` of each block -> float32 (nb, 1)."""
    ox = _ox()
    code = b[:, at].astype(ox.int32) | (b[:, at + 1].astype(ox.int32) << 8)
    return ox.take(_const(_F16_TABLE), code, axis=0).reshape((b.shape[0], 1))


def _signed(x: Any) -> Any:
    """uint8 bytes read as int8, as float32 (exact)."""
    ox = _ox()
    return ((x ^ 0x80).astype(ox.int16) - 128).astype(ox.float32)


def _nib(qs: Any) -> Any:
    """(nb, k) bytes -> (nb, 2k): low nibbles, then high nibbles."""
    return _ox().concat([qs & 0x0F, qs >> 4], axis=-1)


def _shifts(values: list[int], shape: tuple[int, ...]) -> Any:
    return _const(np.array(values, dtype=np.uint8).reshape(shape))


def _crumbs(src: Any, nb: int, groups: int) -> Any:
    """2-bit fields -> (nb, groups, 4, 32)."""
    return (src.reshape((nb, groups, 1, 32)) >> _shifts([0, 2, 4, 6], (1, 1, 4, 1))) & 3


def _bits(src: Any, nb: int) -> Any:
    """(nb, 32) bytes -> (nb, 8, 32): bit j of byte k at [.., j, k]."""
    return ((src.reshape((nb, 1, 1, 32)) >> _shifts(list(range(8)), (1, 1, 8, 1))) & 1).reshape((nb, 8, 32))


def _f32(x: Any) -> Any:
    return x.astype(_ox().float32)


def _q4_0(b, nb):
    return _f16(b, 0) * (_f32(_nib(b[:, 2:18])) - 8.0)


def _q4_1(b, nb):
    return _f16(b, 0) * _f32(_nib(b[:, 4:20])) + _f16(b, 2)


def _q5(b, nb, at):
    # NOTE: bit j of the little-endian u32 at `at` is value j's fifth bit
    hb = (b[:, at:at + 4].reshape((nb, 4, 1)) >> _shifts(list(range(8)), (1, 1, 8))) & 1
    return _nib(b[:, at + 4:at + 20]) | (hb.reshape((nb, 32)) << 4)


def _q5_0(b, nb):
    return _f16(b, 0) * (_f32(_q5(b, nb, 2)) - 16.0)


def _q5_1(b, nb):
    return _f16(b, 0) * _f32(_q5(b, nb, 4)) + _f16(b, 2)


def _q8_0(b, nb):
    return _signed(b[:, 2:34]) * _f16(b, 0)


def _q2_k(b, nb):
    sc = b[:, :16]
    dl = (_f16(b, 80) * _f32(sc & 0x0F)).reshape((nb, 16, 1))
    ml = (_f16(b, 82) * _f32(sc >> 4)).reshape((nb, 16, 1))
    return dl * _f32(_crumbs(b[:, 16:80], nb, 2).reshape((nb, 16, 16))) - ml


def _q3_k(b, nb):
    ox = _ox()
    sc = b[:, 96:108]
    lsc = (sc[:, :8].reshape((nb, 1, 8)) >> _shifts([0, 4], (1, 2, 1))).reshape((nb, 16))
    hsc = (sc[:, 8:].reshape((nb, 1, 4)) >> _shifts([0, 2, 4, 6], (1, 4, 1))).reshape((nb, 16))
    s = (lsc & 0x0F) | ((hsc & 0x03) << 4)
    dl = (_f16(b, 108) * (_f32(s) - 32.0)).reshape((nb, 16, 1))
    ql = _crumbs(b[:, 32:96], nb, 2).reshape((nb, 16, 16)).astype(ox.int16)
    h = _bits(b[:, :32], nb).reshape((nb, 16, 16)).astype(ox.int16)
    return dl * _f32(ql - ((h ^ 1) << 2))


def _k4_scales(b, nb):
    ox = _ox()
    s = b[:, 4:16].reshape((nb, 3, 4))
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    sc = ox.concat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = ox.concat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return ((_f16(b, 0) * _f32(sc)).reshape((nb, 8, 1)), (_f16(b, 2) * _f32(mn)).reshape((nb, 8, 1)))


def _k4_nibbles(qs, nb):
    return _nib(qs.reshape((nb * 4, 32))).reshape((nb, 8, 32))


def _q4_k(b, nb):
    d, dm = _k4_scales(b, nb)
    return d * _f32(_k4_nibbles(b[:, 16:144], nb)) - dm


def _q5_k(b, nb):
    d, dm = _k4_scales(b, nb)
    q = _k4_nibbles(b[:, 48:176], nb) | (_bits(b[:, 16:48], nb) << 4)
    return d * _f32(q) - dm


def _q6_k(b, nb):
    d = (_f16(b, 208) * _signed(b[:, 192:208])).reshape((nb, 16, 1))
    ql = (b[:, :128].reshape((nb, 2, 1, 64)) >> _shifts([0, 4], (1, 1, 2, 1))) & 0x0F
    qh = _crumbs(b[:, 128:192], nb, 2)
    q = ql.reshape((nb, 8, 32)) | (qh.reshape((nb, 8, 32)) << 4)
    return d * (_f32(q.reshape((nb, 16, 16))) - 32.0)


DECOMPOSE = {"Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1, "Q8_0": _q8_0, "Q2_K": _q2_k,
             "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}


def decompose(raw: Any, *, ggml_type: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """``ggml_dequantize`` through existing ops (the registry's decomposition)."""
    ox = _ox()
    t = T.ggml_type(ggml_type)
    if t.name in T.PLAIN:
        raise ox.OpNotSupportedError(f"ggml_dequantize of {t.name} has no decomposition: oxcore has no bitcast "
                                     "op; plain types load as zero-copy arrays instead")
    fn = DECOMPOSE.get(t.name)
    if fn is None:
        raise ox.OpNotSupportedError(f"ggml_dequantize of {t.name} has no decomposition (only the cpu_numpy "
                                     f"kernel, through gguf-py, handles it); decomposed types: {', '.join(DECOMPOSE)}")
    nb = T.nbytes(t, shape) // t.type_size
    out = fn(raw.reshape((nb, t.type_size)), nb).reshape(shape)
    return out if dtype is ox.float32 else out.astype(dtype)
