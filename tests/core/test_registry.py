"""The op registry: every op is declared completely, has conformance cases, and every
decomposition produces the shape and dtype its op declares."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import REGISTRY, Category, OpDef, PluginError, register_op, same_as_input
from oxcore._array import Array
from oxcore.testing import CASES, cases_for, iter_cases, sample_for

# NOTE: the core's own ops; ops that plugins declare (ggml_dequantize...) are their tests' business
OPS = [op for op in REGISTRY if REGISTRY[op].source == "oxcore"]


def test_registry_has_the_documented_size_and_every_op_a_case():
    assert len(OPS) >= 118
    missing = [op for op in OPS if not cases_for(op)]
    assert not missing, f"ops without conformance cases in oxcore.testing.cases: {missing}"
    unknown = sorted({c.op for c in CASES} - set(REGISTRY))
    assert not unknown, f"cases for ops the registry does not know: {unknown}"


@pytest.mark.parametrize("op", OPS)
def test_op_declaration_is_complete(op):
    d = REGISTRY[op]
    assert isinstance(d, OpDef) and d.name == op
    assert isinstance(d.category, Category) and callable(d.infer)
    assert d.decompose is None or callable(d.decompose)
    assert d.doc, f"{op} has no doc line for `oxcore ops list`"
    s = sample_for(op)
    assert s is not None and s._node.op == op, f"sample_for({op!r}) does not build a {op} node"


_COMPOSITE = [pytest.param(c, dt, id=f"{c.id}-{dt.name}") for c, dt in iter_cases() if not REGISTRY[c.op].primitive]


@pytest.mark.parametrize("case, dt", _COMPOSITE)
def test_decomposition_produces_the_declared_shape_and_dtype(case, dt):
    inputs, kw = case.make(dt, case.example(dt), 0)
    node = case.build(ox, *inputs, **kw)._node
    out = REGISTRY[case.op].decompose(*[Array._wrap(i) for i in node.inputs], **node.attrs)
    assert out.shape == node.shape, f"{case.id} {dt.name}: declared {node.shape}, decomposition gives {out.shape}"
    assert out.dtype is node.dtype, f"{case.id} {dt.name}: declared {node.dtype}, decomposition gives {out.dtype}"


def test_registration_rules():
    with pytest.raises(PluginError, match="already registered"):
        REGISTRY.register(OpDef("add", Category.BINARY, same_as_input, source="someone-else"))
    name = "test_registry_triple"
    op = register_op(name, Category.UNARY, same_as_input, decompose=lambda x: x * 3, doc="3x")
    try:
        assert REGISTRY[name] is op and op.source == "oxcore" and not op.primitive
        assert REGISTRY.register(op) is op  # the same declaration again is fine
        a = np.random.default_rng().uniform(-1, 1, (5,)).astype(np.float32)
        np.testing.assert_allclose(ox.build(name, ox.asarray(a)).numpy(), a * 3, rtol=1e-6)
    finally:
        REGISTRY.ops.pop(name, None)
