"""Capability checks answer True or a reason, and the reasons stay true for this MLX."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore.extend import manager  # noqa: E402
from oxcore_metal_basic._support import F64_INEXACT, INT_MATMUL_LIMIT, make_supports  # noqa: E402

GPU = NS(kind="gpu", platform="cuda")
CPU = NS(kind="cpu", platform="cpu")


def node(op, out, *inputs, **attrs):
    t = lambda spec: NS(dtype=ox.dtype(spec[0]), shape=spec[1])  # noqa: E731
    o = t(out)
    return NS(op=op, attrs=attrs, dtype=o.dtype, shape=o.shape, inputs=[t(i) for i in inputs])


def test_float64_refused_on_a_gpu_device():
    n = node("add", ("float64", (3,)), ("float64", (3,)), ("float64", (3,)))
    why = make_supports(GPU, "add")(n)
    assert isinstance(why, str) and "float64" in why and "GPU (cuda)" in why
    assert make_supports(CPU, "add")(n) is True
    assert make_supports(GPU, "add")(node("add", ("float32", (3,)), ("float32", (3,)), ("float32", (3,)))) is True


def test_float64_inexact_ops_refused_on_the_cpu():
    n = node("exp", ("float64", (3,)), ("float64", (3,)))
    assert "float32 accuracy" in make_supports(CPU, "exp")(n)


def test_integer_matmul_limit_and_float_only_ops():
    small = node("matmul", ("int32", (4, 4)), ("int32", (4, 8)), ("int32", (8, 4)))
    assert make_supports(CPU, "matmul")(small) is True
    big = node("matmul", ("int32", (4096, 4096)), ("int32", (4096, 64)), ("int32", (64, 4096)))
    assert str(INT_MATMUL_LIMIT) in make_supports(CPU, "matmul")(big)
    lin = node("linear", ("int32", (2, 3)), ("int32", (2, 4)), ("int32", (3, 4)))
    assert "floating-point only" in make_supports(CPU, "linear")(lin)


def test_quantized_refuses_empty_and_float64():
    q = node("quantized_matmul", ("float32", (0, 8)), ("float32", (0, 64)), ("uint32", (8, 8)),
             ("float32", (8, 2)), ("float32", (8, 2)), group_size=32, bits=4, transpose=True)
    assert "empty" in make_supports(CPU, "quantized_matmul")(q)


def test_every_primitive_op_has_a_kernel_on_both_backends():
    from oxcore.extend import REGISTRY

    prims = [op for op in REGISTRY if REGISTRY.ops[op].primitive and REGISTRY.ops[op].source == "oxcore"]
    for name in ("metal_basic", "metal_fused"):
        if name in manager().backends:
            b = manager().backend(name)
            assert [op for op in prims if not b.kernels_for(op)] == [], name


def _rel_err(f, ref, x):
    with mx.stream(mx.cpu):  # NOTE: float64 exists on MLX's CPU only
        got = np.array(f(mx.array(x, dtype=mx.float64)))
    return np.max(np.abs(got - ref(x)) / np.maximum(np.abs(ref(x)), 1e-300))


@pytest.mark.parametrize("op,f,ref", [
    ("exp", mx.exp, np.exp), ("sin", mx.sin, np.sin), ("cos", mx.cos, np.cos),
    ("erf", mx.erf, np.vectorize(math.erf)), ("sigmoid", mx.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    ("logsumexp", lambda a: mx.logsumexp(a, axis=0), lambda x: np.log(np.exp(x).sum(0))),
])
def test_float64_refusals_are_still_needed(op, f, ref):
    """If MLX ever computes these in real float64, this fails: lift the refusal in _support.py."""
    assert op in F64_INEXACT
    x = np.random.default_rng(0).uniform(0.1, 0.9, 512)
    assert _rel_err(f, ref, x) > 1e-12
