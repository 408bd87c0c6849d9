"""The op registry: every op is declared completely, has conformance cases, and every
decomposition produces the shape and dtype its op declares."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import REGISTRY, Attr, Category, OpDef, PluginError, register_op, same_as_input
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


def test_every_attribute_a_case_builds_matches_the_declared_schema():
    """The schemas tell kernel authors what arrives: every conformance case's node, in every
    dtype, carries exactly declared attributes whose values have the declared types."""
    bad = []
    for case, dt in iter_cases():
        inputs, kw = case.make(dt, case.example(dt), 0)
        node = case.build(ox, *inputs, **kw)._node
        schema = {a.name: a for a in REGISTRY[node.op].schema}
        for k, v in node.attrs.items():
            if k not in schema or not schema[k].accepts(v):
                bad.append(f"{case.id} {dt.name}: {k}={v!r}, declared {schema[k].describe() if k in schema else None}")
    assert not bad, "\n".join(bad[:20])


def test_attrs_may_be_plain_names_or_schemas():
    name = "test_registry_scaled"
    op = register_op(name, Category.UNARY, same_as_input, attrs=("factor", Attr("offset", float, default=0.0)),
                     decompose=lambda x, *, factor, offset: x * factor + offset, doc="x * factor + offset")
    try:
        assert op.attrs == ("factor", "offset")
        assert [a.describe() for a in op.schema] == ["factor: any", "offset: float = 0.0"]
        assert ox.build(name, ox.asarray([1.0, 2.0]), factor=3.0, offset=1.0).tolist() == [4.0, 7.0]
        with pytest.raises(ox.AttributeValueError, match="valid attributes are: factor, offset"):
            ox.build(name, ox.asarray([1.0]), scale=2.0)
    finally:
        REGISTRY.ops.pop(name, None)
    assert [a.type_text for a in OpDef("x", Category.UNARY, same_as_input, attrs=("a",)).schema] == ["any"]


@pytest.mark.parametrize("t, good, bad_values", [
    (int | None, [0, -3, None], [1.5, True, "1"]),
    (tuple[int, ...], [(), (1, 2)], [[1], (1, None)]),
    (tuple[int | None, ...], [(None, 2)], [(1.5,)]),
    (tuple[tuple[int, int], ...], [((0, 1), (2, 3))], [((0, 1, 2),)]),
    (float, [1.0, 2], [True, None]),
])
def test_attr_type_checks(t, good, bad_values):
    a = Attr("a", t)
    assert all(a.accepts(v) for v in good) and not any(a.accepts(v) for v in bad_values)
