"""The autotune cases the ggml ops declare (``register_op(..., tune=...)``): Gemma's real weight
shapes and types, decode and prefill rows, inputs that are valid blocks (finite, non-zero
weights by gguf-py's dequantizer), the quick list a subset of the full one."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore._tune_cases import host_inputs, representative
from oxcore.extend import manager
from oxcore_io_gguf import _tune
from oxcore_io_gguf.blocks import dequantize_reference


def _cases(op, dtype=ox.float32, quick=True):
    manager()  # NOTE: io_gguf declares the ops when plugins load
    return representative(op, dtype, quick=quick)


@pytest.mark.parametrize("quick", [True, False])
def test_matmul_cases_are_decode_and_prefill_on_declared_weights(quick):
    cases = _cases("ggml_matmul", quick=quick)
    weights = _tune.QUICK if quick else _tune.GEMMA + _tune.LARGER
    got = {(c.attrs["ggml_type"], c.attrs["shape"], c.inputs[0][0][1]) for c in cases}
    assert got == {(t, s, r) for t, s in weights for r in _tune._rows((t, s), quick)}
    for w in weights:
        rows = _tune._rows(w, quick)
        assert 1 in rows and max(rows) >= 32  # NOTE: decode, and prefill
    for c in cases:
        (x_shape, x_dt), (raw_shape, raw_dt) = c.inputs
        n, k = c.attrs["shape"]
        assert x_shape[-1] == k and x_dt is ox.float32 and raw_dt is ox.uint8 and len(raw_shape) == 1
        assert c.shape == x_shape[:-1] + (n,) and c.dtype is ox.float32
        assert c.describe().startswith(f"ggml_matmul[{c.attrs['ggml_type']}](float32[1, ")


def test_quick_is_a_subset_of_the_full_list():
    full = {(t, s) for t, s in _tune.GEMMA + _tune.LARGER}
    assert set(_tune.QUICK) <= full and len(_tune.QUICK) < len(full)
    assert {t for t, _ in _tune.GEMMA} <= {t for t, _ in _tune.QUICK}  # NOTE: entries are per type


@pytest.mark.parametrize("op", ["ggml_matmul", "ggml_dequantize"])
def test_inputs_are_valid_blocks(op):
    rng = np.random.default_rng()
    for c in _cases(op):
        arrays = host_inputs(c, seed=int(rng.integers(2**31)))
        assert [(a.shape, a.dtype) for a in arrays] == [(s, d.numpy) for s, d in c.inputs]
        w = dequantize_reference(arrays[-1], c.attrs["ggml_type"], c.attrs["shape"])
        assert np.isfinite(w).all() and np.count_nonzero(w) > 0.9 * w.size, c.describe()


def test_dtypes_follow_autotunes_and_ints_give_none():
    (c, *_) = _cases("ggml_matmul", ox.float16)
    assert c.inputs[0][1] is ox.float16 and host_inputs(c)[0].dtype == np.float16
    (d, *_) = _cases("ggml_dequantize", ox.bfloat16)
    assert d.dtype is ox.bfloat16
    assert _cases("ggml_matmul", ox.int32) == [] and _cases("ggml_dequantize", ox.int32) == []


def test_gemma_table_is_the_files_weights(gemma_path):
    f = ox.load(gemma_path)
    proj = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    seen = {(f.info(n).type, tuple(f.info(n).shape)) for n in f.keys()
            if n.startswith("blk.") and n.split(".")[-2] in proj}
    assert set(_tune.GEMMA) == seen


def _key(c):
    from oxcore import _profile

    pn = c.plan_node()
    return _profile.dtypes_of(pn.inputs, pn), _profile.bucket_of(pn.inputs, pn), _profile.attrs_of(c.op, c.attrs)


@pytest.mark.parametrize("op", ["ggml_matmul", "ggml_dequantize"])
def test_each_declared_weight_gets_its_own_profile_entry(op):
    """Profile entries are keyed on shape buckets and the ggml type (the ops' ``tune_attrs``): a
    case sharing a key with an earlier one is never measured, and none of the declared ones does
    (Gemma's Q5_0 attn_q and Q4_K attn_output share a bucket, not a type)."""
    for quick in (True, False):
        keys: dict = {}
        for c in _cases(op, quick=quick):
            keys.setdefault(_key(c), []).append((c.attrs["ggml_type"], c.attrs["shape"]))
            assert _key(c)[2] == f"ggml_type={c.attrs['ggml_type']}"
        shared = {tuple(sorted(set(v))) for v in keys.values() if len(set(v)) > 1}
        assert not shared, shared
